"""`python -m dr_sandbox up|down|demo|status` (the Makefile's `make up`, `make down`, `make demo`)."""

from __future__ import annotations

import argparse
import json
import sys

from dr_sandbox.demo import run_demo
from dr_sandbox.layout import SandboxLayout
from dr_sandbox.processes import running
from dr_sandbox.sandbox import SandboxError, down, up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dr_sandbox")
    parser.add_argument("command", choices=["up", "down", "demo", "status"])
    args = parser.parse_args(argv)
    layout = SandboxLayout.from_env()
    try:
        if args.command == "up":
            endpoints = up(layout)
            creds = json.loads(layout.credentials_file.read_text())
            print(f"Airflow UI: {endpoints['airflow']['url']}")
            print(f"  username: {creds['username']}")
            print(f"  password: {creds['password']}")
            print(f"Endpoints: {layout.endpoints_file}")
            print(f"Credentials (0600): {layout.credentials_file}")
            print("Stop with: make down")
            return 0
        if args.command == "down":
            result = down()
            print(f"stopped: {', '.join(result['stopped']) or 'nothing was running'}")
            return 0
        if args.command == "status":
            print(json.dumps(running(layout.pids_file), indent=2))
            return 0
        return run_demo(layout)
    except SandboxError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
