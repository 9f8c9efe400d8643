"""Where every sandbox component listens, and where the sandbox keeps its state.

Everything binds to loopback. The default layout is the documented one (moto on :5000, DNS on
:5353, Kubernetes on :6443, Airflow on :8080, the webhook sink on :5080, one 127.0.N.1 address per
region with its app on :8000 and its drill-stack app on :8100); tests build a
layout on free ports so they never collide with a running `make up`.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dr_sandbox.netguard import require_loopback

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = REPO_ROOT / ".sandbox"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(host: str, port: int, kind: int = socket.SOCK_STREAM) -> bool:
    """False only when something holds the port: a TCP listener, or a bound UDP socket.

    The sandbox's servers bind with SO_REUSEADDR, so the check does too: connections that the last
    sandbox left in TIME_WAIT do not keep a restarted sandbox from binding, and must not keep this
    check from letting it.
    """
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


# Test sandboxes take their ports from below the kernel's ephemeral range (32768-60999 by default), in
# a block of their own per pytest-xdist worker: no client connection or bind(0) of another process
# can take a port between the moment it is chosen and the moment its server binds it, and sandboxes
# that run side by side never pick the same port.
TEST_PORT_BASE = 20000
TEST_PORT_BLOCK = 600


def _unused(host: str, port: int) -> bool:
    """Nothing bound there at all (TCP and UDP), not even a connection in TIME_WAIT."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


class PortBlock:
    """Hands out ports for one test sandbox: this worker's block, each port unused on every host."""

    def __init__(self, worker: str | None = None) -> None:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "") if worker is None else worker
        index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
        self._low = TEST_PORT_BASE + (index % 20) * TEST_PORT_BLOCK
        # a different start per process: a sandbox started right after another one of the same worker
        # (a CLI subprocess, the next module) does not walk the ports the last one just released
        self._next = self._low + (os.getpid() * 7) % TEST_PORT_BLOCK
        self._given: set[int] = set()

    def take(self, *hosts: str) -> int:
        for _ in range(TEST_PORT_BLOCK):
            port, self._next = self._next, self._low + (self._next + 1 - self._low) % TEST_PORT_BLOCK
            if port not in self._given and all(_unused(h, port) for h in hosts):
                self._given.add(port)
                return port
        raise RuntimeError(f"no unused port left in {self._low}-{self._low + TEST_PORT_BLOCK - 1}")


@dataclass(frozen=True)
class SandboxLayout:
    state_dir: Path = DEFAULT_STATE_DIR
    host: str = "127.0.0.1"
    aws_port: int = 5000
    dns_port: int = 5353
    dns_status_port: int = 5354
    k8s_port: int = 6443
    airflow_port: int = 8080
    app_port: int = 8000
    # the standing drill stack: one more regional app per region, the only apps drills may fail
    drill_app_port: int = 8100
    # the chat / status-page webhook stand-in (dr_sandbox.webhook_sink)
    sink_port: int = 5080
    # the Neo4j stand-in (tier-3 backups); 0: any free port, chosen at start
    neo4j_port: int = 0
    # region name -> its own loopback address (filled from the estate's regions, in order)
    region_hosts: dict[str, str] = field(default_factory=dict)
    database_name: str = "dr_sandbox_primary"
    # seconds between the DNS stand-in's health probes (Route 53 allows 10 or 30; the sandbox is faster)
    health_interval_seconds: float = 1.0
    metrics_publish_seconds: float = 2.0
    # a pod's time from scheduled to started (image pull, container creation), as on a real node
    pod_start_seconds: float = 3.0

    def __post_init__(self) -> None:
        require_loopback(self.host, field="sandbox host")
        for addr in self.region_hosts.values():
            require_loopback(addr, field="region address")

    # -- paths -------------------------------------------------------------------------------
    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def airflow_home(self) -> Path:
        return self.state_dir / "airflow"

    @property
    def pids_file(self) -> Path:
        return self.state_dir / "pids.json"

    @property
    def endpoints_file(self) -> Path:
        return self.state_dir / "endpoints.json"

    @property
    def credentials_file(self) -> Path:
        return self.state_dir / "credentials.json"

    @property
    def estate_file(self) -> Path:
        return self.state_dir / "estate.yaml"

    @property
    def kubeconfig_file(self) -> Path:
        return self.state_dir / "kubeconfig.yaml"

    # -- urls --------------------------------------------------------------------------------
    @property
    def aws_url(self) -> str:
        return f"http://{self.host}:{self.aws_port}"

    @property
    def k8s_url(self) -> str:
        return f"http://{self.host}:{self.k8s_port}"

    @property
    def airflow_url(self) -> str:
        return f"http://{self.host}:{self.airflow_port}"

    @property
    def sink_url(self) -> str:
        return f"http://{self.host}:{self.sink_port}"

    @property
    def audit_database_name(self) -> str:
        """The audit log's database, created next to the primary one (and dropped with it)."""
        return f"{self.database_name}_audit"

    @property
    def dns_status_url(self) -> str:
        return f"http://{self.host}:{self.dns_status_port}"

    def app_url(self, region: str) -> str:
        return f"http://{self.region_hosts[region]}:{self.app_port}"

    def drill_app_url(self, region: str) -> str:
        return f"http://{self.region_hosts[region]}:{self.drill_app_port}"

    def with_regions(self, regions: list[str]) -> SandboxLayout:
        """Give each region its own loopback address: 127.0.1.1, 127.0.2.1, ... (kept if set)."""
        hosts = dict(self.region_hosts)
        for i, name in enumerate(regions, start=1):
            hosts.setdefault(name, f"127.0.{i}.1")
        return _replace(self, region_hosts=hosts)

    def save(self) -> None:
        data = asdict(self)
        data["state_dir"] = str(self.state_dir)
        (self.state_dir / "layout.json").write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, state_dir: Path) -> SandboxLayout:
        data = json.loads((state_dir / "layout.json").read_text())
        data["state_dir"] = Path(data["state_dir"])
        return cls(**data)

    @classmethod
    def from_env(cls) -> SandboxLayout:
        """The documented layout, or (DR_SANDBOX_PORTS=free) one on free ports in DR_SANDBOX_STATE_DIR.

        Lets the tests run the real `make demo` path while a developer's `make up` keeps running.
        """
        state_dir = Path(os.environ.get("DR_SANDBOX_STATE_DIR", DEFAULT_STATE_DIR))
        if os.environ.get("DR_SANDBOX_PORTS") == "free":
            from dr_automation.estate import DEFAULT_ESTATE_PATH, load_estate

            return cls.for_tests(state_dir, list(load_estate(DEFAULT_ESTATE_PATH).regions))
        return cls(state_dir=state_dir)

    @classmethod
    def for_tests(cls, state_dir: Path, regions: list[str]) -> SandboxLayout:
        """Free ports and a 127.9.N.1 address per region, so a running `make up` is never touched."""
        host = "127.0.0.1"
        region_hosts = {name: f"127.9.{i}.1" for i, name in enumerate(regions, start=1)}
        ports = PortBlock()
        return cls(
            state_dir=state_dir,
            host=host,
            aws_port=ports.take(host),
            dns_port=ports.take(host),
            dns_status_port=ports.take(host),
            k8s_port=ports.take(host),
            airflow_port=ports.take(host),
            sink_port=ports.take(host),
            neo4j_port=ports.take(host),
            app_port=ports.take(*region_hosts.values()),
            drill_app_port=ports.take(*region_hosts.values()),
            region_hosts=region_hosts,
            database_name=f"dr_sandbox_test_{os.getpid()}",
        )


def _replace(layout: SandboxLayout, **changes: object) -> SandboxLayout:
    from dataclasses import replace

    return replace(layout, **changes)
