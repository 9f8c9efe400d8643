"""The restricted Pod Security Standard checker: a compliant pod passes, each planted violation is caught.

Each case plants one violation into a pod that otherwise passes and asserts the reported message
names the exact field path and the rule, so a checker that silently stops looking at a field fails.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from dr_automation.pod_security import looks_secret, restricted_violations, secret_leaks


def _container(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": "ghcr.io/leanvibe/dr-toolbox:0.1.0",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        },
    }


def compliant_pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "ok", "namespace": "leanvibe-dr", "annotations": {}},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
                "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"}],
            },
            "containers": [_container("base")],
            "initContainers": [_container("init")],
            "ephemeralContainers": [_container("debug")],
            "volumes": [
                {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": "cfg", "configMap": {"name": "cfg"}},
                {"name": "creds", "secret": {"secretName": "creds"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
            ],
        },
    }


def test_compliant_pod_has_no_violations() -> None:
    assert restricted_violations(compliant_pod()) == []


def test_container_level_seccomp_and_runasnonroot_satisfy_the_pod_rules() -> None:
    """Restricted allows setting these per container instead of at pod level, if every container does."""
    pod = compliant_pod()
    del pod["spec"]["securityContext"]["seccompProfile"]
    del pod["spec"]["securityContext"]["runAsNonRoot"]
    for kind in ("containers", "initContainers", "ephemeralContainers"):
        pod["spec"][kind][0]["securityContext"]["seccompProfile"] = {
            "type": "Localhost",
            "localhostProfile": "p.json",
        }
    assert restricted_violations(pod) == []


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def plant(pod: dict[str, Any]) -> None:
        target = pod
        for key in path[:-1]:
            if isinstance(target, dict):
                target = target.setdefault(key, {})
            else:
                target = target[key]
        target[path[-1]] = value

    return plant


def _del(path: list[Any]) -> Callable[[dict[str, Any]], None]:
    def plant(pod: dict[str, Any]) -> None:
        target = pod
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return plant


C0 = ["spec", "containers", 0, "securityContext"]
I0 = ["spec", "initContainers", 0, "securityContext"]
E0 = ["spec", "ephemeralContainers", 0, "securityContext"]
PSC = ["spec", "securityContext"]

# (case id, planter, expected field path, expected rule)
VIOLATIONS: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    (
        "hostProcess-pod",
        _set([*PSC, "windowsOptions", "hostProcess"], True),
        "spec.securityContext.windowsOptions.hostProcess",
        "hostProcess",
    ),
    (
        "hostProcess-container",
        _set([*C0, "windowsOptions", "hostProcess"], True),
        "spec.containers[0].securityContext.windowsOptions.hostProcess",
        "hostProcess",
    ),
    ("hostNetwork", _set(["spec", "hostNetwork"], True), "spec.hostNetwork", "host namespaces"),
    ("hostPID", _set(["spec", "hostPID"], True), "spec.hostPID", "host namespaces"),
    ("hostIPC", _set(["spec", "hostIPC"], True), "spec.hostIPC", "host namespaces"),
    (
        "privileged",
        _set([*C0, "privileged"], True),
        "spec.containers[0].securityContext.privileged",
        "privileged",
    ),
    (
        "privileged-init",
        _set([*I0, "privileged"], True),
        "spec.initContainers[0].securityContext.privileged",
        "privileged",
    ),
    (
        "capabilities-baseline",
        _set([*C0, "capabilities", "add"], ["SYS_ADMIN"]),
        "spec.containers[0].securityContext.capabilities.add[0]",
        "capabilities (baseline)",
    ),
    (
        "capabilities-restricted-add",
        _set([*C0, "capabilities", "add"], ["CHOWN"]),
        "spec.containers[0].securityContext.capabilities.add[0]",
        "capabilities (restricted)",
    ),
    (
        "capabilities-no-drop-all",
        _set([*E0, "capabilities", "drop"], ["NET_RAW"]),
        "spec.ephemeralContainers[0].securityContext.capabilities.drop",
        "capabilities (restricted)",
    ),
    (
        "hostPath",
        _set(["spec", "volumes", 0], {"name": "host", "hostPath": {"path": "/var/run"}}),
        "spec.volumes[0].hostPath",
        "hostPath volumes",
    ),
    (
        "volume-type-nfs",
        _set(["spec", "volumes", 1], {"name": "share", "nfs": {"server": "nfs.local", "path": "/x"}}),
        "spec.volumes[1].nfs",
        "volume types",
    ),
    (
        "hostPort",
        _set(["spec", "containers", 0, "ports"], [{"containerPort": 80, "hostPort": 8080}]),
        "spec.containers[0].ports[0].hostPort",
        "hostPorts",
    ),
    (
        "apparmor-pod",
        _set([*PSC, "appArmorProfile"], {"type": "Unconfined"}),
        "spec.securityContext.appArmorProfile.type",
        "AppArmor",
    ),
    (
        "apparmor-container",
        _set([*C0, "appArmorProfile"], {"type": "Unconfined"}),
        "spec.containers[0].securityContext.appArmorProfile.type",
        "AppArmor",
    ),
    (
        "apparmor-annotation",
        _set(
            ["metadata", "annotations", "container.apparmor.security.beta.kubernetes.io/base"], "unconfined"
        ),
        "metadata.annotations[container.apparmor.security.beta.kubernetes.io/base]",
        "AppArmor",
    ),
    (
        "selinux-type",
        _set([*C0, "seLinuxOptions"], {"type": "spc_t"}),
        "spec.containers[0].securityContext.seLinuxOptions.type",
        "SELinux",
    ),
    (
        "selinux-user",
        _set([*PSC, "seLinuxOptions"], {"user": "system_u"}),
        "spec.securityContext.seLinuxOptions.user",
        "SELinux",
    ),
    (
        "procMount",
        _set([*C0, "procMount"], "Unmasked"),
        "spec.containers[0].securityContext.procMount",
        "/proc mount",
    ),
    (
        "seccomp-unconfined-pod",
        _set([*PSC, "seccompProfile"], {"type": "Unconfined"}),
        "spec.securityContext.seccompProfile.type",
        "seccomp",
    ),
    (
        "seccomp-unconfined-container",
        _set([*I0, "seccompProfile"], {"type": "Unconfined"}),
        "spec.initContainers[0].securityContext.seccompProfile.type",
        "seccomp",
    ),
    (
        "seccomp-unset-everywhere",
        _del([*PSC, "seccompProfile"]),
        "spec.containers[0].securityContext.seccompProfile.type",
        "seccomp",
    ),
    (
        "sysctl-unsafe",
        _set([*PSC, "sysctls", 0], {"name": "kernel.msgmax", "value": "65536"}),
        "spec.securityContext.sysctls[0].name",
        "sysctls",
    ),
    (
        "allowPrivilegeEscalation-true",
        _set([*C0, "allowPrivilegeEscalation"], True),
        "spec.containers[0].securityContext.allowPrivilegeEscalation",
        "allowPrivilegeEscalation",
    ),
    (
        "allowPrivilegeEscalation-unset",
        _del([*E0, "allowPrivilegeEscalation"]),
        "spec.ephemeralContainers[0].securityContext.allowPrivilegeEscalation",
        "allowPrivilegeEscalation",
    ),
    (
        "runAsNonRoot-false-pod",
        _set([*PSC, "runAsNonRoot"], False),
        "spec.securityContext.runAsNonRoot",
        "runAsNonRoot",
    ),
    (
        "runAsNonRoot-false-container",
        _set([*C0, "runAsNonRoot"], False),
        "spec.containers[0].securityContext.runAsNonRoot",
        "runAsNonRoot",
    ),
    ("runAsUser-root-pod", _set([*PSC, "runAsUser"], 0), "spec.securityContext.runAsUser", "runAsUser"),
    (
        "runAsUser-root-container",
        _set([*I0, "runAsUser"], 0),
        "spec.initContainers[0].securityContext.runAsUser",
        "runAsUser",
    ),
    (
        "probe-host",
        _set(
            ["spec", "containers", 0, "livenessProbe"], {"httpGet": {"host": "169.254.169.254", "port": 80}}
        ),
        "spec.containers[0].livenessProbe.httpGet.host",
        "probe host",
    ),
    (
        "readOnlyRootFilesystem-house-rule",
        _set([*C0, "readOnlyRootFilesystem"], False),
        "spec.containers[0].securityContext.readOnlyRootFilesystem",
        "readOnlyRootFilesystem (house rule)",
    ),
]


@pytest.mark.parametrize(
    ("plant", "path", "rule"), [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS]
)
def test_planted_violation_is_reported_with_field_path_and_rule(
    plant: Callable[[dict[str, Any]], None], path: str, rule: str
) -> None:
    pod = copy.deepcopy(compliant_pod())
    plant(pod)
    violations = restricted_violations(pod)
    assert any(v.startswith(f"{path}: {rule}: ") for v in violations), violations
    # Exactly the planted problem: the checker does not drown it in noise.
    assert len(violations) == 1 or rule in {"seccomp"}, violations


def test_enough_distinct_rules_are_covered() -> None:
    assert len({v[3] for v in VIOLATIONS}) >= 12
    assert len({v[2] for v in VIOLATIONS}) >= 25


def test_container_without_security_context_is_reported_on_every_restricted_rule() -> None:
    pod = compliant_pod()
    pod["spec"]["containers"][0].pop("securityContext")
    del pod["spec"]["securityContext"]["runAsNonRoot"]
    rules = {v.split(": ")[1] for v in restricted_violations(pod) if v.startswith("spec.containers[0]")}
    assert rules == {
        "capabilities (restricted)",
        "allowPrivilegeEscalation",
        "runAsNonRoot",
        "readOnlyRootFilesystem (house rule)",
    }


def test_not_a_pod_is_refused() -> None:
    with pytest.raises(ValueError, match="manifest"):
        restricted_violations({"kind": "Pod"})


@pytest.mark.parametrize(
    "name",
    [
        "DB_PASSWORD",
        "PGPASSWORD",
        "AWS_SECRET_ACCESS_KEY",
        "API_KEY",
        "GITHUB_TOKEN",
        "PRIMARY_DB_DSN",
        "dbPassword",
    ],
)
def test_secret_looking_names(name: str) -> None:
    assert looks_secret(name)


@pytest.mark.parametrize(
    "name", ["REGION", "BACKUP_BUCKET", "KMS_KEY_ID", "KMS_KEY_ALIAS", "DB_SECRET_NAME", "TMPDIR", "HOME"]
)
def test_ordinary_names(name: str) -> None:
    assert not looks_secret(name)


def test_secret_leaks_finds_plaintext_env_and_known_values_without_echoing_them() -> None:
    pod = compliant_pod()
    pod["spec"]["containers"][0]["env"] = [
        {"name": "REGION", "value": "us-east-1"},
        {"name": "DB_PASSWORD", "value": "s3cr3t-value"},
        {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
    ]
    pod["spec"]["initContainers"][0]["args"] = ["--dsn", "postgresql://app:hunter2-pw@db/app"]
    leaks = secret_leaks(pod, ["hunter2-pw", "s3cr3t-value", ""])
    assert (
        "spec.containers[0].env[1].value: plaintext secret: 'DB_PASSWORD' looks like a secret; use valueFrom.secretKeyRef"
        in leaks
    )
    assert "spec.initContainers[0].args[1]: plaintext secret: contains secret value #1" in leaks
    assert "spec.containers[0].env[1].value: plaintext secret: contains secret value #2" in leaks
    assert len(leaks) == 3, leaks
    assert not any("hunter2" in leak or "s3cr3t" in leak for leak in leaks)


def test_secret_leaks_clean_pod() -> None:
    assert secret_leaks(compliant_pod(), ["never-used-secret"]) == []
