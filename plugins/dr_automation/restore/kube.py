"""The Kubernetes API calls of a restore, through the estate's Kubernetes connection.

- ``scale_deployments``: every Deployment of the given namespaces to a replica count (the scale
  subresource, as ``kubectl scale`` does), returning what each had before. A HorizontalPodAutoscaler
  leaves a target scaled to zero alone (autoscaling is off at zero replicas), so stopped stays stopped;
- ``apply_objects``: create each exported object, or replace it (with the live resourceVersion) when
  it exists: the export is what ``kubectl apply`` would be given.

In the sandbox the connection points at the Kubernetes API stand-in (real API shapes, no controllers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dr_automation.estate import Estate

JSON = {"Content-Type": "application/json", "Accept": "application/json"}


class KubeError(RuntimeError):
    """A Kubernetes API call failed: names the object and the API's reason."""


def api_client(estate: Estate) -> Any:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    return KubernetesHook(conn_id=estate.connections["kubernetes"]).api_client


def call(client: Any, method: str, path: str, body: Any = None, *, content_type: str | None = None) -> Any:
    """One REST call; the deserialized JSON answer. 404 -> None for GET."""
    from kubernetes.client.exceptions import ApiException

    try:
        return client.call_api(
            path,
            method,
            header_params={**JSON, **({"Content-Type": content_type} if content_type else {})},
            body=body,
            response_types_map={200: "object", 201: "object", 202: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _request_timeout=30,
        )
    except ApiException as exc:
        if exc.status == 404 and method == "GET":
            return None
        raise KubeError(f"{method} {path}: {exc.status} {exc.reason}: {(exc.body or '')[:300]}") from None


def collection(api_version: str, plural: str, namespace: str) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    return f"{base}/namespaces/{namespace}/{plural}"


def deployments(client: Any, namespaces: Iterable[str]) -> dict[str, int]:
    """ "namespace/name" -> spec.replicas of every Deployment in the namespaces."""
    out: dict[str, int] = {}
    for ns in namespaces:
        listed = call(client, "GET", collection("apps/v1", "deployments", ns)) or {}
        for item in listed.get("items") or []:
            out[f"{ns}/{item['metadata']['name']}"] = int((item.get("spec") or {}).get("replicas", 1))
    return out


def set_replicas(client: Any, ref: str, replicas: int) -> None:
    ns, name = ref.split("/", 1)
    path = collection("apps/v1", "deployments", ns) + f"/{name}/scale"
    call(
        client,
        "PATCH",
        path,
        {"spec": {"replicas": int(replicas)}},
        content_type="application/merge-patch+json",
    )


def scale_deployments(client: Any, targets: Mapping[str, int]) -> dict[str, int]:
    """Scale each "ns/name" to its count; returns the replicas each had before."""
    before = {}
    for ref, replicas in targets.items():
        ns, name = ref.split("/", 1)
        current = call(client, "GET", collection("apps/v1", "deployments", ns) + f"/{name}")
        if current is None:
            continue
        before[ref] = int(current["spec"].get("replicas", 1))
        if before[ref] != int(replicas):
            set_replicas(client, ref, replicas)
    return before


def ready(client: Any, refs: Iterable[str]) -> dict[str, dict[str, int]]:
    """Desired and ready replicas of each Deployment."""
    out = {}
    for ref in refs:
        ns, name = ref.split("/", 1)
        obj = call(client, "GET", collection("apps/v1", "deployments", ns) + f"/{name}") or {}
        out[ref] = {
            "desired": int((obj.get("spec") or {}).get("replicas", 0)),
            "ready": int((obj.get("status") or {}).get("readyReplicas", 0)),
        }
    return out


def apply_objects(
    estate: Estate,
    client: Any,
    items: Iterable[Mapping[str, Any]],
    *,
    hold_replicas: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Create or replace every object; a Deployment in `hold_replicas` keeps that replica count
    (services stay stopped until restart_services). Returns what was created and replaced."""
    plurals = {(k["api_version"], k["kind"]): k["plural"] for k in estate.kubernetes["resource_kinds"]}
    created, replaced = [], []
    for item in items:
        obj = {k: v for k, v in item.items() if k != "status"}
        meta = dict(obj.get("metadata") or {})
        ns, name = meta.get("namespace"), meta.get("name")
        plural = plurals.get((obj.get("apiVersion"), obj.get("kind")))
        if not ns or not name or not plural:
            raise KubeError(f"{obj.get('kind')} {ns}/{name}: not a namespaced object of a configured kind")
        for field in (
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "generation",
            "managedFields",
            "selfLink",
        ):
            meta.pop(field, None)
        obj["metadata"] = meta
        ref = f"{ns}/{name}"
        if obj["kind"] == "Deployment" and hold_replicas and ref in hold_replicas:
            obj["spec"] = {**obj.get("spec", {}), "replicas": int(hold_replicas[ref])}
        path = collection(obj["apiVersion"], plural, ns)
        live = call(client, "GET", f"{path}/{name}")
        label = f"{obj['kind']}/{ref}"
        if live is None:
            call(client, "POST", path, obj)
            created.append(label)
        else:
            obj["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
            call(client, "PUT", f"{path}/{name}", obj)
            replaced.append(label)
    return {"created": created, "replaced": replaced}
