"""What Route 53 should look like for an estate, and how to move traffic between its regions.

Pure functions over the estate config and the zone's current record sets, so the operators stay thin
and every decision (including "already there: nothing to do") is unit-testable without AWS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dr_automation.estate import Estate
from dr_automation.hooks.route53 import fqdn

SWITCH_MODES = ("health_check", "record_swap", "manual_override")


class TrafficSwitchError(ValueError):
    """A switch that cannot be done as asked; names the field and the reason."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def health_check_name(estate: Estate, region: str) -> str:
    """The Name tag of a region's health check (the bundle finds its checks by it)."""
    return f"{estate.route53['record_name']}-{region}"


def health_check_config(estate: Estate, region: str) -> dict[str, Any]:
    """The seed's health check for a region's endpoint (type, path, port, interval, threshold)."""
    hc = estate.route53["health_check"]
    endpoint = estate.regions[region]
    config: dict[str, Any] = {
        "Type": hc["type"],
        "IPAddress": endpoint.address,
        "Port": int(hc["port"]),
        "RequestInterval": int(hc["request_interval_seconds"]),
        "FailureThreshold": int(hc["failure_threshold"]),
    }
    if hc["type"] in ("HTTP", "HTTPS", "HTTP_STR_MATCH", "HTTPS_STR_MATCH"):
        config["ResourcePath"] = hc["resource_path"]
        config["FullyQualifiedDomainName"] = endpoint.hostname
    if hc.get("measure_latency"):
        config["MeasureLatency"] = True
    if hc.get("checker_regions"):
        config["Regions"] = list(hc["checker_regions"])
    return config


def health_check_tags(estate: Estate, region: str) -> dict[str, str]:
    prefix = estate.raw["organization"]["tag_prefix"]
    return {"Region": region, "Service": prefix, f"{prefix}:managed-by": "dr"}


def failover_records(estate: Estate, health_check_ids: Mapping[str, str]) -> list[dict[str, Any]]:
    """The PRIMARY/SECONDARY failover pair the config describes, tied to the regions' health checks."""
    r53 = estate.route53
    out = []
    for spec in r53["failover_records"]:
        region = estate.regions[spec["region"]]
        out.append(
            {
                "Name": fqdn(r53["record_name"]),
                "Type": r53["record_type"],
                "SetIdentifier": spec["set_identifier"],
                "Failover": spec["failover"],
                "TTL": int(r53["ttl_seconds"]),
                "ResourceRecords": [{"Value": region.address}],
                "HealthCheckId": health_check_ids[spec["region"]],
            }
        )
    return out


def region_by_address(estate: Estate) -> dict[str, str]:
    return {r.address: r.name for r in estate.regions.values()}


@dataclass(frozen=True)
class RoutingState:
    """Where the record name points now, as the control plane says."""

    mode: str  # "failover" | "manual_override" | "absent"
    primary_region: str | None  # PRIMARY record's region (failover) or the plain record's region
    secondary_region: str | None
    primary_record: dict[str, Any] | None
    secondary_record: dict[str, Any] | None
    plain_record: dict[str, Any] | None


def routing_state(estate: Estate, records: Sequence[Mapping[str, Any]]) -> RoutingState:
    r53 = estate.route53
    name = fqdn(r53["record_name"]).lower()
    mine = [dict(r) for r in records if fqdn(r["Name"]).lower() == name and r["Type"] == r53["record_type"]]
    by_addr = region_by_address(estate)

    def region_of(record: Mapping[str, Any] | None) -> str | None:
        if not record or not record.get("ResourceRecords"):
            return None
        return by_addr.get(record["ResourceRecords"][0]["Value"])

    primary = next((r for r in mine if r.get("Failover") == "PRIMARY"), None)
    secondary = next((r for r in mine if r.get("Failover") == "SECONDARY"), None)
    plain = next((r for r in mine if "SetIdentifier" not in r), None)
    if plain is not None:
        return RoutingState("manual_override", region_of(plain), None, primary, secondary, plain)
    if primary is None and secondary is None:
        return RoutingState("absent", None, None, None, None, None)
    return RoutingState("failover", region_of(primary), region_of(secondary), primary, secondary, None)


@dataclass(frozen=True)
class SwitchPlan:
    """The changes a traffic switch makes. Empty changes and no flag edits: already there."""

    mode: str
    target_region: str
    from_region: str | None
    record_changes: list[dict[str, Any]]
    # health check id -> the flags to set (mode health_check)
    health_check_flags: dict[str, dict[str, bool]]
    summary: str

    @property
    def is_noop(self) -> bool:
        return not self.record_changes and not self.health_check_flags

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "target_region": self.target_region,
            "from_region": self.from_region,
            "record_changes": self.record_changes,
            "health_check_flags": self.health_check_flags,
            "summary": self.summary,
            "noop": self.is_noop,
        }


def plan_switch(
    estate: Estate,
    *,
    target_region: str,
    mode: str,
    records: Sequence[Mapping[str, Any]],
    health_checks: Mapping[str, Mapping[str, Any]],
) -> SwitchPlan:
    """How to make `target_region` serve the record name, by `mode`.

    `health_checks` maps region -> the Route 53 health check (with HealthCheckConfig) of that region.
    - health_check: invert the PRIMARY's check so the data plane answers the SECONDARY (only when
      the target is the SECONDARY's region); to return, un-invert it. No record is touched.
    - record_swap: the target's address becomes the PRIMARY record (with its check), the former
      primary becomes SECONDARY. One atomic change batch.
    - manual_override: the failover pair is replaced by a plain record (TTL from config, 30 s) that
      answers the target whatever the health checks say.
    """
    if mode not in SWITCH_MODES:
        raise TrafficSwitchError("mode", f"must be one of {list(SWITCH_MODES)} (got {mode!r})")
    if target_region not in estate.regions:
        raise TrafficSwitchError(
            "target_region", f"{target_region!r} is not a region of the estate ({sorted(estate.regions)})"
        )
    r53 = estate.route53
    state = routing_state(estate, records)
    target = estate.regions[target_region]

    if mode == "manual_override":
        plain = {
            "Name": fqdn(r53["record_name"]),
            "Type": r53["record_type"],
            "TTL": int(r53["manual_override_ttl_seconds"]),
            "ResourceRecords": [{"Value": target.address}],
        }
        changes = [
            {"Action": "DELETE", "ResourceRecordSet": r}
            for r in (state.primary_record, state.secondary_record)
            if r
        ]
        changes.append({"Action": "UPSERT", "ResourceRecordSet": plain})
        if state.mode == "manual_override" and state.primary_region == target_region and not changes[:-1]:
            if state.plain_record and state.plain_record.get("TTL") == plain["TTL"]:
                changes = []
        return SwitchPlan(
            mode,
            target_region,
            state.primary_region,
            changes,
            {},
            f"plain {r53['record_name']} -> {target.address} (TTL {plain['TTL']})",
        )

    if state.mode != "failover" or state.primary_record is None or state.secondary_record is None:
        raise TrafficSwitchError(
            "mode",
            f"{mode} needs the PRIMARY/SECONDARY failover pair for {r53['record_name']}, but the zone has "
            f"{state.mode} routing; run dns_failover_setup first or use manual_override",
        )

    if mode == "health_check":
        primary_region, secondary_region = state.primary_region, state.secondary_region
        if target_region not in (primary_region, secondary_region):
            raise TrafficSwitchError(
                "target_region",
                f"{target_region} is in neither half of the failover pair ({primary_region}, "
                f"{secondary_region}); health_check mode can only move traffic within the pair: "
                "use record_swap or manual_override",
            )
        primary_check = health_checks.get(primary_region or "")
        if primary_check is None:
            raise TrafficSwitchError(
                "mode", f"the PRIMARY region {primary_region} has no health check to invert"
            )
        inverted = bool(primary_check["HealthCheckConfig"].get("Inverted", False))
        if target_region == secondary_region:
            flags = {} if inverted else {primary_check["Id"]: {"Inverted": True}}
            summary = (
                f"invert {primary_region}'s health check: Route 53 answers the SECONDARY ({secondary_region})"
            )
        else:  # back to the PRIMARY
            flags = {primary_check["Id"]: {"Inverted": False}} if inverted else {}
            summary = f"un-invert {primary_region}'s health check: Route 53 answers the PRIMARY again"
        return SwitchPlan(mode, target_region, primary_region, [], flags, summary)

    # record_swap
    if state.primary_region == target_region:
        return SwitchPlan(mode, target_region, target_region, [], {}, f"{target_region} is already PRIMARY")
    target_check = health_checks.get(target_region)
    if target_check is None:
        raise TrafficSwitchError(
            "target_region", f"{target_region} has no health check; run dns_failover_setup first"
        )
    new_primary = dict(state.primary_record)
    new_primary["ResourceRecords"] = [{"Value": target.address}]
    new_primary["HealthCheckId"] = target_check["Id"]
    new_secondary = dict(state.secondary_record)
    if state.primary_region and state.primary_region != target_region:
        old = estate.regions[state.primary_region]
        new_secondary["ResourceRecords"] = [{"Value": old.address}]
        old_check = health_checks.get(state.primary_region)
        if old_check is not None:
            new_secondary["HealthCheckId"] = old_check["Id"]
    changes = [
        {"Action": "UPSERT", "ResourceRecordSet": new_primary},
        {"Action": "UPSERT", "ResourceRecordSet": new_secondary},
    ]
    return SwitchPlan(
        mode,
        target_region,
        state.primary_region,
        changes,
        {},
        f"PRIMARY {state.primary_region} -> {target_region}",
    )


def routing_view(estate: Estate, hook: Any) -> dict[str, Any]:
    """Which region serves now (control plane), and how the zone routes (for the switch mode)."""
    zone_id = hook.get_hosted_zone_id(estate.route53["hosted_zone"])
    state = routing_state(estate, hook.list_record_sets(zone_id))
    inverted: list[str] = []
    note = ""
    if state.mode == "manual_override":
        serving = state.primary_region
    elif state.mode == "failover":
        serving = state.primary_region
        check = hook.find_health_check(health_check_name(estate, state.primary_region)) if serving else None
        if check and check["HealthCheckConfig"].get("Inverted"):
            inverted.append(state.primary_region)
            serving = state.secondary_region
    else:
        serving = None
    if serving is None:
        serving = estate.primary_region.name
        note = (
            f"{estate.route53['record_name']} has {state.mode} routing that names no region of the estate: "
            f"watching the estate's primary region {serving}"
        )
    return {
        "mode": state.mode,
        "serving_region": serving,
        "pair": [state.primary_region, state.secondary_region] if state.mode == "failover" else [],
        "inverted_checks": inverted,
        "note": note,
    }


# -- the decision ------------------------------------------------------------------------------
