"""export-k8s-objects: a gzip-compressed JSON snapshot of namespaced resources, ready to re-apply.

Plain urllib against the REST API (no kubernetes client in the image). Runtime fields are stripped so
the export can be applied to another cluster. Secrets are exported with their data, which is why an
export that contains them may only go to S3 under KMS encryption.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import logging
import os
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

from dr_toolbox.errors import ToolboxError, UsageError
from dr_toolbox.redact import register_secret
from dr_toolbox.storage import describe_encryption, encryption_args, parse_location, upload_bytes

log = logging.getLogger("dr_toolbox")

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
EXPORT_FORMAT = "dr-toolbox/k8s-export/v1"

# plural -> (apiVersion, Kind)
KINDS: dict[str, tuple[str, str]] = {
    "configmaps": ("v1", "ConfigMap"),
    "secrets": ("v1", "Secret"),
    "services": ("v1", "Service"),
    "serviceaccounts": ("v1", "ServiceAccount"),
    "persistentvolumeclaims": ("v1", "PersistentVolumeClaim"),
    "limitranges": ("v1", "LimitRange"),
    "resourcequotas": ("v1", "ResourceQuota"),
    "deployments": ("apps/v1", "Deployment"),
    "statefulsets": ("apps/v1", "StatefulSet"),
    "daemonsets": ("apps/v1", "DaemonSet"),
    "cronjobs": ("batch/v1", "CronJob"),
    "jobs": ("batch/v1", "Job"),
    "ingresses": ("networking.k8s.io/v1", "Ingress"),
    "networkpolicies": ("networking.k8s.io/v1", "NetworkPolicy"),
    "horizontalpodautoscalers": ("autoscaling/v2", "HorizontalPodAutoscaler"),
    "poddisruptionbudgets": ("policy/v1", "PodDisruptionBudget"),
    "roles": ("rbac.authorization.k8s.io/v1", "Role"),
    "rolebindings": ("rbac.authorization.k8s.io/v1", "RoleBinding"),
}
_BY_KIND = {kind.lower(): plural for plural, (_, kind) in KINDS.items()}
_NS_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

_STRIP_METADATA = ("uid", "resourceVersion", "managedFields", "creationTimestamp", "generation", "selfLink")
_STRIP_ANNOTATION_PREFIXES = (
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    "pv.kubernetes.io/",
    "volume.kubernetes.io/",
    "volume.beta.kubernetes.io/",
)


def api_path(plural: str, namespace: str) -> str:
    """REST path of a namespaced collection: core group under /api/v1, named groups under /apis/<g>/<v>."""
    api_version, _ = KINDS[plural]
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{base}/namespaces/{urllib.parse.quote(namespace)}/{plural}"


def parse_kinds(value: str) -> list[str]:
    out: list[str] = []
    for raw in (v.strip() for v in value.split(",")):
        if not raw:
            continue
        key = raw.lower()
        plural = key if key in KINDS else _BY_KIND.get(key)
        if plural is None:
            raise UsageError("--kinds", f"unknown kind {raw!r}; known: {', '.join(sorted(KINDS))}")
        if plural not in out:
            out.append(plural)
    if not out:
        raise UsageError("--kinds", "must list at least one kind")
    return out


def parse_namespaces(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise UsageError("--namespaces", "must list at least one namespace")
    for name in names:
        if not _NS_RE.match(name):
            raise UsageError("--namespaces", f"{name!r} is not a valid namespace name")
    return list(dict.fromkeys(names))


def clean_object(obj: dict[str, Any], plural: str) -> dict[str, Any]:
    """Drop what the cluster assigns at runtime, so the object re-applies cleanly elsewhere."""
    api_version, kind = KINDS[plural]
    obj = copy.deepcopy(obj)
    obj["apiVersion"] = api_version
    obj["kind"] = kind
    obj.pop("status", None)
    meta = obj.setdefault("metadata", {})
    for field in _STRIP_METADATA:
        meta.pop(field, None)
    annotations = meta.get("annotations") or {}
    for key in list(annotations):
        if key.startswith(_STRIP_ANNOTATION_PREFIXES):
            annotations.pop(key)
    if "annotations" in meta and not annotations:
        meta.pop("annotations")
    spec = obj.get("spec") or {}
    if plural == "services":
        # Cluster IPs are allocated per cluster; headless ("None") is configuration and stays.
        if spec.get("clusterIP") not in (None, "None"):
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        for port in spec.get("ports") or []:
            if spec.get("type") not in ("NodePort", "LoadBalancer"):
                port.pop("nodePort", None)
    if plural == "persistentvolumeclaims":
        spec.pop("volumeName", None)
    return obj


def skip_reason(obj: dict[str, Any], plural: str) -> str | None:
    """Objects the cluster creates by itself: re-applying them would conflict or leak stale tokens."""
    meta = obj.get("metadata") or {}
    if plural == "secrets" and obj.get("type") == "kubernetes.io/service-account-token":
        return "service-account token (cluster-generated)"
    if plural == "configmaps" and meta.get("name") == "kube-root-ca.crt":
        return "kube-root-ca.crt (cluster-generated)"
    if plural == "serviceaccounts" and meta.get("name") == "default":
        return "default service account (cluster-generated)"
    return None


class KubeApi:
    """Minimal authenticated GET client with pagination."""

    def __init__(self, base_url: str, token: str | None, ca_file: str | None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=ca_file) if base_url.startswith("https") else None

    def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        url = self.base_url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        req = urllib.request.Request(url, headers={"Accept": "application/json"})
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.context) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = ""
            try:
                detail = json.loads(exc.read()).get("message", "")
            except Exception:
                pass
            raise ToolboxError(f"GET {path}: HTTP {exc.code} {detail}".strip()) from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ToolboxError(
                f"GET {path}: cannot reach the Kubernetes API at {self.base_url}: {exc}"
            ) from exc
        except json.JSONDecodeError as exc:
            raise ToolboxError(f"GET {path}: response is not JSON") from exc

    def list_all(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params = {"limit": "500"}
        for _ in range(10_000):  # bounded: a broken server repeating a continue token cannot loop forever
            page = self.get(path, params)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            params = {"limit": "500", "continue": token}
        raise ToolboxError(f"GET {path}: pagination did not terminate")


def _client(args: argparse.Namespace) -> KubeApi:
    if args.in_cluster:
        host, port = (
            os.environ.get("KUBERNETES_SERVICE_HOST"),
            os.environ.get("KUBERNETES_SERVICE_PORT", "443"),
        )
        if not host:
            raise ToolboxError("--in-cluster: KUBERNETES_SERVICE_HOST is not set (not running in a pod?)")
        token_path = os.path.join(SA_DIR, "token")
        try:
            with open(token_path, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise ToolboxError(
                f"--in-cluster: cannot read the service-account token at {token_path}: {exc}"
            ) from exc
        register_secret(token)
        if ":" in host:
            host = f"[{host}]"
        return KubeApi(f"https://{host}:{port}", token, os.path.join(SA_DIR, "ca.crt"))
    token = None
    if args.token_env:
        token = os.environ.get(args.token_env)
        if not token:
            raise UsageError("--token-env", f"environment variable {args.token_env} is not set or empty")
        register_secret(token)
    return KubeApi(args.api_url, token, args.ca_file)


def export_k8s_objects(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    namespaces = parse_namespaces(args.namespaces)
    kinds = parse_kinds(args.kinds)
    out = parse_location(args.out, "--out")
    if args.api_url and not re.match(r"^https?://[^/\s]+", args.api_url):
        raise UsageError("--api-url", f"{args.api_url!r} is not an http(s) URL")
    has_secrets = "secrets" in kinds
    if has_secrets and not out.is_s3:
        raise UsageError(
            "--out",
            "exports containing Secrets may only be written to s3:// with KMS encryption, not to a local path",
        )
    enc = encryption_args(args.kms_key_id, require_kms=has_secrets)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    api = _client(args)

    items: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    per_namespace: dict[str, dict[str, int]] = {ns: {} for ns in namespaces}
    skipped: list[dict[str, str]] = []
    for plural in kinds:
        kind = KINDS[plural][1]
        counts.setdefault(kind, 0)
        for ns in namespaces:
            raw_items = api.list_all(api_path(plural, ns))
            kept = 0
            for obj in raw_items:
                reason = skip_reason(obj, plural)
                if reason:
                    skipped.append(
                        {
                            "kind": kind,
                            "namespace": ns,
                            "name": obj.get("metadata", {}).get("name", ""),
                            "reason": reason,
                        }
                    )
                    continue
                items.append(clean_object(obj, plural))
                kept += 1
            counts[kind] += kept
            per_namespace[ns][kind] = kept
            log.info("exported %d %s from namespace %s", kept, plural, ns)

    doc = {
        "format": EXPORT_FORMAT,
        "exported_at": started_at,
        "source": urllib.parse.urlsplit(api.base_url).netloc,
        "namespaces": namespaces,
        "kinds": [KINDS[p][1] for p in kinds],
        "counts": counts,
        "items": items,
    }
    payload = gzip.compress(json.dumps(doc, sort_keys=True).encode(), mtime=0)
    sha = upload_bytes(
        payload,
        out,
        encryption=enc,
        storage_class=getattr(args, "storage_class", None),
        metadata={"objects": str(len(items)), "contains-secrets": str(has_secrets).lower()},
        content_type="application/gzip",
    )
    log.info("wrote %d objects (%d bytes) to %s", len(items), len(payload), out)
    return {
        "location": out.raw,
        "counts": counts,
        "per_namespace": per_namespace,
        "objects": len(items),
        "skipped": skipped,
        "contains_secrets": has_secrets,
        "sha256": sha,
        "size_bytes": len(payload),
        "encryption": describe_encryption(enc, out),
        "started_at": started_at,
        "duration_seconds": round(time.monotonic() - t0, 3),
    }, 0
