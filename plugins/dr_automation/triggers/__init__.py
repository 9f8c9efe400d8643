"""Triggers (run in the triggerer, which imports plugins/ but never dags/)."""
