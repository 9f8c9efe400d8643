"""The five drill scenarios, one module each, each exposing ``SCENARIO`` (``drills.scenario.Scenario``)."""
