"""A Kubernetes API server stand-in for the sandbox: enough of the real API for the DR bundle.

Why: there is no cluster (nor Docker) on the sandbox machines, yet the bundle's tasks are
KubernetesPodOperator pods running the dr-toolbox image, and its backup/failover DAGs list, back up,
restore and scale namespaced resources. This server speaks the real API's JSON shapes (kinds,
metadata.resourceVersion/uid/creationTimestamp, List kinds, Status errors with the real
code/reason), so the official clients (`kubernetes`, `kubernetes_asyncio`) and KPO work unchanged.

Pods are run, not just stored: a pod whose container ``base`` uses the toolbox image repository is
started as a local process (``dr-toolbox`` -> ``python -m dr_toolbox``), its output becomes the pod
log, and its exit code decides Succeeded/Failed. Any other image is SIMULATED: it "succeeds" after a
short delay with a log line saying it was not run.

What the process gets in its environment, and why:
- the container's ``env``/``envFrom`` with ``secretKeyRef``/``configMapKeyRef``/``fieldRef``
  resolved from the stored objects, like the kubelet (a missing secret or key keeps the pod Pending in
  ``CreateContainerConfigError`` and records an Event naming it);
- variables the stand-in itself was started with whose names match the pass-through list
  (default ``PYTHONPATH PATH AWS_ENDPOINT_URL* AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
  AWS_DEFAULT_REGION PG*``; ``--pass-env`` / ``DR_K8S_PASS_ENV`` override it, ``*`` = prefix). In a
  real cluster these come from the pod's service account (IRSA) and the node, which the sandbox
  does not have; the pod's own env wins over them;
- ``HOME``/``TMPDIR`` = a per-pod work dir (the pod's /tmp, also its cwd), ``HOSTNAME`` = pod name,
  ``KUBERNETES_SERVICE_HOST/PORT`` = this server.

Simplifications (documented, deliberate): no RBAC (a bearer token is accepted, or checked against
``--token`` when given); workloads (Deployments, StatefulSets) are stored and their status follows
spec.replicas at once, but they start no pods; Jobs are stored only; restartPolicy is treated as
Never; only container ``base`` (or the first container) of a pod runs, other containers mirror it;
server-side apply and protobuf are not supported; pods that were running when the stand-in stopped
are Failed after a restart (like a lost node). Everything binds to loopback only.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import copy
import json
import logging
import os
import re
import secrets as pysecrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dr_sandbox.netguard import require_loopback, serve_until_signalled

log = logging.getLogger(__name__)

DEFAULT_TOOLBOX_REPOSITORY = "ghcr.io/leanvibe/dr-toolbox"
DEFAULT_PASS_ENV = (
    "PYTHONPATH",
    "PATH",
    "AWS_ENDPOINT_URL*",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "PG*",
)
PASS_ENV_VAR = "DR_K8S_PASS_ENV"
NODE_NAME = "sandbox-node"
SERVER_VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0-dr-sandbox",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.24",
    "compiler": "gc",
    "platform": "linux/amd64",
}
STATE_FILE = "k8s-state.json"
BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


# ---------------------------------------------------------------------------------------------
# Resource types
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    has_status: bool = True
    has_generation: bool = False
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """How the real API names the resource in messages (``deployments.apps``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def singular(self) -> str:
        return self.kind.lower()


RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", namespaced=False),
    ResourceType("", "v1", "pods", "Pod"),
    ResourceType("", "v1", "configmaps", "ConfigMap", has_status=False),
    ResourceType("", "v1", "secrets", "Secret", has_status=False),
    ResourceType("", "v1", "services", "Service"),
    ResourceType("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim"),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", has_status=False),
    ResourceType("", "v1", "events", "Event", has_status=False),
    ResourceType("apps", "v1", "deployments", "Deployment", has_generation=True),
    ResourceType("apps", "v1", "statefulsets", "StatefulSet", has_generation=True),
    ResourceType("networking.k8s.io", "v1", "ingresses", "Ingress", has_generation=True),
    ResourceType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", has_generation=True),
    ResourceType("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    ResourceType("batch", "v1", "jobs", "Job", has_generation=True),
)
_BY_PATH = {(rt.group, rt.version, rt.plural): rt for rt in RESOURCE_TYPES}
_BY_KIND = {(rt.api_version, rt.kind): rt for rt in RESOURCE_TYPES}
_SUBRESOURCES = {
    "pods": ("log", "status"),
    "deployments": ("scale", "status"),
    "statefulsets": ("scale", "status"),
}


def resource_type(api_version: str, plural: str) -> ResourceType:
    group, _, version = api_version.rpartition("/")
    rt = _BY_PATH.get((group, version, plural))
    if rt is None:
        raise KeyError(f"unknown resource {plural} in {api_version}")
    return rt


# ---------------------------------------------------------------------------------------------
# Errors and small helpers
# ---------------------------------------------------------------------------------------------
class ApiError(Exception):
    """An error the API answers as a Status object."""

    def __init__(
        self, code: int, reason: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details or {})

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{rt.group_resource} "{name}" not found', {"name": name, "kind": rt.plural}
    )


def invalid(rt: ResourceType, name: str, field: str, detail: str, value: Any = None) -> ApiError:
    shown = f'Invalid value: "{value}": {detail}' if value is not None else detail
    return ApiError(
        422,
        "Invalid",
        f'{rt.kind} "{name}" is invalid: {field}: {shown}',
        {
            "name": name,
            "group": rt.group,
            "kind": rt.kind,
            "causes": [{"reason": "FieldValueInvalid", "message": shown, "field": field}],
        },
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def rfc3339(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_nano(ts: float | None = None) -> str:
    """The kubelet's log timestamp format (RFC3339Nano, UTC)."""
    dt = datetime.fromtimestamp(time.time() if ts is None else ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def parse_rfc3339(value: str) -> float:
    text = value.strip().replace("Z", "+00:00")
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$", text)
    if m and m.group(2):  # Python parses at most 6 fractional digits
        text = m.group(1) + m.group(2)[:7] + m.group(3)
    return datetime.fromisoformat(text).timestamp()


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME_RULES = {"namespaces", "services"}


def _validate_name(rt: ResourceType, name: str) -> None:
    if rt.plural in _LABEL_NAME_RULES:
        if len(name) > 63 or not _DNS_LABEL.match(name):
            raise invalid(
                rt,
                name,
                "metadata.name",
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                "and must start and end with an alphanumeric character (max 63 characters)",
                name,
            )
    elif rt.plural == "events":
        return  # event names carry a dotted hex suffix; anything non-empty is accepted
    elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise invalid(
            rt,
            name,
            "metadata.name",
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
            "'.', and must start and end with an alphanumeric character",
            name,
        )


# ---------------------------------------------------------------------------------------------
# Selectors
# ---------------------------------------------------------------------------------------------
_SET_REQ = re.compile(r"^\s*([^\s!=()]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(text: str) -> list[str]:
    """Split on commas that are not inside ``in (a,b)`` parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(text: str | None) -> list[tuple[str, str, tuple[str, ...]]]:
    """Parse ``k=v,k!=v,k,!k,k in (a,b),k notin (a)`` into (key, op, values) requirements."""
    reqs: list[tuple[str, str, tuple[str, ...]]] = []
    for part in _split_selector(text or ""):
        m = _SET_REQ.match(part)
        if m:
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            reqs.append((m.group(1), m.group(2), values))
        elif "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append((k.strip(), "!=", (v.strip(),)))
        elif "==" in part:
            k, v = part.split("==", 1)
            reqs.append((k.strip(), "=", (v.strip(),)))
        elif "=" in part:
            k, v = part.split("=", 1)
            reqs.append((k.strip(), "=", (v.strip(),)))
        elif part.startswith("!"):
            reqs.append((part[1:].strip(), "!exists", ()))
        else:
            reqs.append((part, "exists", ()))
        key = reqs[-1][0]
        if not key or re.search(r"[\s()!=]", key):
            raise bad_request(f"unable to parse requirement: invalid label key {key!r} in selector {text!r}")
    return reqs


def labels_match(labels: Mapping[str, str] | None, reqs: Iterable[tuple[str, str, tuple[str, ...]]]) -> bool:
    labels = labels or {}
    for key, op, values in reqs:
        present = key in labels
        value = labels.get(key)
        if op == "=" and value != values[0]:
            return False
        if op == "!=" and present and value == values[0]:
            return False
        if op == "exists" and not present:
            return False
        if op == "!exists" and present:
            return False
        if op == "in" and value not in values:
            return False
        if op == "notin" and present and value in values:
            return False
    return True


def parse_field_selector(text: str | None) -> list[tuple[str, bool, str]]:
    """Parse ``a.b=v,c!=w`` into (path, equal?, value)."""
    reqs = []
    for part in _split_selector(text or ""):
        if "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append((k.strip(), False, v.strip()))
        elif "==" in part or "=" in part:
            k, v = part.split("==", 1) if "==" in part else part.split("=", 1)
            reqs.append((k.strip(), True, v.strip()))
        else:
            raise bad_request(f"invalid field selector: {part!r}: expected key=value or key!=value")
    return reqs


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, Mapping) else None
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def fields_match(obj: Mapping[str, Any], reqs: Iterable[tuple[str, bool, str]]) -> bool:
    return all((_field_value(obj, path) == value) == equal for path, equal, value in reqs)


# ---------------------------------------------------------------------------------------------
# Patches
# ---------------------------------------------------------------------------------------------
def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(i, dict) and "name" in i for i in value)


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge: merge patch, except lists of named objects merge by ``name``."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        current = result.get(key)
        if value is None:
            result.pop(key, None)
        elif _named_list(value) and _named_list(current):
            merged = [dict(i) for i in current]
            for item in value:
                idx = next((n for n, c in enumerate(merged) if c["name"] == item["name"]), None)
                if item.get("$patch") == "delete":
                    if idx is not None:
                        merged.pop(idx)
                elif idx is None:
                    merged.append(strategic_merge_patch({}, item))
                else:
                    merged[idx] = strategic_merge_patch(merged[idx], item)
            result[key] = merged
        else:
            result[key] = strategic_merge_patch(current, value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"json patch: path {path!r} must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (add/remove/replace/move/copy/test)."""
    if not isinstance(ops, list):
        raise bad_request("json patch: the body must be a JSON array of operations")
    doc = copy.deepcopy(target)

    def parent(parts: list[str]) -> tuple[Any, str]:
        cur = doc
        for p in parts[:-1]:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        return cur, parts[-1]

    def get(path: str) -> Any:
        cur = doc
        for p in _pointer(path):
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        return cur

    def remove(path: str) -> Any:
        cont, last = parent(_pointer(path))
        return cont.pop(int(last)) if isinstance(cont, list) else cont.pop(last)

    def add(path: str, value: Any) -> None:
        nonlocal doc
        parts = _pointer(path)
        if not parts:
            doc = value
            return
        cont, last = parent(parts)
        if isinstance(cont, list):
            cont.insert(len(cont) if last == "-" else int(last), value)
        else:
            cont[last] = value

    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"json patch: invalid operation {op!r}: needs 'op' and 'path'")
        kind, path = op["op"], op["path"]
        try:
            if kind == "add":
                add(path, copy.deepcopy(op["value"]))
            elif kind == "remove":
                remove(path)
            elif kind == "replace":
                remove(path)
                add(path, copy.deepcopy(op["value"]))
            elif kind == "move":
                add(path, remove(op["from"]))
            elif kind == "copy":
                add(path, copy.deepcopy(get(op["from"])))
            elif kind == "test":
                if get(path) != op["value"]:
                    raise ApiError(422, "Invalid", f"json patch: test operation failed at {path}")
            else:
                raise bad_request(f"json patch: unknown op {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiError(
                422, "Invalid", f"json patch: {kind} {path}: path does not exist ({exc!r})"
            ) from None
    return doc


def apply_patch(target: dict[str, Any], content_type: str, patch: Any) -> dict[str, Any]:
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype == "application/json-patch+json":
        return json_patch(target, patch)
    if ctype == "application/merge-patch+json":
        return merge_patch(target, patch)
    if ctype == "application/strategic-merge-patch+json":
        return strategic_merge_patch(target, patch)
    raise ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"application/json-patch+json, application/merge-patch+json, "
        f"application/strategic-merge-patch+json (got {ctype or 'none'})",
    )


# ---------------------------------------------------------------------------------------------
# Admission: defaults and validation per kind
# ---------------------------------------------------------------------------------------------
def _image_repository(image: str) -> str:
    """``ghcr.io/org/img:tag`` / ``...@sha256:..`` -> ``ghcr.io/org/img``."""
    image = image.split("@", 1)[0]
    slash = image.rfind("/")
    colon = image.rfind(":")
    return image[:colon] if colon > slash else image


def _default_pod(pod: dict[str, Any], name: str) -> None:
    rt = _BY_PATH[("", "v1", "pods")]
    spec = pod.setdefault("spec", {})
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise invalid(rt, name, "spec.containers", "Required value")
    seen: set[str] = set()
    for n, c in enumerate(containers + list(spec.get("initContainers") or [])):
        field = f"spec.containers[{n}]"
        if not isinstance(c, dict):
            raise invalid(rt, name, field, "must be an object")
        if not c.get("name"):
            raise invalid(rt, name, f"{field}.name", "Required value")
        if not _DNS_LABEL.match(str(c["name"])):
            raise invalid(rt, name, f"{field}.name", "must be a DNS-1123 label", c["name"])
        if c["name"] in seen:
            raise invalid(rt, name, f"{field}.name", "Duplicate value", c["name"])
        seen.add(c["name"])
        if not c.get("image"):
            raise invalid(rt, name, f"{field}.image", "Required value")
        for e_n, env in enumerate(c.get("env") or []):
            if not isinstance(env, dict) or not env.get("name"):
                raise invalid(rt, name, f"{field}.env[{e_n}].name", "Required value")
        tag = str(c["image"]).rsplit("/", 1)[-1]
        c.setdefault(
            "imagePullPolicy", "IfNotPresent" if ":" in tag and not tag.endswith(":latest") else "Always"
        )
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("resources", {})
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and (not isinstance(ads, int) or isinstance(ads, bool) or ads <= 0):
        raise invalid(rt, name, "spec.activeDeadlineSeconds", "must be a positive integer", ads)
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    pod["status"] = {"phase": "Pending", "qosClass": "BestEffort"}


def _workload_status(obj: dict[str, Any], kind: str) -> None:
    """Workload status follows spec.replicas at once (the sandbox has no controllers or nodes)."""
    spec = obj.setdefault("spec", {})
    replicas = spec.setdefault("replicas", 1)
    n = int(replicas)
    status: dict[str, Any] = {"observedGeneration": obj["metadata"].get("generation", 1)}
    counts = {"replicas": n, "updatedReplicas": n, "readyReplicas": n, "availableReplicas": n}
    if kind == "StatefulSet":
        counts["currentReplicas"] = n
        status["currentRevision"] = status["updateRevision"] = f"{obj['metadata']['name']}-5d8f7c9b4"
        status["collisionCount"] = 0
    status.update({k: v for k, v in counts.items() if v})  # the real API omits zero counts
    if kind == "Deployment":
        now = rfc3339()
        status["conditions"] = [
            {
                "type": "Available",
                "status": "True",
                "reason": "MinimumReplicasAvailable",
                "message": "Deployment has minimum availability.",
                "lastUpdateTime": now,
                "lastTransitionTime": now,
            },
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable",
                "message": f'ReplicaSet "{obj["metadata"]["name"]}-5d8f7c9b4" has successfully progressed.',
                "lastUpdateTime": now,
                "lastTransitionTime": now,
            },
        ]
    obj["status"] = status


def _validate_replicas(rt: ResourceType, name: str, value: Any, field: str = "spec.replicas") -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise invalid(rt, name, field, "must be greater than or equal to 0", value)


def _admit(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Type-specific defaulting and validation; runs on every create and update."""
    name = obj["metadata"]["name"]
    if rt.plural == "secrets":
        data = dict(obj.get("data") or {})
        for key, value in data.items():
            if not isinstance(value, str):
                raise invalid(rt, name, f"data[{key}]", "must be a base64-encoded string")
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise bad_request(
                    f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at data[{key}]'
                ) from None
        for key, value in dict(obj.pop("stringData", None) or {}).items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data
        obj.setdefault("type", "Opaque")
    elif rt.plural == "configmaps":
        for key, value in (obj.get("data") or {}).items():
            if not isinstance(value, str):
                raise invalid(rt, name, f"data[{key}]", "must be a string")
    elif rt.plural == "namespaces":
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}
    elif rt.plural in ("deployments", "statefulsets"):
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        _validate_replicas(rt, name, spec["replicas"])
        if not isinstance(spec.get("selector"), dict):
            raise invalid(rt, name, "spec.selector", "Required value")
        if not isinstance(spec.get("template"), dict):
            raise invalid(rt, name, "spec.template", "Required value")
        if rt.plural == "statefulsets":
            spec.setdefault("serviceName", "")
            spec.setdefault("podManagementPolicy", "OrderedReady")
        else:
            spec.setdefault("strategy", {"type": "RollingUpdate"})
        spec.setdefault("revisionHistoryLimit", 10)
        _workload_status(obj, rt.kind)
    elif rt.plural == "services":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        if old is not None and old.get("spec", {}).get("clusterIP"):
            spec["clusterIP"] = old["spec"]["clusterIP"]
        elif spec.get("clusterIP") != "None":
            # Data only (a cluster-internal address): nothing in the sandbox connects to it.
            digest = uuid.uuid5(uuid.NAMESPACE_URL, f"{obj['metadata'].get('namespace')}/{name}").bytes
            spec["clusterIP"] = f"10.96.{digest[0]}.{max(digest[1], 1)}"
        spec["clusterIPs"] = [spec["clusterIP"]]
        obj["status"] = {"loadBalancer": {}}
    elif rt.plural == "persistentvolumeclaims":
        spec = obj.setdefault("spec", {})
        spec.setdefault("storageClassName", "gp3")
        spec.setdefault("volumeMode", "Filesystem")
        spec.setdefault("volumeName", f"pvc-{obj['metadata'].get('uid', '')}")
        storage = (spec.get("resources") or {}).get("requests", {}).get("storage", "1Gi")
        obj["status"] = {
            "phase": "Bound",
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "capacity": {"storage": storage},
        }
    elif rt.plural == "horizontalpodautoscalers":
        spec = obj.setdefault("spec", {})
        if not isinstance(spec.get("scaleTargetRef"), dict):
            raise invalid(rt, name, "spec.scaleTargetRef", "Required value")
        if not isinstance(spec.get("maxReplicas"), int):
            raise invalid(rt, name, "spec.maxReplicas", "Required value")
        obj.setdefault(
            "status",
            {"currentReplicas": spec.get("minReplicas", 1), "desiredReplicas": spec.get("minReplicas", 1)},
        )
    elif rt.plural == "events":
        now = rfc3339()
        obj.setdefault("count", 1)
        obj.setdefault("firstTimestamp", now)
        obj.setdefault("lastTimestamp", now)
        obj.setdefault("type", "Normal")
        obj.setdefault("involvedObject", {})
    elif rt.plural == "jobs":
        obj.setdefault("status", {})


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------
Key = tuple[ResourceType, str, str]  # (type, namespace or "", name)
Listener = Callable[[str, ResourceType, dict[str, Any]], None]


class ClusterStore:
    """All objects, in memory, written to ``state_dir`` as JSON shortly after each change."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = Path(state_dir) if state_dir else None
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._objects: dict[Key, dict[str, Any]] = {}
        self._rv = 0
        self._changes: deque[tuple[int, str, ResourceType, dict[str, Any]]] = deque(maxlen=5000)
        self._listeners: list[Listener] = []
        self._dirty = threading.Event()
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None
        if self.state_dir:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._load()
            self._flusher = threading.Thread(target=self._flush_loop, name="k8s-state-flush", daemon=True)
            self._flusher.start()
        for ns in BUILTIN_NAMESPACES:
            if (_BY_PATH[("", "v1", "namespaces")], "", ns) not in self._objects:
                self.create(_BY_PATH[("", "v1", "namespaces")], "", {"metadata": {"name": ns}})

    # -- persistence -------------------------------------------------------------------------
    @property
    def state_file(self) -> Path | None:
        return self.state_dir / STATE_FILE if self.state_dir else None

    def _load(self) -> None:
        path = self.state_file
        if not path or not path.exists():
            return
        data = json.loads(path.read_text())
        self._rv = int(data.get("resourceVersion", 0))
        for obj in data.get("objects", []):
            rt = _BY_KIND.get((obj.get("apiVersion"), obj.get("kind")))
            if rt is None:
                continue
            meta = obj["metadata"]
            self._objects[(rt, meta.get("namespace", "") if rt.namespaced else "", meta["name"])] = obj
        self._changes.clear()

    def save(self) -> None:
        path = self.state_file
        if not path:
            return
        with self._lock:
            self._dirty.clear()
            data = {"resourceVersion": self._rv, "objects": list(self._objects.values())}
            text = json.dumps(data, sort_keys=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def _flush_loop(self) -> None:
        while not self._closed.is_set():
            if self._dirty.wait(0.5) and not self._closed.is_set():
                time.sleep(0.1)  # coalesce bursts (a seed writes dozens of objects)
                self.save()

    def close(self) -> None:
        self._closed.set()
        if self._flusher:
            self._flusher.join(timeout=5)
        self.save()
        with self._cond:
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # -- listeners and the change log (for watches) ------------------------------------------
    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def _commit(self, kind: str, rt: ResourceType, key: Key, obj: dict[str, Any] | None) -> None:
        """Record a change; caller holds the lock."""
        self._rv += 1
        if obj is not None:
            obj["metadata"]["resourceVersion"] = str(self._rv)
            self._objects[key] = obj
            snapshot = copy.deepcopy(obj)
        else:
            snapshot = copy.deepcopy(self._objects.pop(key))
            snapshot["metadata"]["resourceVersion"] = str(self._rv)
        self._changes.append((self._rv, kind, rt, snapshot))
        self._dirty.set()
        self._cond.notify_all()
        self._pending.append((kind, rt, snapshot))

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        with self._lock:
            self._pending: list[tuple[str, ResourceType, dict[str, Any]]] = []
            try:
                yield
            finally:
                pending, self._pending = self._pending, []
        for kind, rt, snapshot in pending:
            for fn in self._listeners:
                try:
                    fn(kind, rt, snapshot)
                except Exception:  # a listener must never break the API
                    log.exception("listener failed for %s %s", kind, rt.plural)

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    # -- reads -------------------------------------------------------------------------------
    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            obj = self._objects.get((rt, namespace if rt.namespaced else "", name))
            if obj is None:
                raise not_found(rt, name)
            return copy.deepcopy(obj)

    def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        lreqs = parse_label_selector(label_selector)
        freqs = parse_field_selector(field_selector)
        with self._lock:
            items = [
                copy.deepcopy(obj)
                for (t, ns, _), obj in sorted(self._objects.items(), key=lambda kv: (kv[0][1], kv[0][2]))
                if t is rt
                and (namespace is None or ns == namespace)
                and labels_match(obj["metadata"].get("labels"), lreqs)
                and fields_match(obj, freqs)
            ]
            return items, str(self._rv)

    def changes_since(
        self, rv: int, rt: ResourceType, namespace: str | None, timeout: float
    ) -> tuple[list[tuple[int, str, dict[str, Any]]], bool]:
        """Changes of one type after ``rv``; waits up to ``timeout`` for one. Second value: rv too old."""
        with self._cond:
            # Every change after `known_from` is still in the log; older resourceVersions are gone.
            known_from = self._changes[0][0] - 1 if self._changes else self._rv
            if rv < known_from:
                return [], True
            deadline = time.monotonic() + timeout
            while True:
                found = [
                    (crv, kind, obj)
                    for crv, kind, t, obj in self._changes
                    if crv > rv
                    and t is rt
                    and (namespace is None or obj["metadata"].get("namespace") == namespace)
                ]
                if found or self._closed.is_set():
                    return found, False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return [], False
                self._cond.wait(min(remaining, 0.5))

    # -- writes ------------------------------------------------------------------------------
    def _check_namespace(self, rt: ResourceType, namespace: str) -> None:
        if rt.namespaced and (_BY_PATH[("", "v1", "namespaces")], "", namespace) not in self._objects:
            raise ApiError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                {"name": namespace, "kind": "namespaces"},
            )

    def _prepare(self, rt: ResourceType, namespace: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request(f"the body must be a JSON object describing a {rt.kind}")
        obj = copy.deepcopy(body)
        if obj.get("kind") not in (None, rt.kind) or obj.get("apiVersion") not in (None, rt.api_version):
            raise bad_request(
                f"the body is a {obj.get('apiVersion')}/{obj.get('kind')}, expected {rt.api_version}/{rt.kind}"
            )
        obj["kind"], obj["apiVersion"] = rt.kind, rt.api_version
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        for field in ("labels", "annotations"):
            value = meta.get(field)
            if value is not None and (
                not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values())
            ):
                raise invalid(rt, str(meta.get("name")), f"metadata.{field}", "values must be strings")
        return obj

    def create(self, rt: ResourceType, namespace: str, body: Any, *, dry_run: bool = False) -> dict[str, Any]:
        obj = self._prepare(rt, namespace, body)
        meta = obj["metadata"]
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + pysecrets.token_hex(3)[:5]
            else:
                raise invalid(rt, "", "metadata.name", "Required value: name or generateName is required")
        name = meta["name"]
        _validate_name(rt, name)
        with self._tx():
            self._check_namespace(rt, namespace)
            key = (rt, namespace if rt.namespaced else "", name)
            if key in self._objects:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{rt.group_resource} "{name}" already exists',
                    {"name": name, "group": rt.group, "kind": rt.plural},
                )
            if rt.plural == "pods":
                sa = (obj.get("spec") or {}).get("serviceAccountName") or (obj.get("spec") or {}).get(
                    "serviceAccount"
                )
                sa_rt = _BY_PATH[("", "v1", "serviceaccounts")]
                if sa and (sa_rt, namespace, sa) not in self._objects:
                    raise ApiError(
                        403,
                        "Forbidden",
                        f'pods "{name}" is forbidden: error looking up service account '
                        f'{namespace}/{sa}: serviceaccount "{sa}" not found',
                        {"name": name, "kind": "pods"},
                    )
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = rfc3339()
            for stale in ("resourceVersion", "deletionTimestamp", "managedFields", "selfLink"):
                meta.pop(stale, None)
            if rt.has_generation:
                meta["generation"] = 1
            if rt.plural == "pods":
                _default_pod(obj, name)
            _admit(rt, obj, None)
            if dry_run:
                return obj
            self._commit("ADDED", rt, key, obj)
            if rt.plural == "namespaces":
                sa_rt = _BY_PATH[("", "v1", "serviceaccounts")]
                sa_obj = {
                    "kind": "ServiceAccount",
                    "apiVersion": "v1",
                    "metadata": {
                        "name": "default",
                        "namespace": name,
                        "uid": str(uuid.uuid4()),
                        "creationTimestamp": rfc3339(),
                    },
                }
                self._commit("ADDED", sa_rt, (sa_rt, name, "default"), sa_obj)
            return copy.deepcopy(obj)

    def replace(
        self, rt: ResourceType, namespace: str, name: str, body: Any, *, dry_run: bool = False
    ) -> dict[str, Any]:
        obj = self._prepare(rt, namespace, body)
        meta = obj["metadata"]
        if meta.get("name") not in (None, name):
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        meta["name"] = name
        with self._tx():
            key = (rt, namespace if rt.namespaced else "", name)
            old = self._objects.get(key)
            if old is None:
                raise not_found(rt, name)
            sent_rv = meta.get("resourceVersion")
            if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {rt.group_resource} "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again",
                    {"name": name, "group": rt.group, "kind": rt.plural},
                )
            new = self._merge_update(rt, old, obj)
            if dry_run:
                return new
            self._commit("MODIFIED", rt, key, new)
            return copy.deepcopy(new)

    def _merge_update(self, rt: ResourceType, old: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
        """Keep what a client cannot change (identity, status, a pod's spec), bump generation."""
        meta = obj["metadata"]
        for keep in ("uid", "creationTimestamp", "namespace", "generateName"):
            if keep in old["metadata"]:
                meta[keep] = old["metadata"][keep]
        meta.pop("resourceVersion", None)
        if rt.has_status and rt.plural not in ("deployments", "statefulsets"):
            obj["status"] = copy.deepcopy(old.get("status", {}))
        if rt.plural == "pods":
            spec = copy.deepcopy(old["spec"])
            new_deadline = (obj.get("spec") or {}).get("activeDeadlineSeconds")
            if new_deadline is not None:
                spec["activeDeadlineSeconds"] = new_deadline
            obj["spec"] = spec
        if rt.has_generation:
            gen = old["metadata"].get("generation", 1)
            meta["generation"] = gen + 1 if obj.get("spec") != old.get("spec") else gen
        if rt.plural != "pods":
            _admit(rt, obj, old)
        return obj

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        patch: Any,
        *,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        with self._lock:
            current = self.get(rt, namespace, name)
            patched = apply_patch(current, content_type, patch)
            if not isinstance(patched, dict):
                raise bad_request("the patch did not produce an object")
            patched.setdefault("metadata", {}).setdefault(
                "resourceVersion", current["metadata"]["resourceVersion"]
            )
            return self.replace(rt, namespace, name, patched, dry_run=dry_run)

    def delete(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        with self._tx():
            key = (rt, namespace if rt.namespaced else "", name)
            obj = self._objects.get(key)
            if obj is None:
                raise not_found(rt, name)
            snapshot = copy.deepcopy(obj)
            if rt.plural == "namespaces":
                for other in [k for k in self._objects if k[0].namespaced and k[1] == name]:
                    self._commit("DELETED", other[0], other, None)
                snapshot["status"] = {"phase": "Terminating"}
            snapshot["metadata"]["deletionTimestamp"] = rfc3339()
            self._commit("DELETED", rt, key, None)
            return snapshot

    def update_status(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        mutate: Callable[[dict[str, Any]], None],
        uid: str | None = None,
    ) -> dict[str, Any] | None:
        """Controller-side change (the kubelet's): returns None when the object is gone."""
        with self._tx():
            key = (rt, namespace, name)
            obj = self._objects.get(key)
            if obj is None or (uid and obj["metadata"].get("uid") != uid):
                return None
            new = copy.deepcopy(obj)
            mutate(new)
            self._commit("MODIFIED", rt, key, new)
            return copy.deepcopy(new)

    def record_event(
        self, involved: Mapping[str, Any], reason: str, message: str, event_type: str = "Normal"
    ) -> None:
        meta = involved["metadata"]
        rt = _BY_PATH[("", "v1", "events")]
        now = rfc3339()
        body = {
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
            "involvedObject": {
                "kind": involved.get("kind", "Pod"),
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta.get("uid"),
                "apiVersion": involved.get("apiVersion", "v1"),
                "resourceVersion": meta.get("resourceVersion"),
                "fieldPath": "spec.containers{base}" if reason not in ("Scheduled",) else None,
            },
            "reason": reason,
            "message": message,
            "source": {
                "component": "kubelet" if reason != "Scheduled" else "default-scheduler",
                "host": NODE_NAME,
            },
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": event_type,
            "reportingComponent": "kubelet",
            "reportingInstance": NODE_NAME,
        }
        with contextlib.suppress(ApiError):
            self.create(rt, meta["namespace"], body)

    def keys_snapshot(self) -> list[Key]:
        with self._lock:
            return list(self._objects)


# ---------------------------------------------------------------------------------------------
# Pods as local processes (the kubelet's part)
# ---------------------------------------------------------------------------------------------
class _EnvError(Exception):
    """A reference the kubelet cannot resolve: the container stays in CreateContainerConfigError."""


def toolbox_argv(command: list[str], args: list[str]) -> list[str]:
    """The local argv for a toolbox container: the image's entrypoint is ``dr-toolbox``."""
    argv = list(command or ["dr-toolbox"]) + list(args or [])
    head = argv[0]
    if head == "dr-toolbox" or head.endswith("/dr-toolbox"):
        return [sys.executable, "-m", "dr_toolbox", *argv[1:]]
    if os.path.basename(head) in ("python", "python3", f"python3.{sys.version_info.minor}"):
        return [sys.executable, *argv[1:]]
    return argv


_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def expand_vars(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion (``$$`` escapes; unknown references stay as written)."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(sub, text)


def _pass_env_matches(name: str, patterns: Iterable[str]) -> bool:
    return any(name.startswith(p[:-1]) if p.endswith("*") else name == p for p in patterns)


@dataclass
class _Running:
    uid: str
    namespace: str
    name: str
    log_path: Path
    workdir: Path
    stop: threading.Event
    finished: threading.Event
    started: threading.Event
    proc: subprocess.Popen[bytes] | None = None


class PodRunner:
    """Starts, watches, kills pod processes and keeps their status like a kubelet would."""

    def __init__(
        self,
        store: ClusterStore,
        work_root: Path,
        *,
        toolbox_repository: str,
        pass_env: Iterable[str],
        extra_env: Mapping[str, str] | None,
        server_host: str,
        server_port_ref: Callable[[], int],
        simulated_seconds: float,
        container_start_seconds: float = 0.0,
    ) -> None:
        self.store = store
        self.work_root = work_root
        self.toolbox_repository = _image_repository(toolbox_repository)
        self.pass_env = tuple(pass_env)
        self.base_env = {k: v for k, v in os.environ.items() if _pass_env_matches(k, self.pass_env)}
        self.base_env.update(extra_env or {})
        self.server_host = server_host
        self.server_port_ref = server_port_ref
        self.simulated_seconds = simulated_seconds
        # Real pods spend seconds being scheduled, pulling and creating the container; a pod that
        # completes instantly is unrealistic and hits Airflow 3.3's stale defer-exit race (#72716).
        self.container_start_seconds = container_start_seconds
        self.pods: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._pod_rt = _BY_PATH[("", "v1", "pods")]
        (work_root / "logs").mkdir(parents=True, exist_ok=True)
        (work_root / "pods").mkdir(parents=True, exist_ok=True)
        store.add_listener(self._on_change)

    # -- lifecycle ---------------------------------------------------------------------------
    def recover(self) -> None:
        """After a restart: pods that were running lost their process, like pods on a lost node."""
        for pod in self.store.list(self._pod_rt)[0]:
            if pod.get("status", {}).get("phase") in ("Pending", "Running"):
                now = rfc3339()

                def fail(p: dict[str, Any], now: str = now) -> None:
                    st = p.setdefault("status", {})
                    st["phase"] = "Failed"
                    st["reason"] = "NodeLost"
                    st["message"] = "the sandbox Kubernetes API stand-in restarted while this pod ran"
                    st["containerStatuses"] = [
                        self._terminated_status(c, 137, "Error", st.get("startTime", now), now)
                        for c in p["spec"]["containers"]
                    ]

                self.store.update_status(
                    self._pod_rt, pod["metadata"]["namespace"], pod["metadata"]["name"], fail
                )

    def _on_change(self, kind: str, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt is not self._pod_rt:
            return
        uid = obj["metadata"]["uid"]
        if kind == "ADDED":
            ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
            running = _Running(
                uid=uid,
                namespace=ns,
                name=name,
                log_path=self.work_root / "logs" / f"{uid}.log",
                workdir=self.work_root / "pods" / uid,
                stop=threading.Event(),
                finished=threading.Event(),
                started=threading.Event(),
            )
            with self._lock:
                self.pods[uid] = running
            threading.Thread(target=self._run, args=(running, obj), name=f"pod-{name}", daemon=True).start()
        elif kind == "DELETED":
            with self._lock:
                running = self.pods.get(uid)
            if running is not None:
                running.stop.set()
                grace = obj.get("spec", {}).get("terminationGracePeriodSeconds", 30)
                threading.Thread(
                    target=self._kill, args=(running, min(float(grace), 5.0), True), daemon=True
                ).start()

    def shutdown(self) -> None:
        with self._lock:
            pods = list(self.pods.values())
        for running in pods:
            running.stop.set()
            self._kill(running, 2.0, False)
        for running in pods:
            running.finished.wait(5)

    def _kill(self, running: _Running, grace: float, cleanup: bool) -> None:
        proc = running.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if cleanup:
            running.finished.wait(10)
            with self._lock:
                self.pods.pop(running.uid, None)
            shutil.rmtree(running.workdir, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                running.log_path.unlink()

    # -- status helpers ----------------------------------------------------------------------
    @staticmethod
    def _container_base(c: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "name": c["name"],
            "image": c["image"],
            "imageID": f"{_image_repository(c['image'])}@sha256:{uuid.uuid5(uuid.NAMESPACE_URL, c['image']).hex * 2}",
            "restartCount": 0,
        }

    def _terminated_status(
        self,
        c: Mapping[str, Any],
        code: int,
        reason: str,
        started: str,
        finished: str,
        message: str | None = None,
    ) -> dict[str, Any]:
        term = {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": finished}
        if message:
            term["message"] = message
        return {**self._container_base(c), "ready": False, "started": False, "state": {"terminated": term}}

    @staticmethod
    def _conditions(ready: bool, reason: str | None = None) -> list[dict[str, Any]]:
        now = rfc3339()
        conds = []
        for ctype in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"):
            ok = ready or ctype in ("Initialized", "PodScheduled", "PodReadyToStartContainers")
            cond = {
                "type": ctype,
                "status": "True" if ok else "False",
                "lastProbeTime": None,
                "lastTransitionTime": now,
            }
            if not ok and reason:
                cond["reason"] = reason
            conds.append(cond)
        return conds

    def _update(self, running: _Running, mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any] | None:
        return self.store.update_status(
            self._pod_rt, running.namespace, running.name, mutate, uid=running.uid
        )

    # -- env ---------------------------------------------------------------------------------
    def _secret_or_configmap(self, namespace: str, kind: str, name: str) -> dict[str, str] | None:
        rt = _BY_PATH[("", "v1", "secrets" if kind == "secret" else "configmaps")]
        try:
            obj = self.store.get(rt, namespace, name)
        except ApiError:
            return None
        if kind == "secret":
            return {
                k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (obj.get("data") or {}).items()
            }
        return dict(obj.get("data") or {})

    def build_env(
        self, pod: Mapping[str, Any], container: Mapping[str, Any], workdir: Path
    ) -> dict[str, str]:
        meta = pod["metadata"]
        ns = meta["namespace"]
        env = dict(self.base_env)
        env.update(
            {
                "HOME": str(workdir),
                "TMPDIR": str(workdir),
                "HOSTNAME": meta["name"],
                "PYTHONUNBUFFERED": "1",
                "KUBERNETES_SERVICE_HOST": self.server_host,
                "KUBERNETES_SERVICE_PORT": str(self.server_port_ref()),
            }
        )
        for src in container.get("envFrom") or []:
            for kind in ("secret", "configMap"):
                ref = src.get(f"{kind}Ref")
                if not ref:
                    continue
                values = self._secret_or_configmap(ns, kind.lower(), ref.get("name", ""))
                if values is None:
                    if ref.get("optional"):
                        continue
                    label = "secret" if kind == "secret" else "configmap"
                    raise _EnvError(f'{label} "{ref.get("name")}" not found')
                prefix = src.get("prefix", "")
                env.update({f"{prefix}{k}": v for k, v in values.items()})
        for item in container.get("env") or []:
            name = item["name"]
            if "value" in item or "valueFrom" not in item:
                env[name] = expand_vars(str(item.get("value", "")), env)
                continue
            source = item["valueFrom"]
            if "secretKeyRef" in source or "configMapKeyRef" in source:
                kind = "secret" if "secretKeyRef" in source else "configmap"
                ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
                values = self._secret_or_configmap(ns, kind, ref.get("name", ""))
                if values is None or ref.get("key") not in values:
                    if ref.get("optional"):
                        continue
                    if values is None:
                        raise _EnvError(f'{kind} "{ref.get("name")}" not found')
                    label = "Secret" if kind == "secret" else "ConfigMap"
                    raise _EnvError(f"couldn't find key {ref.get('key')} in {label} {ns}/{ref.get('name')}")
                env[name] = values[ref["key"]]
            elif "fieldRef" in source:
                path = source["fieldRef"].get("fieldPath", "")
                m = re.match(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
                if m:
                    env[name] = (meta.get(m.group(1)) or {}).get(m.group(2), "")
                else:
                    env[name] = {
                        "status.podIP": "127.0.0.1",
                        "status.hostIP": "127.0.0.1",
                        "spec.nodeName": NODE_NAME,
                    }.get(path) or _field_value(pod, path)
            else:
                env[name] = ""
        return env

    # -- the pod's life ----------------------------------------------------------------------
    def _run(self, running: _Running, pod: dict[str, Any]) -> None:
        try:
            self._run_inner(running, pod)
        except Exception:
            log.exception("pod %s/%s: runner failed", running.namespace, running.name)
        finally:
            running.finished.set()

    def _run_inner(self, running: _Running, pod: dict[str, Any]) -> None:
        containers = pod["spec"]["containers"]
        main = next((c for c in containers if c["name"] == "base"), containers[0])
        start_time = rfc3339()

        def schedule(p: dict[str, Any]) -> None:
            p["spec"]["nodeName"] = NODE_NAME
            st = p["status"]
            st.update(
                {
                    "phase": "Pending",
                    "hostIP": "127.0.0.1",
                    "hostIPs": [{"ip": "127.0.0.1"}],
                    "startTime": start_time,
                    "conditions": self._conditions(False, "ContainersNotReady"),
                    "containerStatuses": [
                        {
                            **self._container_base(c),
                            "ready": False,
                            "started": False,
                            "state": {"waiting": {"reason": "ContainerCreating"}},
                        }
                        for c in containers
                    ],
                }
            )

        current = self._update(running, schedule)
        if current is None:
            return
        self.store.record_event(
            current, "Scheduled", f"Successfully assigned {running.namespace}/{running.name} to {NODE_NAME}"
        )
        running.workdir.mkdir(parents=True, exist_ok=True)
        if self.container_start_seconds and running.stop.wait(self.container_start_seconds):
            return

        # Resolve env like the kubelet: retry until the secret appears or the pod is deleted.
        reported = None
        while True:
            try:
                env = self.build_env(current, main, running.workdir)
                break
            except _EnvError as exc:
                message = str(exc)
                if message != reported:
                    reported = message

                    def waiting(p: dict[str, Any], message: str = message) -> None:
                        for cs in p["status"]["containerStatuses"]:
                            cs["state"] = {
                                "waiting": {"reason": "CreateContainerConfigError", "message": message}
                            }

                    current = self._update(running, waiting) or current
                    self.store.record_event(current, "Failed", f"Error: {message}", "Warning")
                if running.stop.wait(1.0):
                    return
                refreshed = self._update(running, lambda p: None)
                if refreshed is None:
                    return
                current = refreshed

        is_toolbox = _image_repository(main["image"]) == self.toolbox_repository
        argv = [expand_vars(a, env) for a in list(main.get("command") or []) + list(main.get("args") or [])]
        if is_toolbox:
            argv = toolbox_argv(
                [expand_vars(a, env) for a in main.get("command") or []],
                [expand_vars(a, env) for a in main.get("args") or []],
            )
        self.store.record_event(
            current, "Pulled", f'Container image "{main["image"]}" already present on machine'
        )
        self.store.record_event(current, "Created", f"Created container {main['name']}")

        log_file = running.log_path.open("ab", buffering=0)
        started_at = rfc3339()
        try:
            if is_toolbox:
                code, reason, message = self._exec(running, pod, argv, env, log_file, started_at, current)
            else:
                # Shown unexpanded: $(VAR) expansion could put a secret's value in the log.
                shown = list(main.get("command") or []) + list(main.get("args") or [])
                code, reason, message = self._simulate(
                    running, pod, main, shown, log_file, started_at, current
                )
        finally:
            log_file.close()
        if code is None:
            return  # deleted while running
        finished_at = rfc3339()

        def terminate(p: dict[str, Any]) -> None:
            st = p["status"]
            st["phase"] = "Succeeded" if code == 0 else "Failed"
            if reason == "DeadlineExceeded":
                st["reason"] = "DeadlineExceeded"
                st["message"] = message
            st["conditions"] = self._conditions(False, "PodCompleted" if code == 0 else "PodFailed")
            st["containerStatuses"] = [
                self._terminated_status(
                    c,
                    code,
                    "Completed" if code == 0 else ("StartError" if reason == "StartError" else "Error"),
                    started_at,
                    finished_at,
                    message if reason == "StartError" else None,
                )
                for c in containers
            ]

        final = self._update(running, terminate)
        if final is not None and reason == "DeadlineExceeded":
            self.store.record_event(final, "DeadlineExceeded", message or "", "Warning")

    def _mark_running(
        self, running: _Running, pod: dict[str, Any], started_at: str, container_id: str
    ) -> dict[str, Any] | None:
        def run(p: dict[str, Any]) -> None:
            st = p["status"]
            st.update(
                {
                    "phase": "Running",
                    "podIP": "127.0.0.1",
                    "podIPs": [{"ip": "127.0.0.1"}],
                    "conditions": self._conditions(True),
                    "containerStatuses": [
                        {
                            **self._container_base(c),
                            "containerID": container_id,
                            "ready": True,
                            "started": True,
                            "state": {"running": {"startedAt": started_at}},
                        }
                        for c in p["spec"]["containers"]
                    ],
                }
            )

        updated = self._update(running, run)
        running.started.set()
        if updated is not None:
            self.store.record_event(
                updated, "Started", f"Started container {pod['spec']['containers'][0]['name']}"
            )
        return updated

    @staticmethod
    def _write_line(log_file: Any, text: bytes) -> None:
        log_file.write(rfc3339_nano().encode() + b" " + text.rstrip(b"\n") + b"\n")

    def _exec(
        self,
        running: _Running,
        pod: dict[str, Any],
        argv: list[str],
        env: dict[str, str],
        log_file: Any,
        started_at: str,
        current: dict[str, Any],
    ) -> tuple[int | None, str, str | None]:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=running.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            message = f'failed to create containerd task: exec: "{argv[0]}": {exc.strerror}'
            self.store.record_event(current, "Failed", f"Error: {message}", "Warning")
            return 128, "StartError", message
        running.proc = proc
        self._mark_running(running, pod, started_at, f"sandbox://{proc.pid}")

        def pump() -> None:
            assert proc.stdout is not None
            for line in iter(proc.stdout.readline, b""):
                self._write_line(log_file, line)

        reader = threading.Thread(target=pump, name=f"log-{running.name}", daemon=True)
        reader.start()
        deadline_s = pod["spec"].get("activeDeadlineSeconds")
        deadline = time.monotonic() + deadline_s if deadline_s else None
        timed_out = False
        while proc.poll() is None:
            if running.stop.is_set():
                break
            if deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                self._kill(running, 2.0, False)
                break
            time.sleep(0.1)
        if running.stop.is_set():
            self._kill(running, 2.0, False)
            reader.join(timeout=5)
            return None, "", None
        code = proc.wait()
        reader.join(timeout=10)
        if timed_out:
            return (
                137,
                "DeadlineExceeded",
                f"Pod was active on the node longer than the specified deadline ({deadline_s}s)",
            )
        return (code if code >= 0 else 128 - code), "", None

    def _simulate(
        self,
        running: _Running,
        pod: dict[str, Any],
        container: Mapping[str, Any],
        argv: list[str],
        log_file: Any,
        started_at: str,
        current: dict[str, Any],
    ) -> tuple[int | None, str, str | None]:
        self._mark_running(running, pod, started_at, f"sandbox://simulated-{running.uid[:8]}")
        shown = shlex.join(argv) if argv else "(image entrypoint)"
        self._write_line(
            log_file,
            f"SIMULATED: image {container['image']} is not run by the sandbox Kubernetes API stand-in "
            f"(only {self.toolbox_repository} is); command: {shown}".encode(),
        )
        if running.stop.wait(self.simulated_seconds):
            return None, "", None
        self._write_line(log_file, b"SIMULATED: completed with exit code 0")
        return 0, "", None


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------
def _api_resource_list(group_version: str) -> dict[str, Any]:
    resources = []
    for rt in RESOURCE_TYPES:
        if rt.api_version != group_version:
            continue
        resources.append(
            {
                "name": rt.plural,
                "singularName": rt.singular,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": list(rt.verbs),
            }
        )
        if rt.has_status:
            resources.append(
                {
                    "name": f"{rt.plural}/status",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        for sub in _SUBRESOURCES.get(rt.plural, ()):
            if sub == "log":
                resources.append(
                    {
                        "name": "pods/log",
                        "singularName": "",
                        "namespaced": True,
                        "kind": "Pod",
                        "verbs": ["get"],
                    }
                )
            if sub == "scale":
                resources.append(
                    {
                        "name": f"{rt.plural}/scale",
                        "singularName": "",
                        "namespaced": True,
                        "group": "autoscaling",
                        "version": "v1",
                        "kind": "Scale",
                        "verbs": ["get", "patch", "update"],
                    }
                )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def _api_groups() -> dict[str, Any]:
    groups: dict[str, list[str]] = {}
    for rt in RESOURCE_TYPES:
        if rt.group:
            groups.setdefault(rt.group, [])
            if rt.version not in groups[rt.group]:
                groups[rt.group].append(rt.version)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": g,
                "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
            }
            for g, vs in groups.items()
        ],
    }


def _scale_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    selector = (obj.get("spec") or {}).get("selector", {}).get("matchLabels", {})
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": obj["spec"].get("replicas", 1)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items())),
        },
    }


class K8sApiApp:
    """Routes requests onto the store and the pod runner."""

    def __init__(self, store: ClusterStore, runner: PodRunner, tokens: Iterable[str] = ()) -> None:
        self.store = store
        self.runner = runner
        self.tokens = {t for t in tokens if t}
        self.stopping = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "dr-sandbox-k8s-api"
    app: K8sApiApp  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    # -- plumbing ----------------------------------------------------------------------------
    def _send_json(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _read_body(self) -> Any:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                raw += self.rfile.read(size)
                self.rfile.readline()
        else:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not raw.strip():
            return None
        ctype = self.headers.get("Content-Type", "application/json")
        if "yaml" in ctype or "protobuf" in ctype or "cbor" in ctype:
            raise ApiError(415, "UnsupportedMediaType", f"the sandbox API accepts JSON only, not {ctype}")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise bad_request(f"the request body is not valid JSON: {exc}") from None

    def _start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _dispatch(self) -> None:
        try:
            if self.app.tokens:
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer ") or auth[7:].strip() not in self.app.tokens:
                    raise ApiError(401, "Unauthorized", "Unauthorized")
            self._route()
        except ApiError as exc:
            # The body must be consumed or the keep-alive connection desyncs.
            self._send_json(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:
            log.exception("internal error on %s %s", self.command, self.path)
            self._send_json(500, ApiError(500, "InternalError", f"Internal error occurred: {exc!r}").status())

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    # -- routing -----------------------------------------------------------------------------
    def _route(self) -> None:
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        parts = [p for p in url.path.split("/") if p]
        method = self.command
        body = self._read_body() if method in ("POST", "PUT", "PATCH", "DELETE") else None
        if method == "HEAD":
            method = "GET"

        if parts in (["healthz"], ["livez"], ["readyz"]):
            data = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if parts == ["version"]:
            return self._send_json(200, SERVER_VERSION)
        if parts == ["api"]:
            host = f"{self.server.server_address[0]}:{self.server.server_address[1]}"
            return self._send_json(
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
                },
            )
        if parts == ["apis"]:
            return self._send_json(200, _api_groups())
        if parts == ["api", "v1"]:
            return self._send_json(200, _api_resource_list("v1"))
        if len(parts) == 2 and parts[0] == "apis":
            groups = {g["name"]: g for g in _api_groups()["groups"]}
            if parts[1] in groups:
                return self._send_json(200, {"kind": "APIGroup", "apiVersion": "v1", **groups[parts[1]]})
        if len(parts) == 3 and parts[0] == "apis":
            res = _api_resource_list(f"{parts[1]}/{parts[2]}")
            if res["resources"]:
                return self._send_json(200, res)

        if len(parts) >= 3 and parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 4 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")

        namespace: str | None = None
        name: str | None = None
        sub: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and (group, version, rest[2]) in _BY_PATH:
            namespace, plural = rest[1], rest[2]
            name = rest[3] if len(rest) > 3 else None
            sub = rest[4] if len(rest) > 4 else None
            if len(rest) > 5:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
        else:
            plural = rest[0]
            name = rest[1] if len(rest) > 1 else None
            sub = rest[2] if len(rest) > 2 else None
        rt = _BY_PATH.get((group, version, plural))
        if rt is None or len(rest) > 5 or (not rt.namespaced and namespace is not None):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if rt.namespaced and namespace is None and name is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        dry_run = q.get("dryRun") == "All"
        ns = namespace or ""

        if sub is not None:
            return self._subresource(rt, ns, name or "", sub, method, body, q)
        if name is None:
            if method == "GET":
                return self._list(rt, namespace, q)
            if method == "POST":
                if rt.namespaced and namespace is None:
                    raise ApiError(
                        405, "MethodNotAllowed", f"create {rt.plural} needs a namespace in the path"
                    )
                created = self.app.store.create(rt, ns, body, dry_run=dry_run)
                return self._send_json(201, created)
            if method == "DELETE":
                if rt.namespaced and namespace is None:
                    raise ApiError(
                        405,
                        "MethodNotAllowed",
                        "the server does not allow this method on the requested resource",
                    )
                items, _ = self.app.store.list(rt, namespace, q.get("labelSelector"), q.get("fieldSelector"))
                deleted = []
                for item in items:
                    with contextlib.suppress(ApiError):
                        deleted.append(self.app.store.delete(rt, ns, item["metadata"]["name"]))
                return self._send_json(
                    200,
                    {
                        "kind": f"{rt.kind}List",
                        "apiVersion": rt.api_version,
                        "metadata": {"resourceVersion": self.app.store.resource_version},
                        "items": deleted,
                    },
                )
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        if method == "GET":
            return self._send_json(200, self.app.store.get(rt, ns, name))
        if method == "PUT":
            return self._send_json(200, self.app.store.replace(rt, ns, name, body, dry_run=dry_run))
        if method == "PATCH":
            return self._send_json(
                200,
                self.app.store.patch(
                    rt, ns, name, self.headers.get("Content-Type", ""), body, dry_run=dry_run
                ),
            )
        if method == "DELETE":
            obj = self.app.store.delete(rt, ns, name)
            if rt.plural in ("pods", "namespaces"):
                return self._send_json(200, obj)
            return self._send_json(
                200,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {
                        "name": name,
                        "group": rt.group,
                        "kind": rt.plural,
                        "uid": obj["metadata"]["uid"],
                    },
                },
            )
        raise ApiError(
            405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )

    def _list(self, rt: ResourceType, namespace: str | None, q: Mapping[str, str]) -> None:
        if q.get("watch") in ("true", "1", "True"):
            return self._watch(rt, namespace, q)
        items, rv = self.app.store.list(rt, namespace, q.get("labelSelector"), q.get("fieldSelector"))
        meta: dict[str, Any] = {"resourceVersion": rv}
        limit = int(q.get("limit") or 0)
        offset = 0
        if q.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(q["continue"].encode()))
                offset = int(token["offset"])
            except (ValueError, KeyError, binascii.Error):
                raise bad_request("invalid continue token") from None
        items = items[offset:]
        if limit and len(items) > limit:
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps({"offset": offset + limit, "rv": rv}).encode()
            ).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        for item in items:  # the real API leaves kind/apiVersion off list items
            item.pop("kind", None)
            item.pop("apiVersion", None)
        self._send_json(
            200, {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": meta, "items": items}
        )

    def _watch(self, rt: ResourceType, namespace: str | None, q: Mapping[str, str]) -> None:
        lreqs = parse_label_selector(q.get("labelSelector"))
        freqs = parse_field_selector(q.get("fieldSelector"))
        timeout = min(float(q.get("timeoutSeconds") or 300), 1800.0)
        deadline = time.monotonic() + timeout
        self._start_stream("application/json")
        store = self.app.store
        rv_text = q.get("resourceVersion") or ""
        if rv_text in ("", "0"):
            items, rv = store.list(rt, namespace, q.get("labelSelector"), q.get("fieldSelector"))
            for item in items:
                self._chunk(json.dumps({"type": "ADDED", "object": item}).encode() + b"\n")
            last = int(rv)
        else:
            last = int(rv_text) if rv_text.isdigit() else 0
        while not self.app.stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            changes, gone = store.changes_since(last, rt, namespace, min(remaining, 1.0))
            if gone:
                err = ApiError(
                    410, "Expired", f"too old resource version: {last} ({store.resource_version})"
                ).status()
                self._chunk(json.dumps({"type": "ERROR", "object": err}).encode() + b"\n")
                break
            for crv, kind, obj in changes:
                last = max(last, crv)
                if labels_match(obj["metadata"].get("labels"), lreqs) and fields_match(obj, freqs):
                    self._chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
        self._end_stream()

    def _subresource(
        self, rt: ResourceType, ns: str, name: str, sub: str, method: str, body: Any, q: Mapping[str, str]
    ) -> None:
        store = self.app.store
        if sub not in _SUBRESOURCES.get(rt.plural, ()):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if sub == "status":
            if method == "GET":
                return self._send_json(200, store.get(rt, ns, name))
            raise ApiError(405, "MethodNotAllowed", "status is written by the sandbox's controllers only")
        if sub == "scale":
            if method == "GET":
                return self._send_json(200, _scale_of(store.get(rt, ns, name)))
            if method not in ("PUT", "PATCH"):
                raise ApiError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            with store._lock:
                current = _scale_of(store.get(rt, ns, name))
                new = (
                    body
                    if method == "PUT"
                    else apply_patch(current, self.headers.get("Content-Type", ""), body)
                )
                if not isinstance(new, dict):
                    raise bad_request("the body must be a Scale object")
                replicas = (new.get("spec") or {}).get("replicas")
                _validate_replicas(_ScaleType, name, replicas)
                obj = store.get(rt, ns, name)
                obj["spec"]["replicas"] = replicas
                sent_rv = (new.get("metadata") or {}).get("resourceVersion")
                obj["metadata"]["resourceVersion"] = (
                    sent_rv if method == "PUT" and sent_rv else obj["metadata"]["resourceVersion"]
                )
                updated = store.replace(rt, ns, name, obj)
            return self._send_json(200, _scale_of(updated))
        return self._logs(ns, name, q)

    def _logs(self, ns: str, name: str, q: Mapping[str, str]) -> None:
        pod_rt = _BY_PATH[("", "v1", "pods")]
        pod = self.app.store.get(pod_rt, ns, name)
        names = [c["name"] for c in pod["spec"]["containers"]]
        container = q.get("container") or ""
        if not container:
            if len(names) != 1:
                raise bad_request(
                    f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
                )
            container = names[0]
        if container not in names:
            raise bad_request(f"container {container} is not valid for pod {name}")
        statuses = {cs["name"]: cs for cs in pod.get("status", {}).get("containerStatuses") or []}
        waiting = statuses.get(container, {}).get("state", {}).get("waiting")
        if waiting or container not in statuses:
            reason = (waiting or {}).get("reason", "ContainerCreating")
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {reason}')
        uid = pod["metadata"]["uid"]
        running = self.app.runner.pods.get(uid)
        log_path = running.log_path if running else self.app.runner.work_root / "logs" / f"{uid}.log"
        main = next((c for c in names if c == "base"), names[0])
        follow = q.get("follow") in ("true", "True", "1")
        timestamps = q.get("timestamps") in ("true", "True", "1")
        cutoff = None
        if q.get("sinceSeconds"):
            cutoff = time.time() - int(q["sinceSeconds"])
        elif q.get("sinceTime"):
            cutoff = parse_rfc3339(q["sinceTime"])
        tail = int(q["tailLines"]) if q.get("tailLines") else None
        budget = int(q["limitBytes"]) if q.get("limitBytes") else None

        def render(line: bytes) -> bytes | None:
            ts, _, msg = line.partition(b" ")
            if cutoff is not None:
                with contextlib.suppress(ValueError):
                    if parse_rfc3339(ts.decode()) < cutoff:
                        return None
            return line if timestamps else msg

        self._start_stream("text/plain")
        sent = 0

        def emit(lines: list[bytes]) -> bool:
            nonlocal sent
            out = b"".join(r for r in (render(ln) for ln in lines) if r is not None)
            if budget is not None:
                out = out[: max(budget - sent, 0)]
            self._chunk(out)
            sent += len(out)
            return budget is None or sent < budget

        if container != main or not log_path.exists():
            self._end_stream()
            return
        with log_path.open("rb") as fh:
            lines = fh.readlines()
            partial = b""
            if lines and not lines[-1].endswith(b"\n"):
                partial = lines.pop()
            if tail is not None:
                lines = lines[-tail:] if tail > 0 else []
            ok = emit(lines)
            while ok and follow and not self.app.stopping.is_set():
                done = running is None or running.finished.is_set() or running.uid not in self.app.runner.pods
                chunk = fh.read()
                if chunk:
                    data = partial + chunk
                    new_lines = data.split(b"\n")
                    partial = new_lines.pop()
                    ok = emit([ln + b"\n" for ln in new_lines])
                    continue
                if done:
                    break
                time.sleep(0.1)
        self._end_stream()


_ScaleType = ResourceType("autoscaling", "v1", "scale", "Scale")


# ---------------------------------------------------------------------------------------------
# Server handle
# ---------------------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


@dataclass
class K8sApiHandle:
    """A running stand-in: ``url`` for kubeconfigs, ``store`` for direct seeding, ``stop()``."""

    url: str
    host: str
    port: int
    state_dir: Path
    store: ClusterStore
    runner: PodRunner
    _server: _Server
    _thread: threading.Thread
    _app: K8sApiApp
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    def stop(self) -> None:
        """Stop serving, kill pod processes, write the state."""
        self._app.stopping.set()
        self._server.shutdown()
        self.runner.shutdown()
        self.store.close()
        self._server.server_close()
        self._thread.join(timeout=5)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> K8sApiHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_k8s_api(
    host: str = "127.0.0.1",
    port: int = 0,
    state_dir: str | os.PathLike[str] | None = None,
    *,
    toolbox_image: str = DEFAULT_TOOLBOX_REPOSITORY,
    pass_env: Iterable[str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    tokens: Iterable[str] = (),
    simulated_seconds: float = 0.5,
    container_start_seconds: float = 0.0,
) -> K8sApiHandle:
    """Start the stand-in on a background thread (``port=0``: a free port); state persists in ``state_dir``.

    ``toolbox_image`` is a repository (a tag is ignored): pods whose container ``base`` uses it run
    locally. ``extra_env`` is added to every pod process (after the pass-through variables).
    """
    require_loopback(host)
    tmp = None
    if state_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="dr-k8s-api-")
        state_dir = tmp.name
    root = Path(state_dir)
    store = ClusterStore(root)
    server = _Server((host, port), _Handler)
    actual_port = server.server_address[1]
    if pass_env is None:
        env_text = os.environ.get(PASS_ENV_VAR)
        pass_env = env_text.replace(",", " ").split() if env_text else DEFAULT_PASS_ENV
    runner = PodRunner(
        store,
        root,
        toolbox_repository=toolbox_image,
        pass_env=pass_env,
        extra_env=extra_env,
        server_host=host,
        server_port_ref=lambda: actual_port,
        simulated_seconds=simulated_seconds,
        container_start_seconds=container_start_seconds,
    )
    runner.recover()
    app = K8sApiApp(store, runner, tokens)
    server.RequestHandlerClass = type("Handler", (_Handler,), {"app": app})
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="k8s-api", daemon=True
    )
    thread.start()
    url = f"http://{host}:{actual_port}"
    log.info("Kubernetes API stand-in on %s (state in %s)", url, root)
    return K8sApiHandle(url, host, actual_port, root, store, runner, server, thread, app, tmp)


# ---------------------------------------------------------------------------------------------
# Seeding from the estate
# ---------------------------------------------------------------------------------------------
class _UrlTarget:
    """Seeds a running stand-in over HTTP (what a separate process would do)."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            status = json.loads(exc.read() or b"{}")
            raise ApiError(exc.code, status.get("reason", ""), status.get("message", str(exc))) from None

    def put(self, rt: ResourceType, namespace: str, body: dict[str, Any], overwrite: bool) -> bool:
        base = f"/api/{rt.version}" if not rt.group else f"/apis/{rt.api_version}"
        coll = f"{base}/namespaces/{namespace}/{rt.plural}" if rt.namespaced else f"{base}/{rt.plural}"
        try:
            self._call("POST", coll, body)
            return True
        except ApiError as exc:
            if exc.code != 409 or not overwrite:
                if exc.code == 409:
                    return False
                raise
        self._call("PUT", f"{coll}/{body['metadata']['name']}", body)
        return True


class _StoreTarget:
    def __init__(self, store: ClusterStore) -> None:
        self.store = store

    def put(self, rt: ResourceType, namespace: str, body: dict[str, Any], overwrite: bool) -> bool:
        try:
            self.store.create(rt, namespace, body)
            return True
        except ApiError as exc:
            if exc.code != 409:
                raise
            if not overwrite:
                return False
        self.store.replace(rt, namespace, body["metadata"]["name"], body)
        return True


def _app_objects(namespace: str, estate: Any) -> list[tuple[ResourceType, dict[str, Any]]]:
    """A small but realistic application: what the backup DAGs must find and restore."""
    org = estate.raw.get("organization", {})
    domain = org.get("domain", "example.com")
    short = namespace.split("-", 1)[1] if "-" in namespace else namespace
    app = "api" if short in ("production", "prod") else short.rstrip("s") or "app"
    part_of = org.get("tag_prefix", "app")
    labels = {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": part_of, "app": app}
    image = f"ghcr.io/{part_of}/{app}:1.42.0"
    host = (
        estate.route53.get("record_name", f"api.{domain}") if app == "api" else f"{short}.internal.{domain}"
    )
    template = {
        "metadata": {"labels": dict(labels)},
        "spec": {
            "containers": [
                {
                    "name": app,
                    "image": image,
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "envFrom": [
                        {"configMapRef": {"name": f"{app}-config"}},
                        {"secretRef": {"name": f"{app}-secrets"}},
                    ],
                    "resources": {
                        "requests": {"cpu": "250m", "memory": "256Mi"},
                        "limits": {"memory": "512Mi"},
                    },
                    "volumeMounts": [{"name": "uploads", "mountPath": "/var/lib/uploads"}],
                }
            ],
            "volumes": [{"name": "uploads", "persistentVolumeClaim": {"claimName": f"{app}-uploads"}}],
        },
    }
    cache_labels = {
        "app.kubernetes.io/name": f"{app}-cache",
        "app.kubernetes.io/part-of": part_of,
        "app": f"{app}-cache",
    }
    r = _BY_PATH
    return [
        (
            r[("", "v1", "configmaps")],
            {
                "metadata": {"name": f"{app}-config", "labels": labels},
                "data": {"LOG_LEVEL": "info", "FEATURE_FLAGS": "billing-v2,sso", "REGION_ROLE": "primary"},
            },
        ),
        (
            r[("", "v1", "secrets")],
            {
                "metadata": {"name": f"{app}-secrets", "labels": labels},
                "type": "Opaque",
                "stringData": {
                    "DATABASE_PASSWORD": pysecrets.token_urlsafe(24),
                    "JWT_SIGNING_KEY": pysecrets.token_urlsafe(32),
                    "STRIPE_API_KEY": "sk_test_" + pysecrets.token_hex(12),
                },
            },
        ),
        (
            r[("", "v1", "persistentvolumeclaims")],
            {
                "metadata": {"name": f"{app}-uploads", "labels": labels},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "gp3",
                    "resources": {"requests": {"storage": "20Gi"}},
                },
            },
        ),
        (
            r[("apps", "v1", "deployments")],
            {
                "metadata": {"name": app, "labels": labels},
                "spec": {"replicas": 3, "selector": {"matchLabels": {"app": app}}, "template": template},
            },
        ),
        (
            r[("apps", "v1", "statefulsets")],
            {
                "metadata": {"name": f"{app}-cache", "labels": cache_labels},
                "spec": {
                    "replicas": 1,
                    "serviceName": f"{app}-cache",
                    "selector": {"matchLabels": {"app": f"{app}-cache"}},
                    "template": {
                        "metadata": {"labels": dict(cache_labels)},
                        "spec": {
                            "containers": [
                                {"name": "redis", "image": "redis:7.2", "ports": [{"containerPort": 6379}]}
                            ]
                        },
                    },
                    "volumeClaimTemplates": [
                        {
                            "metadata": {"name": "data"},
                            "spec": {
                                "accessModes": ["ReadWriteOnce"],
                                "resources": {"requests": {"storage": "5Gi"}},
                            },
                        }
                    ],
                },
            },
        ),
        (
            r[("", "v1", "services")],
            {
                "metadata": {"name": app, "labels": labels},
                "spec": {
                    "selector": {"app": app},
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
                },
            },
        ),
        (
            r[("networking.k8s.io", "v1", "ingresses")],
            {
                "metadata": {
                    "name": app,
                    "labels": labels,
                    "annotations": {"alb.ingress.kubernetes.io/scheme": "internet-facing"},
                },
                "spec": {
                    "ingressClassName": "alb",
                    "rules": [
                        {
                            "host": host,
                            "http": {
                                "paths": [
                                    {
                                        "path": "/",
                                        "pathType": "Prefix",
                                        "backend": {"service": {"name": app, "port": {"number": 80}}},
                                    }
                                ]
                            },
                        }
                    ],
                },
            },
        ),
        (
            r[("autoscaling", "v2", "horizontalpodautoscalers")],
            {
                "metadata": {"name": app, "labels": labels},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app},
                    "minReplicas": 2,
                    "maxReplicas": 10,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {"type": "Utilization", "averageUtilization": 70},
                            },
                        }
                    ],
                },
            },
        ),
        (
            r[("networking.k8s.io", "v1", "networkpolicies")],
            {
                "metadata": {"name": f"{app}-allow-ingress", "labels": labels},
                "spec": {
                    "podSelector": {"matchLabels": {"app": app}},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"ports": [{"port": 8080, "protocol": "TCP"}]}],
                },
            },
        ),
    ]


def seed_cluster(
    api_url_or_store: str | ClusterStore | K8sApiHandle,
    estate: Any,
    secrets: Mapping[str, Mapping[str, str]] | None = None,
    *,
    token: str | None = None,
) -> dict[str, list[str]]:
    """Create the estate's namespaces, a small app in each, and the toolbox pods' Secrets.

    Idempotent: existing app objects are left alone (their random secret values too); the Secrets
    passed in ``secrets`` (name -> key -> value, for ``kubernetes.pod_namespace``) are overwritten
    so the caller's current values win. Returns namespace -> "kind/name" created or updated.
    """
    if isinstance(api_url_or_store, str):
        target: _UrlTarget | _StoreTarget = _UrlTarget(api_url_or_store, token)
    elif isinstance(api_url_or_store, K8sApiHandle):
        target = _StoreTarget(api_url_or_store.store)
    else:
        target = _StoreTarget(api_url_or_store)
    k8s = estate.kubernetes
    pod_ns = k8s["pod_namespace"]
    app_namespaces = list(dict.fromkeys(k8s["namespaces"]))
    ns_rt = _BY_PATH[("", "v1", "namespaces")]
    done: dict[str, list[str]] = {}
    for ns in dict.fromkeys([*app_namespaces, pod_ns]):
        target.put(
            ns_rt,
            "",
            {
                "metadata": {
                    "name": ns,
                    "labels": {
                        "app.kubernetes.io/part-of": estate.raw.get("organization", {}).get(
                            "tag_prefix", "app"
                        )
                    },
                }
            },
            False,
        )
        done[ns] = []
    for ns in app_namespaces:
        for rt, body in _app_objects(ns, estate):
            if target.put(rt, ns, body, False):
                done[ns].append(f"{rt.kind}/{body['metadata']['name']}")
    sa = k8s.get("service_account")
    if sa and target.put(_BY_PATH[("", "v1", "serviceaccounts")], pod_ns, {"metadata": {"name": sa}}, False):
        done[pod_ns].append(f"ServiceAccount/{sa}")
    for name, values in (secrets or {}).items():
        if not isinstance(values, Mapping) or not all(isinstance(v, str) for v in values.values()):
            raise ValueError(f"secrets[{name!r}]: must map each key to a string value")
        body = {
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "dr-sandbox"}},
            "type": "Opaque",
            "stringData": dict(values),
        }
        target.put(_BY_PATH[("", "v1", "secrets")], pod_ns, body, True)
        done[pod_ns].append(f"Secret/{name}")
    return done


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def _estate_toolbox_repository() -> str:
    try:
        from dr_automation.estate import load_estate

        return _image_repository(load_estate().kubernetes["toolbox_image"])
    except Exception:  # the stand-in still runs with the default when the estate is unreadable
        return DEFAULT_TOOLBOX_REPOSITORY


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dr_sandbox.k8s_api", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=6443)
    parser.add_argument("--state-dir", required=True, help="where objects, pod logs and pod work dirs live")
    parser.add_argument(
        "--toolbox-image", default=None, help="repository whose pods run locally (default: the estate's)"
    )
    parser.add_argument(
        "--seed-from-estate", action="store_true", help="create the estate's namespaces and apps"
    )
    parser.add_argument(
        "--seed-secrets-file", default=None, help="JSON {secret: {key: value}} for the pod namespace"
    )
    parser.add_argument(
        "--pass-env",
        default=None,
        help=f"space/comma list of variables for pods (default {' '.join(DEFAULT_PASS_ENV)})",
    )
    parser.add_argument(
        "--token", action="append", default=[], help="accept only this bearer token (repeatable)"
    )
    parser.add_argument("--simulated-seconds", type=float, default=0.5)
    parser.add_argument(
        "--container-start-seconds",
        type=float,
        default=0.0,
        help="time a pod spends scheduled but not yet started (image pull, container creation)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        require_loopback(args.host)
    except ValueError as exc:
        parser.error(str(exc))
    handle = start_k8s_api(
        args.host,
        args.port,
        args.state_dir,
        toolbox_image=args.toolbox_image or _estate_toolbox_repository(),
        pass_env=args.pass_env.replace(",", " ").split() if args.pass_env else None,
        tokens=args.token,
        simulated_seconds=args.simulated_seconds,
        container_start_seconds=args.container_start_seconds,
    )
    if args.seed_from_estate:
        from dr_automation.estate import load_estate

        seed_secrets: dict[str, dict[str, str]] = {}
        if args.seed_secrets_file:
            seed_secrets = json.loads(Path(args.seed_secrets_file).read_text())
        summary = seed_cluster(handle.store, load_estate(), seed_secrets)
        log.info("seeded: %s", {ns: len(objs) for ns, objs in summary.items()})
    return serve_until_signalled(handle.stop, f"k8s-api listening on {handle.url}")


if __name__ == "__main__":
    sys.exit(main())
