"""Airflow's local settings hook, imported by every Airflow component at start (plugins/ is on
sys.path): preloads the DR tasks' heavy imports in the components that fork tasks."""

from __future__ import annotations

from dr_automation.preload import preload

preload()
