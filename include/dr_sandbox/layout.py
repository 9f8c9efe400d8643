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
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


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
        return cls(
            state_dir=state_dir,
            host=host,
            aws_port=free_port(host),
            dns_port=free_port(host),
            dns_status_port=free_port(host),
            k8s_port=free_port(host),
            airflow_port=free_port(host),
            sink_port=free_port(host),
            app_port=free_port("127.9.1.1"),
            drill_app_port=free_port("127.9.1.1"),
            region_hosts={name: f"127.9.{i}.1" for i, name in enumerate(regions, start=1)},
            database_name=f"dr_sandbox_test_{os.getpid()}",
        )


def _replace(layout: SandboxLayout, **changes: object) -> SandboxLayout:
    from dataclasses import replace

    return replace(layout, **changes)
