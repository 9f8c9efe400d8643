"""Disaster-recovery library: importable by every Airflow component (scheduler, workers, triggerer).

Keep this package's import light: DAG files import from it at parse time.
"""
