"""DR drills (issue 10): the scenario results' report first; the scenario DAGs build on it."""
