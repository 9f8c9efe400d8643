"""
### DNS failover setup (Route 53)

**What it does:** reconciles Route 53 with the estate config: one health check per region (the
seed's HTTPS `/health` on 443, every 30 s, 3 failures), then the PRIMARY/SECONDARY failover pair for
the API name (TTL 60) tied to those checks. It waits until the change is INSYNC and until the
configured resolvers answer the PRIMARY's address.

**Why it matters:** failover should ride Route 53's data plane (pre-created failover records and
health checks) rather than its control plane during an incident. This DAG creates that data plane
ahead of time, and every run proves it is still as configured.

**Safe to run any time:** it is idempotent: a second run changes nothing (every task reports
`changed: false` and no change batch is sent). It refuses to edit a health check in a way Route 53
cannot do in place (type, interval, latency measurement) rather than deleting one in use.

**If it fails:** `ensure_health_checks` names the check and field; `ensure_failover_routing` says
which region lacks a check; `dns_answers_primary` shows what each resolver answered.
"""

from __future__ import annotations

from airflow.sdk import dag

from dr_automation.dag_defaults import dag_tags, default_args
from dr_automation.estate import load_estate
from dr_automation.operators.route53 import (
    Route53EnsureFailoverRoutingOperator,
    Route53EnsureHealthChecksOperator,
)
from dr_automation.sensors.route53 import DnsAnswerSensor, Route53ChangeInsyncSensor

estate = load_estate()
aws_conn_id = estate.connections["aws"]


@dag(
    dag_id="dns_failover_setup",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(estate),
    tags=dag_tags("dns", "failover"),
    doc_md=__doc__,
)
def dns_failover_setup() -> None:
    health_checks = Route53EnsureHealthChecksOperator(task_id="ensure_health_checks", aws_conn_id=aws_conn_id)
    routing = Route53EnsureFailoverRoutingOperator(
        task_id="ensure_failover_routing", aws_conn_id=aws_conn_id, pool="dr_traffic"
    )
    insync = Route53ChangeInsyncSensor(
        task_id="change_insync",
        change_id="{{ ti.xcom_pull(task_ids='ensure_failover_routing')['change_id'] }}",
        aws_conn_id=aws_conn_id,
        waiter_delay=5,
    )
    answers = DnsAnswerSensor(
        task_id="dns_answers_primary",
        name=estate.route53["record_name"],
        expected=[estate.primary_region.address],
        nameservers=list(estate.route53["verify_nameservers"]),
        record_type=estate.route53["record_type"],
        timeout=300,
    )
    health_checks >> routing >> insync >> answers


dns_failover_setup()
