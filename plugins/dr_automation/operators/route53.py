"""Route 53 operators, modelled on the Amazon provider's (AwsBaseOperator + a thin hook).

They read the estate at run time (the single source of truth, possibly newer than the parsed DAG)
and are idempotent: asking for what is already there changes nothing and says so. Every switch
returns what it replaced, so `Route53RollbackOperator` can put it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields

from dr_automation.audit import audit_step
from dr_automation.hooks.route53 import ROUTE53_REGION, ChangeResult, Route53Hook
from dr_automation.links import Route53HealthChecksLink, Route53HostedZoneLink

#: The audit event of every traffic switch (started, succeeded, rolled_back).
SWITCH_EVENT = "failover.dns_switch"

if TYPE_CHECKING:
    from airflow.sdk import Context

    from dr_automation.estate import Estate


class _EstateRoute53Operator(AwsBaseOperator[Route53Hook]):
    aws_hook_class = Route53Hook
    template_fields: Sequence[str] = aws_template_fields("estate_path")
    operator_extra_links = (Route53HostedZoneLink(), Route53HealthChecksLink())

    def __init__(self, *, estate_path: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("region_name", ROUTE53_REGION)
        super().__init__(**kwargs)
        self.estate_path = estate_path

    def estate(self) -> Estate:
        from dr_automation.estate import load_estate

        return load_estate(self.estate_path)

    def zone_id(self, estate: Estate, context: Context | None = None) -> str:
        zone_id = self.hook.get_hosted_zone_id(estate.route53["hosted_zone"])
        if context is not None:
            for link in (Route53HostedZoneLink, Route53HealthChecksLink):
                link.persist(
                    context=context,
                    operator=self,
                    region_name=ROUTE53_REGION,
                    aws_partition=self.hook.conn_partition,
                    zone_id=zone_id,
                )
        return zone_id

    def health_checks_by_region(self, estate: Estate) -> dict[str, dict[str, Any]]:
        from dr_automation.route53_plan import health_check_name

        out = {}
        for region in estate.regions:
            check = self.hook.find_health_check(health_check_name(estate, region))
            if check is not None:
                out[region] = check
        return out


class Route53EnsureHealthChecksOperator(_EstateRoute53Operator):
    """Create or update each region's health check to the config (seed: HTTPS /health :443, 30 s, 3)."""

    def __init__(self, *, regions: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.regions = regions

    def execute(self, context: Context) -> dict[str, dict[str, Any]]:
        from dr_automation.route53_plan import health_check_config, health_check_name, health_check_tags

        estate = self.estate()
        regions = list(self.regions or estate.regions)
        result = {}
        for region in regions:
            check_id, changed = self.hook.ensure_health_check(
                health_check_name(estate, region),
                health_check_config(estate, region),
                health_check_tags(estate, region),
            )
            result[region] = {"id": check_id, "changed": changed}
            self.log.info(
                "Health check for %s: %s (%s)", region, check_id, "changed" if changed else "unchanged"
            )
        return result


class Route53EnsureFailoverRoutingOperator(_EstateRoute53Operator):
    """Make the PRIMARY/SECONDARY failover pair exactly what the config says (TTL, checks, values)."""

    def execute(self, context: Context) -> dict[str, Any]:
        from dr_automation.route53_plan import failover_records, health_check_name

        estate = self.estate()
        zone_id = self.zone_id(estate, context)
        ids = {}
        for spec in estate.route53["failover_records"]:
            check = self.hook.find_health_check(health_check_name(estate, spec["region"]))
            if check is None:
                raise ValueError(f"no health check for {spec['region']}: run the health-check step first")
            ids[spec["region"]] = check["Id"]
        changes = [{"Action": "UPSERT", "ResourceRecordSet": r} for r in failover_records(estate, ids)]
        result = self.hook.change_record_sets(zone_id, changes, comment="dns_failover_setup reconcile")
        return {"zone_id": zone_id, **result.to_dict()}


class Route53SwitchTrafficOperator(_EstateRoute53Operator):
    """Move the record name's traffic to `target_region` by `mode` (see route53_plan.plan_switch).

    Returns the plan, the change (with the record sets it replaced) and the health-check flags it
    replaced: everything the rollback needs. With dry_run it only returns the plan.
    """

    template_fields: Sequence[str] = aws_template_fields("estate_path", "target_region", "mode", "dry_run")

    def __init__(
        self, *, target_region: str, mode: str = "health_check", dry_run: bool | str = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.target_region = target_region
        self.mode = mode
        self.dry_run = dry_run

    def execute(self, context: Context) -> dict[str, Any]:
        from dr_automation.route53_plan import plan_switch

        estate = self.estate()
        zone_id = self.zone_id(estate, context)
        checks = self.health_checks_by_region(estate)
        plan = plan_switch(
            estate,
            target_region=self.target_region,
            mode=self.mode,
            records=self.hook.list_record_sets(zone_id),
            health_checks=checks,
        )
        out: dict[str, Any] = {
            "zone_id": zone_id,
            "plan": plan.to_dict(),
            "change": None,
            "previous_flags": {},
        }
        dry = self.dry_run if isinstance(self.dry_run, bool) else str(self.dry_run).lower() == "true"
        self.log.info("Traffic switch plan%s: %s", " (dry run)" if dry else "", plan.summary)
        if dry or plan.is_noop:
            return out
        context["ti"].xcom_push(key="switch_started", value=True)
        audit_step(estate, SWITCH_EVENT, "started", context, log=self.log, detail=out["plan"])
        try:
            # Capture what is there before each change: if the answer to a change is lost after AWS
            # applied it, the rollback must still know what to restore.
            for check_id, flags in plan.health_check_flags.items():
                out["previous_flags"][check_id] = self.hook.health_check_flags(check_id)
                self.hook.set_health_check_flags(
                    check_id, inverted=flags.get("Inverted"), disabled=flags.get("Disabled")
                )
            if plan.record_changes:
                prepared = self.hook.prepare_changes(zone_id, plan.record_changes)
                out["change"] = prepared.to_dict()
                change = self.hook.submit_changes(
                    zone_id, prepared, comment=f"failover to {self.target_region} ({self.mode})"
                )
                out["change"] = change.to_dict()
        except Exception as exc:
            # A half-applied switch is worse than none: undo what this task did before failing.
            self.log.exception("Switch failed part-way; restoring the previous state")
            restored = rollback_switch(self.hook, out)
            audit_step(
                estate,
                SWITCH_EVENT,
                "rolled_back",
                context,
                log=self.log,
                detail={"error": f"{type(exc).__name__}: {exc}"[:500], "restored": restored},
            )
            raise
        audit_step(estate, SWITCH_EVENT, "succeeded", context, log=self.log, detail=out)
        return out


def rollback_switch(hook: Route53Hook, switch_result: dict[str, Any]) -> dict[str, Any]:
    """Undo a switch from its result: records back to what they were, flags back to what they were."""
    restored: dict[str, Any] = {"records": None, "flags": {}}
    change = switch_result.get("change")
    if change and change.get("applied"):
        restored["records"] = hook.rollback(
            switch_result["zone_id"], ChangeResult.from_dict(change)
        ).to_dict()
    for check_id, before in (switch_result.get("previous_flags") or {}).items():
        hook.set_health_check_flags(
            check_id, inverted=before.get("Inverted"), disabled=before.get("Disabled")
        )
        restored["flags"][check_id] = before
    return restored


class Route53RollbackOperator(AwsBaseOperator[Route53Hook]):
    """Put DNS back exactly as it was before a switch.

    The switch's result comes either as a dict (``switch_result``) or from the switch task's XCom
    (``switch_task_id``), pulled as an object: a Jinja-rendered XCom would be a string, and a
    rollback that cannot read what to restore must fail loudly, never report "nothing to do".
    """

    aws_hook_class = Route53Hook
    template_fields: Sequence[str] = aws_template_fields()

    def __init__(
        self,
        *,
        switch_result: dict[str, Any] | None = None,
        switch_task_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("region_name", ROUTE53_REGION)
        super().__init__(**kwargs)
        if (switch_result is None) == (switch_task_id is None):
            raise ValueError("switch_result / switch_task_id: give exactly one")
        self.switch_result = switch_result
        self.switch_task_id = switch_task_id

    def execute(self, context: Context) -> dict[str, Any]:
        result = self.switch_result
        if self.switch_task_id:
            result = context["ti"].xcom_pull(task_ids=self.switch_task_id)
        if result is None:
            self.log.info(
                "Nothing to roll back: %s returned no result (it changed nothing)", self.switch_task_id
            )
            return {"records": None, "flags": {}}
        if not isinstance(result, dict) or "zone_id" not in result:
            raise TypeError(
                f"switch_result: expected the switch task's result dict, got {type(result).__name__}"
            )
        self.switch_result = result
        restored = rollback_switch(self.hook, self.switch_result)
        from dr_automation.estate import load_estate

        audit_step(load_estate(), SWITCH_EVENT, "rolled_back", context, log=self.log, detail=restored)
        return restored
