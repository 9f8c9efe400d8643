"""What the failover e2e modules share: runs through REST, DNS answers, and the estate's state as
AWS holds it (Route 53, Auto Scaling groups, write gates), so a test can prove "nothing moved"."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3

from dr_sandbox.sandbox import resolve

FAILOVER, FAILBACK = "regional_failover", "regional_failback"


def run(client: Any, dag_id: str, conf: dict, run_id: str, timeout: float = 300) -> tuple[dict, dict]:
    client.trigger(dag_id, conf, run_id=run_id)
    finished = client.wait_for_run(dag_id, run_id, timeout=timeout)
    return finished, tis(client, dag_id, run_id)


def tis(client: Any, dag_id: str, run_id: str) -> dict[str, dict]:
    return {ti["task_id"]: ti for ti in client.task_instances(dag_id, run_id)}


def states(task_instances: dict[str, dict]) -> dict[str, str | None]:
    return {t: v["state"] for t, v in task_instances.items()}


def failed_logs(client: Any, dag_id: str, run_id: str, tail: int = 3000) -> dict[str, str]:
    """The end of each failed task's last log: what an assertion message needs to explain a failure."""
    out = {}
    for task_id, ti in tis(client, dag_id, run_id).items():
        if ti["state"] == "failed":
            log = client.request(
                "GET",
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{max(ti['try_number'], 1)}",
            )
            content = log.get("content") if isinstance(log, dict) else None
            if isinstance(content, list):
                text = "\n".join(
                    f"{e.get('level', '')} {e.get('event', '')} {e.get('error_detail', '') or ''}"
                    for e in content
                    if isinstance(e, dict)
                )
            else:
                text = json.dumps(log)
            out[task_id] = text[-tail:]
    return out


def xcom(client: Any, dag_id: str, run_id: str, task_id: str) -> Any:
    return client.request(
        "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
    )["value"]


def wait_task_state(
    client: Any, dag_id: str, run_id: str, task_id: str, state: str, timeout: float = 120.0, poll: float = 0.5
) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        current = tis(client, dag_id, run_id)
        if current.get(task_id, {}).get("state") == state:
            return current
        assert time.monotonic() < deadline, f"{task_id} never reached {state}: {states(current)}"
        time.sleep(poll)


def answer(layout: Any, endpoints: dict) -> list[str]:
    return resolve(layout, endpoints["record_name"])


def address(endpoints: dict, region: str) -> str:
    return endpoints["regions"][region]["address"]


def aws_client(layout: Any, creds: dict, service: str, region: str = "us-east-1") -> Any:
    return boto3.client(
        service,
        endpoint_url=layout.aws_url,
        region_name=region,
        aws_access_key_id=creds["aws_access_key_id"],
        aws_secret_access_key=creds["aws_secret_access_key"],
    )


def control_plane(route53: Any, endpoints: dict) -> dict[str, Any]:
    """Every record set of the API name and every health check's flags, as Route 53 holds them."""
    zone = route53.list_hosted_zones_by_name(DNSName="leanvibe.ai")["HostedZones"][0]["Id"]
    records = route53.list_resource_record_sets(HostedZoneId=zone, MaxItems="1000")["ResourceRecordSets"]
    name = endpoints["record_name"].rstrip(".") + "."
    mine = sorted(
        (r for r in records if r["Name"] == name and r["Type"] == "A"),
        key=lambda r: r.get("SetIdentifier", ""),
    )
    checks = {
        c["Id"]: {k: c["HealthCheckConfig"].get(k, False) for k in ("Inverted", "Disabled")}
        for c in route53.list_health_checks(MaxItems="1000")["HealthChecks"]
    }
    return {"records": mine, "checks": checks}


def regions_state(layout: Any, creds: dict, endpoints: dict) -> dict[str, Any]:
    """Each region's Auto Scaling group size and write gate, read from AWS (not from the DAG)."""
    from dr_automation.estate import load_estate
    from dr_automation.target_region import write_gate_tag

    estate = load_estate(endpoints["estate"])
    out = {}
    for name, region in estate.regions.items():
        asg = aws_client(layout, creds, "autoscaling", name)
        group = asg.describe_auto_scaling_groups(
            AutoScalingGroupNames=[region.capacity["auto_scaling_group"]]
        )["AutoScalingGroups"][0]
        elbv2 = aws_client(layout, creds, "elbv2", name)
        lb = elbv2.describe_load_balancers(Names=[region.load_balancer["name"]])["LoadBalancers"][0]
        listener = elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"][0]
        rules = [
            r
            for r in elbv2.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
            if not r["IsDefault"]
        ]
        tags = elbv2.describe_tags(ResourceArns=[r["RuleArn"] for r in rules])["TagDescriptions"]
        gate_arns = {t["ResourceArn"] for t in tags if write_gate_tag(estate) in t["Tags"]}
        gate = next(r for r in rules if r["RuleArn"] in gate_arns)
        out[name] = {
            "capacity": {k: group[k] for k in ("MinSize", "MaxSize", "DesiredCapacity")},
            "writes": gate["Actions"][0]["Type"],
        }
    return out
