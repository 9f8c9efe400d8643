"""The one place the bundle's KubernetesPodOperator house defaults live.

Every pod the bundle starts runs the dr-toolbox image through ``toolbox_pod``, so security context,
resources, service account, deferral and clean-up are decided once and audited once (tests render
every pod of every DAG and hold it to the "restricted" Pod Security Standard).

The provider module costs seconds to import cold; DAG files import this module at parse time, so
KubernetesPodOperator and the Kubernetes models are imported inside the function, never at module level.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from dr_automation.pod_security import looks_secret

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    from dr_automation.estate import Estate

__all__ = ["POD_SIZES", "RUN_AS_ID", "PodSize", "pod_name", "toolbox_pod", "toolbox_pod_partial"]

PodSize = Literal["small", "medium", "large"]

# Non-root ids baked into the toolbox image; fsGroup makes the /tmp emptyDir writable for them.
RUN_AS_ID = 10001
TMP_MOUNT = "/tmp"
TMP_VOLUME = "tmp"

# requests / limits per size. Requests are what the scheduler reserves (the seed's backup cronjobs
# asked 200m/512Mi); limits leave headroom for compression and checksum bursts. /tmp is the only
# writable path, so its emptyDir sizeLimit stays below the ephemeral-storage limit.
POD_SIZES: Mapping[str, Mapping[str, Mapping[str, str]]] = {
    "small": {
        "requests": {"cpu": "200m", "memory": "512Mi", "ephemeral-storage": "1Gi"},
        "limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "2Gi"},
        "tmp": {"sizeLimit": "1536Mi"},
    },
    "medium": {
        "requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "4Gi"},
        "limits": {"cpu": "2", "memory": "2Gi", "ephemeral-storage": "8Gi"},
        "tmp": {"sizeLimit": "7Gi"},
    },
    "large": {
        "requests": {"cpu": "1", "memory": "2Gi", "ephemeral-storage": "16Gi"},
        "limits": {"cpu": "4", "memory": "4Gi", "ephemeral-storage": "32Gi"},
        "tmp": {"sizeLimit": "30Gi"},
    },
}

# kwargs that would replace a house default wholesale; each has a dedicated, safer parameter.
_REFUSED_KWARGS: Mapping[str, str] = {
    "cmds": "the entrypoint is always dr-toolbox; pass the subcommand in arguments",
    "env_vars": "use env= (plain values) or secret_env= (Kubernetes Secrets)",
    "secrets": "use secret_env={'ENV_NAME': (secret_name, key)}",
    "container_resources": "use size='small'|'medium'|'large'",
    "security_context": "the restricted pod security context is fixed for every toolbox pod",
    "container_security_context": "the restricted container security context is fixed for every toolbox pod",
    "xcom_sidecar_container_security_context": "the sidecar gets the same restricted security context",
    "hostnetwork": "host namespaces are forbidden by the restricted Pod Security Standard",
    "full_pod_spec": "a full pod spec would bypass the house defaults",
    "pod_template_file": "a pod template would bypass the house defaults",
    "pod_template_dict": "a pod template would bypass the house defaults",
}

# Pods mapped over an XCom (their arguments exist only at run time) cannot be rendered before a run:
# their DAG registers a representative argument list under (dag_id, task_id), so the bundle's pod
# audit renders and validates them like every other pod.
SAMPLE_ARGUMENTS: dict[tuple[str, str], list[str]] = {}

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A Jinja expression that reads a credential renders it into the pod spec in plaintext.
_TEMPLATED_SECRET = re.compile(r"\{\{[^}]*\b(password|secret|token|get_password)\b", re.IGNORECASE)
# Room for the provider's "-" + 8-character random suffix inside a 63-character DNS-1123 label.
_NAME_MAX = 63 - 9


def pod_name(task_id: str) -> str:
    """A DNS-1123 label from a task id (task ids may hold '_' and '.', pod names may not)."""
    slug = re.sub(r"[^a-z0-9]+", "-", task_id.lower()).strip("-")
    return slug[:_NAME_MAX].rstrip("-") or "dr-toolbox"


def _check_env(env: Mapping[str, str], secret_env: Mapping[str, tuple[str, str]]) -> None:
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"env[{name!r}]: not a valid environment variable name")
        if looks_secret(name):
            raise ValueError(
                f"env[{name!r}]: the name looks like a secret and plain env values are stored in the pod "
                "spec in plaintext; pass it as secret_env={name: (secret_name, key)} instead"
            )
        if not isinstance(value, str):
            raise ValueError(f"env[{name!r}]: value must be a string, got {type(value).__name__}")
        if _TEMPLATED_SECRET.search(value):
            raise ValueError(
                f"env[{name!r}]: the template reads a credential, which would render into the pod spec in "
                "plaintext; use secret_env instead"
            )
    for name, ref in secret_env.items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"secret_env[{name!r}]: not a valid environment variable name")
        if not (
            isinstance(ref, tuple | list) and len(ref) == 2 and all(isinstance(p, str) and p for p in ref)
        ):
            raise ValueError(f"secret_env[{name!r}]: expected (secret_name, key), got {type(ref).__name__}")
        if name in env:
            raise ValueError(f"secret_env[{name!r}]: also set in env; a variable comes from one place only")


def toolbox_pod(
    task_id: str,
    arguments: list[str],
    *,
    estate: Estate,
    secret_env: Mapping[str, tuple[str, str]] | None = None,
    env: Mapping[str, str] | None = None,
    size: PodSize = "small",
    labels: Mapping[str, str] | None = None,
    image: str | None = None,
    **kwargs: Any,
) -> KubernetesPodOperator:
    """A KubernetesPodOperator running ``dr-toolbox <arguments>`` with the bundle's house defaults.

    ``arguments`` are templated. ``secret_env`` maps ENV_NAME -> (secret_name, key) and reaches the
    container as ``valueFrom.secretKeyRef``, so values never appear in the spec; ``env`` is for
    non-secret values only and refuses secret-looking names. Other kwargs go to the operator
    (``deferrable``, ``on_finish_action``, ``automount_service_account_token=True`` for pods that
    call the Kubernetes API, ...), except those in ``_REFUSED_KWARGS`` which would undo a default.
    """
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    if isinstance(arguments, str) or not isinstance(arguments, list | tuple):
        raise ValueError(f"toolbox_pod({task_id!r}): arguments must be a list of strings")
    operator_kwargs = _operator_kwargs(
        task_id, estate, secret_env=secret_env, env=env, size=size, labels=labels, image=image, **kwargs
    )
    return KubernetesPodOperator(task_id=task_id, arguments=list(arguments), **operator_kwargs)


def toolbox_pod_partial(task_id: str, *, estate: Estate, **options: Any) -> Any:
    """``toolbox_pod`` for dynamic task mapping: the same options and house defaults, left open for
    ``.expand(arguments=[[...], [...]])`` (one pod per mapped instance, e.g. one per backed-up system)."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    return KubernetesPodOperator.partial(task_id=task_id, **_operator_kwargs(task_id, estate, **options))


def _operator_kwargs(
    task_id: str,
    estate: Estate,
    *,
    secret_env: Mapping[str, tuple[str, str]] | None = None,
    env: Mapping[str, str] | None = None,
    size: str = "small",
    labels: Mapping[str, str] | None = None,
    image: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Every KubernetesPodOperator kwarg but task_id and arguments: the house defaults, decided once."""
    refused = sorted(set(kwargs) & set(_REFUSED_KWARGS))
    if refused:
        raise TypeError(
            f"toolbox_pod({task_id!r}): {refused[0]!r} is not accepted: {_REFUSED_KWARGS[refused[0]]}"
        )
    if size not in POD_SIZES:
        raise ValueError(f"toolbox_pod({task_id!r}): size must be one of {sorted(POD_SIZES)}, got {size!r}")
    env = dict(env or {})
    secret_env = dict(secret_env or {})
    _check_env(env, secret_env)

    from airflow.providers.cncf.kubernetes.secret import Secret
    from kubernetes.client import models as k8s

    k8s_conf = estate.kubernetes
    spec = POD_SIZES[size]
    container_security = k8s.V1SecurityContext(
        allow_privilege_escalation=False,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
        privileged=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        run_as_user=RUN_AS_ID,
        run_as_group=RUN_AS_ID,
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )
    env_vars = [
        k8s.V1EnvVar(name=name, value=value)
        for name, value in {"TMPDIR": TMP_MOUNT, "HOME": TMP_MOUNT, **env}.items()
    ]
    operator_kwargs: dict[str, Any] = {
        "deferrable": True,
        "on_finish_action": "delete_pod",
        "get_logs": True,
        "log_events_on_failure": True,
        "do_xcom_push": False,
        # Image pulls on a freshly scaled DR node group take minutes, not seconds.
        "startup_timeout_seconds": 600,
        "image_pull_policy": "IfNotPresent",
        "automount_service_account_token": False,
        "random_name_suffix": True,
        **kwargs,
    }
    volumes = [
        k8s.V1Volume(
            name=TMP_VOLUME, empty_dir=k8s.V1EmptyDirVolumeSource(size_limit=spec["tmp"]["sizeLimit"])
        ),
        *(operator_kwargs.pop("volumes", None) or []),
    ]
    volume_mounts = [
        k8s.V1VolumeMount(name=TMP_VOLUME, mount_path=TMP_MOUNT),
        *(operator_kwargs.pop("volume_mounts", None) or []),
    ]
    return dict(
        name=pod_name(task_id),
        image=image or k8s_conf["toolbox_image"],
        cmds=["dr-toolbox"],
        namespace=k8s_conf["pod_namespace"],
        service_account_name=k8s_conf["service_account"],
        kubernetes_conn_id=estate.connections["kubernetes"],
        labels={
            "app.kubernetes.io/name": "dr-toolbox",
            "app.kubernetes.io/managed-by": "dr-automation",
            **(labels or {}),
        },
        env_vars=env_vars,
        secrets=[Secret("env", name, secret, key) for name, (secret, key) in secret_env.items()],
        container_resources=k8s.V1ResourceRequirements(
            requests=dict(spec["requests"]), limits=dict(spec["limits"])
        ),
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=RUN_AS_ID,
            run_as_group=RUN_AS_ID,
            fs_group=RUN_AS_ID,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        container_security_context=container_security,
        xcom_sidecar_container_security_context=container_security,
        volumes=volumes,
        volume_mounts=volume_mounts,
        **operator_kwargs,
    )
