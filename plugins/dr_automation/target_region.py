"""Make the target region ready to serve, and put it back: capacity, the write gate, sessions.

A warm-standby region runs small, refuses writes at its load balancer (its database is a replica)
and has no user sessions. A failover changes those three things after DNS moves; each change
returns what it replaced so the run can put it back exactly if a later step fails.

- Capacity: the region's API Auto Scaling group is raised to its serving size. Never lowered: a
  region already bigger than its serving size keeps its size.
- Write gate: a listener rule on the region's load balancer, tagged ``<tag_prefix>:dr-role =
  write-gate``, either answers writes with 503 (closed, standby) or forwards them (open, serving).
  The serving region's gate opens; the region losing traffic closes (best effort: its API may be
  down with it), so two regions never take writes at once.
- Sessions: session keys are copied from the old region's Redis to the target's with their TTL
  (DUMP/RESTORE, so values are copied byte for byte and never decoded or logged). A source that
  cannot be reached is not a failure: users sign in again, which is better than no failover.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from dr_automation.estate import Estate

WRITE_GATE_ROLE = "write-gate"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
STANDBY_BODY = '{"error": "this region is on standby: writes go to the serving region"}'
SESSION_TIMEOUT_S = 3.0


class TargetRegionError(RuntimeError):
    """A step that readies the target region failed; names the region and the resource."""


def _elbv2(estate: Estate, region: str) -> Any:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=estate.connections["aws"], client_type="elbv2", region_name=region).conn


def _autoscaling(estate: Estate, region: str) -> Any:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    hook = AwsBaseHook(aws_conn_id=estate.connections["aws"], client_type="autoscaling", region_name=region)
    return hook.conn


def write_gate_tag(estate: Estate) -> dict[str, str]:
    return {"Key": f"{estate.raw['organization']['tag_prefix']}:dr-role", "Value": WRITE_GATE_ROLE}


def write_gate_actions(closed: bool, target_group_arn: str) -> list[dict[str, Any]]:
    """The gate's actions: closed answers writes 503, open forwards them like every other request."""
    if closed:
        return [
            {
                "Type": "fixed-response",
                "FixedResponseConfig": {
                    "StatusCode": "503",
                    "ContentType": "application/json",
                    "MessageBody": STANDBY_BODY,
                },
            }
        ]
    return [{"Type": "forward", "TargetGroupArn": target_group_arn}]


def write_gate_conditions() -> list[dict[str, Any]]:
    return [{"Field": "http-request-method", "HttpRequestMethodConfig": {"Values": list(WRITE_METHODS)}}]


def _is_closed(actions: list[Mapping[str, Any]]) -> bool:
    return any(a.get("Type") == "fixed-response" for a in actions)


def find_write_gate(estate: Estate, region: str, client: Any | None = None) -> dict[str, Any]:
    """The gate rule of a region's listener, with the target group its default action forwards to."""
    from botocore.exceptions import ClientError

    elbv2 = client or _elbv2(estate, region)
    lb_spec = estate.regions[region].load_balancer
    try:
        lbs = elbv2.describe_load_balancers(Names=[lb_spec["name"]])["LoadBalancers"]
    except ClientError as exc:
        raise TargetRegionError(
            f"regions.{region}.load_balancer.name: {lb_spec['name']!r} not found ({exc})"
        ) from None
    listeners = elbv2.describe_listeners(LoadBalancerArn=lbs[0]["LoadBalancerArn"])["Listeners"]
    listener = next((x for x in listeners if x["Port"] == lb_spec["listener_port"]), None)
    if listener is None:
        raise TargetRegionError(
            f"regions.{region}.load_balancer.listener_port: {lb_spec['name']} has no listener on "
            f"port {lb_spec['listener_port']}"
        )
    rules = elbv2.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
    default = next(r for r in rules if r.get("IsDefault"))
    target_group = next((a["TargetGroupArn"] for a in default["Actions"] if a.get("Type") == "forward"), None)
    tagged = [r for r in rules if not r.get("IsDefault")]
    tag = write_gate_tag(estate)
    gate = None
    if tagged:
        descriptions = elbv2.describe_tags(ResourceArns=[r["RuleArn"] for r in tagged])["TagDescriptions"]
        arns = {d["ResourceArn"] for d in descriptions if tag in d.get("Tags", [])}
        gate = next((r for r in tagged if r["RuleArn"] in arns), None)
    if gate is None or target_group is None:
        raise TargetRegionError(
            f"regions.{region}.load_balancer: listener {lb_spec['listener_port']} of {lb_spec['name']} "
            f"has no write-gate rule tagged {tag['Key']}={tag['Value']} forwarding to a target group"
        )
    return {
        "region": region,
        "load_balancer": lb_spec["name"],
        "listener_arn": listener["ListenerArn"],
        "rule_arn": gate["RuleArn"],
        "actions": gate["Actions"],
        "closed": _is_closed(gate["Actions"]),
        "target_group_arn": target_group,
    }


def set_write_gate(estate: Estate, region: str, *, closed: bool, dry_run: bool = False) -> dict[str, Any]:
    """Open or close a region's write gate (idempotent); returns what it replaced (or would)."""
    started = time.monotonic()
    elbv2 = _elbv2(estate, region)
    gate = find_write_gate(estate, region, elbv2)
    changed = gate["closed"] != closed
    if changed and not dry_run:
        elbv2.modify_rule(
            RuleArn=gate["rule_arn"], Actions=write_gate_actions(closed, gate["target_group_arn"])
        )
    return {
        "region": region,
        "load_balancer": gate["load_balancer"],
        "rule_arn": gate["rule_arn"],
        "previous_actions": gate["actions"],
        "closed": closed,
        "changed": changed and not dry_run,
        "planned": changed,
        "seconds": round(time.monotonic() - started, 3),
    }


def restore_write_gate(estate: Estate, captured: Mapping[str, Any]) -> bool:
    """Put a gate's captured actions back; False when there was nothing to undo."""
    if not captured or not captured.get("changed"):
        return False
    _elbv2(estate, captured["region"]).modify_rule(
        RuleArn=captured["rule_arn"], Actions=list(captured["previous_actions"])
    )
    return True


def scale_for_serving(estate: Estate, region: str, *, dry_run: bool = False) -> dict[str, Any]:
    """Raise the region's API Auto Scaling group to its serving size (never lower it)."""
    started = time.monotonic()
    spec = estate.regions[region].capacity
    name = spec["auto_scaling_group"]
    asg = _autoscaling(estate, region)
    groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    if not groups:
        raise TargetRegionError(f"regions.{region}.capacity.auto_scaling_group: {name!r} not found")
    group = groups[0]
    previous = {k: group[k] for k in ("MinSize", "MaxSize", "DesiredCapacity")}
    wanted = {
        "MinSize": max(previous["MinSize"], spec["serving_min"]),
        "DesiredCapacity": max(previous["DesiredCapacity"], spec["serving_desired"]),
    }
    wanted["MaxSize"] = max(previous["MaxSize"], wanted["DesiredCapacity"])
    changed = wanted != previous
    if changed and not dry_run:
        asg.update_auto_scaling_group(AutoScalingGroupName=name, **wanted)
    return {
        "region": region,
        "auto_scaling_group": name,
        "previous": previous,
        "now": previous if dry_run else wanted,
        "wanted": wanted,
        "changed": changed and not dry_run,
        "planned": changed,
        "seconds": round(time.monotonic() - started, 3),
    }


def restore_capacity(estate: Estate, captured: Mapping[str, Any]) -> bool:
    """Put an Auto Scaling group back to its captured size; False when nothing had changed."""
    if not captured or not captured.get("changed"):
        return False
    _autoscaling(estate, captured["region"]).update_auto_scaling_group(
        AutoScalingGroupName=captured["auto_scaling_group"], **captured["previous"]
    )
    return True


def session_prefix(estate: Estate, region: str) -> str:
    return estate.raw["sessions"]["key_prefix"].replace("{region}", region)


def session_store(estate: Estate, region: str) -> Any:
    """The region's Redis client (through its Airflow connection), with short timeouts."""
    from airflow.providers.redis.hooks.redis import RedisHook

    client = RedisHook(redis_conn_id=estate.regions[region].sessions_connection).get_conn()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    kwargs = client.connection_pool.connection_kwargs
    kwargs["socket_timeout"] = kwargs["socket_connect_timeout"] = SESSION_TIMEOUT_S
    kwargs["retry"] = Retry(NoBackoff(), 0)  # fail fast: the task's own retry decides, not a hidden loop
    return client


def migrate_sessions(estate: Estate, source: str, target: str) -> dict[str, Any]:
    """Copy every session key from source to target with its remaining TTL; idempotent (REPLACE)."""
    import redis

    started = time.monotonic()
    batch = int(estate.raw["sessions"]["batch_size"])
    result: dict[str, Any] = {"source": source, "target": target, "migrated": 0, "expired": 0}
    if source == target:
        return {**result, "status": "same_region", "seconds": 0.0}
    try:
        src = session_store(estate, source)
        src.ping()
    except redis.RedisError as exc:
        # The usual case in a regional outage: the old region's store is gone with it.
        return {
            **result,
            "status": "source_unreachable",
            "detail": type(exc).__name__,
            "seconds": round(time.monotonic() - started, 3),
        }
    dst = session_store(estate, target)
    src_prefix, dst_prefix = session_prefix(estate, source), session_prefix(estate, target)
    try:
        for keys in _scan_batches(src, f"{src_prefix}*", batch):
            read = src.pipeline(transaction=False)
            for key in keys:
                read.dump(key)
                read.pttl(key)
            answers = read.execute()
            write = dst.pipeline(transaction=False)
            for i, key in enumerate(keys):
                payload, ttl = answers[2 * i], answers[2 * i + 1]
                if payload is None or ttl == -2:  # expired between SCAN and DUMP
                    result["expired"] += 1
                    continue
                new_key = dst_prefix.encode() + bytes(key)[len(src_prefix.encode()) :]
                write.restore(new_key, max(ttl, 0), payload, replace=True)
                result["migrated"] += 1
            write.execute()
    except redis.RedisError as exc:
        raise TargetRegionError(
            f"sessions: copying to {target} ({estate.regions[target].sessions_connection}) failed after "
            f"{result['migrated']} keys: {type(exc).__name__}: {exc}"
        ) from None
    return {**result, "status": "migrated", "seconds": round(time.monotonic() - started, 3)}


def _scan_batches(client: Any, pattern: str, batch: int) -> Any:
    keys: list[Any] = []
    for key in client.scan_iter(match=pattern, count=batch):
        keys.append(key)
        if len(keys) >= batch:
            yield keys
            keys = []
    if keys:
        yield keys


def count_sessions(estate: Estate, region: str) -> int:
    client = session_store(estate, region)
    return sum(1 for _ in client.scan_iter(match=f"{session_prefix(estate, region)}*", count=500))


# -- the failover's steps: (estate, target, region serving before, dry_run) -> JSON-safe facts ---


def scale_step(estate: Estate, target: str, _old: str | None, dry_run: bool) -> dict[str, Any]:
    return scale_for_serving(estate, target, dry_run=dry_run)


def sessions_step(estate: Estate, target: str, old: str | None, dry_run: bool) -> dict[str, Any]:
    if dry_run or not old:
        return {"planned": f"copy sessions {old} -> {target}", "dry_run": dry_run}
    result = migrate_sessions(estate, old, target)
    return {**result, "target_sessions": count_sessions(estate, target)}


def gates_step(estate: Estate, target: str, old: str | None, dry_run: bool) -> dict[str, Any]:
    """Open the target's writes first; closing the old region's is best effort (it may be down)."""
    opened = set_write_gate(estate, target, closed=False, dry_run=dry_run)
    closed: dict[str, Any] = {}
    if old and old != target:
        try:
            closed = set_write_gate(estate, old, closed=True, dry_run=dry_run)
        except Exception as exc:  # a region in outage may not answer its API: record it, go on
            closed = {"region": old, "error": f"{type(exc).__name__}: {exc}"[:300], "changed": False}
    return {"opened": opened, "closed": closed}


FAILOVER_STEPS = {
    "scale_target": scale_step,
    "migrate_sessions": sessions_step,
    "update_load_balancers": gates_step,
}
