"""Pod Security Standards ("baseline" + "restricted") as a pure-Python check over a pod manifest.

The bundle's pods must be admitted by a namespace labelled
``pod-security.kubernetes.io/enforce: restricted``. There is no cluster on a developer machine or in CI,
so this module re-implements the admission rules (kubernetes/pod-security-admission, policy/check_*.go)
over the camelCase manifest that ``ApiClient().sanitize_for_serialization(pod)`` produces: a pod that
would be refused at 03:00 during an incident is refused by a unit test instead.

Every violation names the field path and the rule, e.g.
``spec.containers[0].securityContext.privileged: privileged: must be false or unset, got True``.
Windows pods (``spec.os.name: windows``) are held to the Linux rules: the bundle runs none.

Also ``secret_leaks``: plaintext secrets in a pod spec end up in the API server, etcd, ``kubectl get
-o yaml`` and Airflow's rendered-template view, so the tests look for them too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = [
    "BASELINE_CAPABILITIES",
    "RESTRICTED_VOLUME_TYPES",
    "SAFE_SYSCTLS",
    "looks_secret",
    "restricted_violations",
    "secret_leaks",
]

# Baseline: capabilities a container may add (the container runtime's default set).
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
# Restricted: the only capability that may be added back after dropping ALL.
RESTRICTED_ADD_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
# Restricted: inline volume sources that cannot reach the node or a network filesystem directly.
RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
# Baseline: namespaced sysctls isolated from other pods (1.0 set + later additions up to 1.32).
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
    }
)
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_TYPES = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
CONTAINER_KINDS = ("containers", "initContainers", "ephemeralContainers")
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
HANDLERS = ("postStart", "preStop")


def _sc(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("securityContext") or {}


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for kind in CONTAINER_KINDS:
        for i, container in enumerate(spec.get(kind) or []):
            yield f"spec.{kind}[{i}]", container


def restricted_violations(manifest: Mapping[str, Any]) -> list[str]:
    """Every way this pod breaks the baseline or restricted profile, or the read-only root fs house rule.

    Empty list means the pod would be admitted under ``enforce: restricted``.
    """
    if not isinstance(manifest, Mapping) or not isinstance(manifest.get("spec"), Mapping):
        raise ValueError("manifest: expected a Pod manifest (a mapping with a 'spec' mapping)")
    spec: Mapping[str, Any] = manifest["spec"]
    metadata: Mapping[str, Any] = manifest.get("metadata") or {}
    pod_sc = _sc(spec)
    out: list[str] = []

    def add(path: str, rule: str, detail: str) -> None:
        out.append(f"{path}: {rule}: {detail}")

    # -- baseline, pod level --------------------------------------------------------------------
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        add("spec.securityContext.windowsOptions.hostProcess", "hostProcess", "must be false or unset")
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            add(f"spec.{field}", "host namespaces", "must be false or unset")
    for i, volume in enumerate(spec.get("volumes") or []):
        sources = [k for k in volume if k != "name" and volume[k] is not None]
        for source in sources:
            if source == "hostPath":
                add(
                    f"spec.volumes[{i}].hostPath",
                    "hostPath volumes",
                    f"volume {volume.get('name')!r} is forbidden",
                )
            elif source not in RESTRICTED_VOLUME_TYPES:
                add(
                    f"spec.volumes[{i}].{source}",
                    "volume types",
                    f"volume {volume.get('name')!r}: only {sorted(RESTRICTED_VOLUME_TYPES)} are allowed",
                )
    apparmor = (pod_sc.get("appArmorProfile") or {}).get("type")
    if apparmor is not None and apparmor not in APPARMOR_TYPES:
        add(
            "spec.securityContext.appArmorProfile.type",
            "AppArmor",
            f"must be RuntimeDefault or Localhost, got {apparmor!r}",
        )
    for key, value in (metadata.get("annotations") or {}).items():
        if key.startswith(APPARMOR_ANNOTATION_PREFIX) and not (
            value == "runtime/default" or str(value).startswith("localhost/")
        ):
            add(
                f"metadata.annotations[{key}]",
                "AppArmor",
                f"must be runtime/default or localhost/*, got {value!r}",
            )
    _check_selinux(pod_sc, "spec.securityContext", add)
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in SECCOMP_TYPES:
        add(
            "spec.securityContext.seccompProfile.type",
            "seccomp",
            f"must be RuntimeDefault or Localhost, got {pod_seccomp!r}",
        )
    for i, sysctl in enumerate(pod_sc.get("sysctls") or []):
        if sysctl.get("name") not in SAFE_SYSCTLS:
            add(
                f"spec.securityContext.sysctls[{i}].name",
                "sysctls",
                f"{sysctl.get('name')!r} is not a safe sysctl",
            )

    # -- restricted, pod level --------------------------------------------------------------------
    pod_non_root = pod_sc.get("runAsNonRoot")
    if pod_non_root is False:
        add("spec.securityContext.runAsNonRoot", "runAsNonRoot", "must be true or unset")
    if pod_sc.get("runAsUser") == 0:
        add("spec.securityContext.runAsUser", "runAsUser", "must not be 0 (root)")

    # -- per container ----------------------------------------------------------------------------
    for path, container in _containers(spec):
        _check_container(path, container, pod_seccomp=pod_seccomp, pod_non_root=pod_non_root is True, add=add)
    return out


def _check_selinux(sc: Mapping[str, Any], path: str, add: Any) -> None:
    options = sc.get("seLinuxOptions") or {}
    if options.get("type", "") not in SELINUX_TYPES:
        add(f"{path}.seLinuxOptions.type", "SELinux", f"type {options.get('type')!r} is not allowed")
    for field in ("user", "role"):
        if options.get(field):
            add(f"{path}.seLinuxOptions.{field}", "SELinux", f"{field} must be unset")


def _check_container(
    path: str, container: Mapping[str, Any], *, pod_seccomp: str | None, pod_non_root: bool, add: Any
) -> None:
    sc = _sc(container)
    scp = f"{path}.securityContext"
    name = container.get("name")
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        add(f"{scp}.windowsOptions.hostProcess", "hostProcess", f"container {name!r}: must be false or unset")
    if sc.get("privileged"):
        add(f"{scp}.privileged", "privileged", f"container {name!r}: must be false or unset, got True")

    caps = sc.get("capabilities") or {}
    for i, cap in enumerate(caps.get("add") or []):
        if cap not in BASELINE_CAPABILITIES:
            add(
                f"{scp}.capabilities.add[{i}]",
                "capabilities (baseline)",
                f"container {name!r}: {cap!r} may not be added",
            )
        elif cap not in RESTRICTED_ADD_CAPABILITIES:
            add(
                f"{scp}.capabilities.add[{i}]",
                "capabilities (restricted)",
                f"container {name!r}: only NET_BIND_SERVICE may be added, got {cap!r}",
            )
    if "ALL" not in (caps.get("drop") or []):
        add(f"{scp}.capabilities.drop", "capabilities (restricted)", f"container {name!r}: must drop ['ALL']")

    for i, port in enumerate(container.get("ports") or []):
        if port.get("hostPort"):
            add(f"{path}.ports[{i}].hostPort", "hostPorts", f"container {name!r}: must be 0 or unset")

    apparmor = (sc.get("appArmorProfile") or {}).get("type")
    if apparmor is not None and apparmor not in APPARMOR_TYPES:
        add(
            f"{scp}.appArmorProfile.type",
            "AppArmor",
            f"container {name!r}: must be RuntimeDefault or Localhost, got {apparmor!r}",
        )
    _check_selinux(sc, scp, add)
    proc_mount = sc.get("procMount")
    if proc_mount not in (None, "Default"):
        add(
            f"{scp}.procMount",
            "/proc mount",
            f"container {name!r}: must be Default or unset, got {proc_mount!r}",
        )

    seccomp = (sc.get("seccompProfile") or {}).get("type")
    if seccomp is not None and seccomp not in SECCOMP_TYPES:
        add(
            f"{scp}.seccompProfile.type",
            "seccomp",
            f"container {name!r}: must be RuntimeDefault or Localhost, got {seccomp!r}",
        )
    elif seccomp is None and pod_seccomp is None:
        add(
            f"{scp}.seccompProfile.type",
            "seccomp",
            f"container {name!r}: must be RuntimeDefault or Localhost here or at spec.securityContext",
        )

    if sc.get("allowPrivilegeEscalation") is not False:
        add(
            f"{scp}.allowPrivilegeEscalation",
            "allowPrivilegeEscalation",
            f"container {name!r}: must be false",
        )
    non_root = sc.get("runAsNonRoot")
    if non_root is False or (non_root is None and not pod_non_root):
        add(
            f"{scp}.runAsNonRoot",
            "runAsNonRoot",
            f"container {name!r}: must be true here or at spec.securityContext",
        )
    if sc.get("runAsUser") == 0:
        add(f"{scp}.runAsUser", "runAsUser", f"container {name!r}: must not be 0 (root)")

    for probe in PROBES:
        for action in ("httpGet", "tcpSocket"):
            if ((container.get(probe) or {}).get(action) or {}).get("host"):
                add(f"{path}.{probe}.{action}.host", "probe host", f"container {name!r}: must be unset")
    for handler in HANDLERS:
        for action in ("httpGet", "tcpSocket"):
            if (((container.get("lifecycle") or {}).get(handler) or {}).get(action) or {}).get("host"):
                add(
                    f"{path}.lifecycle.{handler}.{action}.host",
                    "lifecycle host",
                    f"container {name!r}: must be unset",
                )

    # House rule: a read-only root fs means a compromised toolbox cannot drop tools into the image.
    if sc.get("readOnlyRootFilesystem") is not True:
        add(
            f"{scp}.readOnlyRootFilesystem",
            "readOnlyRootFilesystem (house rule)",
            f"container {name!r}: must be true",
        )


# -- secrets ---------------------------------------------------------------------------------------
# Matched anywhere in a name's word (DBPASSWORD, AUTHTOKEN) ...
_SECRET_SUBSTRINGS = (
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "SECRET",
    "TOKEN",
    "CREDENTIAL",
    "APIKEY",
    "PRIVATEKEY",
)
# ... or only as a whole word, because they are too short to match inside other words.
_SECRET_WORDS = frozenset({"KEY", "DSN", "PASS", "CREDS", "PSK"})
# A secret word followed by one of these names a secret, it does not hold one (KMS_KEY_ARN, DB_SECRET_NAME).
_IDENTIFIER_WORDS = frozenset({"ID", "ARN", "ALIAS", "NAME", "REF"})


def looks_secret(name: str) -> bool:
    """True when an environment variable name suggests it holds a credential.

    Deliberately broad: a false positive costs a rename or a Kubernetes Secret, a false negative
    puts a password in etcd.
    """
    words = [w for w in re.split(r"[^A-Z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).upper()) if w]
    for i, word in enumerate(words):
        if word in _SECRET_WORDS or any(s in word for s in _SECRET_SUBSTRINGS):
            following = words[i + 1] if i + 1 < len(words) else None
            if following not in _IDENTIFIER_WORDS:
                return True
    return False


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
            if isinstance(key, str):
                yield f"{path}.<key {key}>" if path else f"<key {key}>", key
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]")


def secret_leaks(manifest: Mapping[str, Any], secret_values: Iterable[str] = ()) -> list[str]:
    """Plaintext secrets in a manifest: secret-looking env values, and any known secret value anywhere.

    Messages name the path only, never the value, so a failing test cannot leak the secret itself.
    """
    out: list[str] = []
    spec = manifest.get("spec") or {}
    for path, container in _containers(spec):
        for i, env in enumerate(container.get("env") or []):
            if env.get("value") is not None and looks_secret(str(env.get("name", ""))):
                out.append(
                    f"{path}.env[{i}].value: plaintext secret: {env.get('name')!r} looks like a secret; "
                    "use valueFrom.secretKeyRef"
                )
    needles = [(n, s) for n, s in enumerate(secret_values, start=1) if s]
    if needles:
        for path, text in _strings(manifest, ""):
            for n, secret in needles:
                if secret in text:
                    out.append(f"{path}: plaintext secret: contains secret value #{n}")
    return out
