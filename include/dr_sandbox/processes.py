"""Start sandbox components as detached processes and stop exactly those (by recorded pid)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def _read(pids_file: Path) -> dict[str, dict]:
    if not pids_file.exists():
        return {}
    return json.loads(pids_file.read_text())


def _write(pids_file: Path, data: Mapping[str, dict]) -> None:
    tmp = pids_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(pids_file)


def _start_time(pid: int) -> str | None:
    """The kernel's start time of a pid: recorded so `down` never signals a recycled pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    logs_dir: Path,
    pids_file: Path,
    cwd: Path | None = None,
) -> subprocess.Popen:
    """Start a component in its own session (so its whole process group can be stopped)."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    log = open(logs_dir / f"{name}.log", "ab")
    proc = subprocess.Popen(
        list(argv),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    data = _read(pids_file)
    data[name] = {"pid": proc.pid, "start_time": _start_time(proc.pid), "argv": list(argv)}
    _write(pids_file, data)
    return proc


def _alive(entry: Mapping) -> bool:
    pid = int(entry["pid"])
    st = _start_time(pid)
    if st is None:
        return False
    if entry.get("start_time") and st != entry["start_time"]:
        return False  # recycled pid: not ours
    try:
        with open(f"/proc/{pid}/stat") as fh:
            zombie = fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False
    if zombie:
        if _is_child(pid):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def _is_child(pid: int) -> bool:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid()
    except (OSError, ValueError, IndexError):
        return False


def running(pids_file: Path) -> dict[str, int]:
    return {name: int(e["pid"]) for name, e in _read(pids_file).items() if _alive(e)}


def stop_all(pids_file: Path, *, timeout: float = 20.0) -> list[str]:
    """SIGTERM every recorded process group, SIGKILL what is left after the timeout. Returns names stopped."""
    data = _read(pids_file)
    stopped: list[str] = []
    # reverse start order: Airflow first, the emulator last
    for name in reversed(list(data)):
        entry = data[name]
        if not _alive(entry):
            continue
        try:
            os.killpg(int(entry["pid"]), signal.SIGTERM)
            stopped.append(name)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(e) for e in data.values()):
        for e in data.values():
            if _is_child(int(e["pid"])):
                try:
                    os.waitpid(int(e["pid"]), os.WNOHANG)
                except ChildProcessError:
                    pass
        time.sleep(0.2)
    for entry in data.values():
        if _alive(entry):
            try:
                os.killpg(int(entry["pid"]), signal.SIGKILL)
            except ProcessLookupError:
                pass
    # children of the group leaders (e.g. LocalExecutor workers) share the group: give them a moment
    time.sleep(0.3)
    pids_file.unlink(missing_ok=True)
    return stopped
