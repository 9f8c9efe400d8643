"""The plugins folder loads exactly the bundle's plugin: the library packages are not plugins."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_plugins_folder_loads_only_the_bundle_plugin_with_its_links(airflow_env):
    airflow = str(Path(sys.executable).with_name("airflow"))
    env = {**airflow_env, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    proc = subprocess.run(
        [airflow, "plugins", "-o", "json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    plugins = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = [
        p
        for p in plugins
        if p["source"].startswith("$PLUGINS_FOLDER/") and "site-packages" not in p["source"]
    ]
    assert [p["source"] for p in ours] == ["$PLUGINS_FOLDER/dr_plugin.py"]
    links = " ".join(ours[0]["operator_extra_links"])
    assert "Route53HostedZoneLink" in links and "Route53HealthChecksLink" in links
