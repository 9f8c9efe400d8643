"""Interact with Amazon Route 53 (the Amazon provider has no Route 53 hook).

Failover must never depend on guessing what DNS looked like before: every change batch captures the
record sets it replaces, so a failed failover can put back exactly what was there.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook
from airflow.providers.common.compat.sdk import AirflowException, AirflowNotFoundException

if TYPE_CHECKING:
    from mypy_boto3_route53 import Route53Client  # noqa: F401

#: Route 53 is a global service whose control plane lives in us-east-1.
ROUTE53_REGION = "us-east-1"
#: The API's maximum page size. moto's paginator breaks on failover pairs with small pages.
MAX_ITEMS = "300"

RecordKey = tuple[str, str, str | None]  # (name with trailing dot, type, set identifier)


def fqdn(name: str) -> str:
    """Route 53 returns names with a trailing dot; compare them that way."""
    return name if name.endswith(".") else f"{name}."


def record_key(record: Mapping[str, Any]) -> RecordKey:
    return (fqdn(record["Name"]).lower(), record["Type"], record.get("SetIdentifier"))


def _normalise(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record set as comparable data (name case and trailing dot, value order are not meaningful)."""
    out = copy.deepcopy(dict(record))
    out["Name"] = fqdn(out["Name"]).lower()
    if "ResourceRecords" in out:
        out["ResourceRecords"] = sorted(out["ResourceRecords"], key=lambda r: r["Value"])
    return out


@dataclass
class ChangeResult:
    """What a change batch did: its id and the record sets it replaced, for rollback."""

    change_id: str | None
    status: str
    applied: list[dict[str, Any]] = field(default_factory=list)
    # key -> the record set as it was before (None: it did not exist)
    previous: dict[RecordKey, dict[str, Any] | None] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.applied)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (XCom, failover record)."""
        return {
            "change_id": self.change_id,
            "status": self.status,
            "applied": self.applied,
            "previous": [{"key": list(k), "record": v} for k, v in self.previous.items()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChangeResult:
        return cls(
            change_id=data.get("change_id"),
            status=data.get("status", ""),
            applied=list(data.get("applied", [])),
            previous={tuple(p["key"]): p["record"] for p in data.get("previous", [])},  # type: ignore[misc]
        )


class Route53Hook(AwsGenericHook["Route53Client"]):
    """
    Interact with Amazon Route 53: record sets, change batches, health checks.

    Thin wrapper around :external+boto3:py:class:`boto3.client("route53") <Route53.Client>`, in the
    style of the Amazon provider's hooks (``aws_conn_id`` and friends are passed to AwsBaseHook).
    Every mutating method is idempotent: asking for what already exists changes nothing.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "route53"
        kwargs.setdefault("region_name", ROUTE53_REGION)
        super().__init__(*args, **kwargs)

    # -- zones -------------------------------------------------------------------------------
    def get_hosted_zone_id(self, zone_name: str) -> str:
        """The id (without the /hostedzone/ prefix) of the public zone named exactly `zone_name`."""
        wanted = fqdn(zone_name).lower()
        response = self.conn.list_hosted_zones_by_name(DNSName=wanted, MaxItems="100")
        for zone in response.get("HostedZones", []):
            if zone["Name"].lower() == wanted and not zone.get("Config", {}).get("PrivateZone", False):
                return zone["Id"].rsplit("/", 1)[-1]
        raise AirflowNotFoundException(f"Route 53 hosted zone {zone_name!r} not found")

    # -- record sets -------------------------------------------------------------------------
    def list_record_sets(
        self, zone_id: str, *, name: str | None = None, record_type: str | None = None
    ) -> list[dict[str, Any]]:
        """Every record set of the zone (optionally one name/type), following pagination by hand.

        boto3's paginator is not used: it loses its place on failover pairs in the emulator, and
        a page boundary falling between the two halves of a pair must not hide one of them.
        """
        kwargs: dict[str, Any] = {"HostedZoneId": zone_id, "MaxItems": MAX_ITEMS}
        if name:
            kwargs["StartRecordName"] = fqdn(name)
            if record_type:
                kwargs["StartRecordType"] = record_type
        records: list[dict[str, Any]] = []
        seen_markers: set[tuple[Any, ...]] = set()
        while True:
            page = self.conn.list_resource_record_sets(**kwargs)
            records.extend(page.get("ResourceRecordSets", []))
            if not page.get("IsTruncated"):
                break
            marker = (
                page.get("NextRecordName"),
                page.get("NextRecordType"),
                page.get("NextRecordIdentifier"),
            )
            if marker in seen_markers:
                raise AirflowException(f"Route 53 pagination did not advance for zone {zone_id} at {marker}")
            seen_markers.add(marker)
            kwargs["StartRecordName"], kwargs["StartRecordType"] = marker[0], marker[1]
            if marker[2]:
                kwargs["StartRecordIdentifier"] = marker[2]
            else:
                kwargs.pop("StartRecordIdentifier", None)
        unique: dict[RecordKey, dict[str, Any]] = {}
        for record in records:
            unique.setdefault(record_key(record), record)
        out = list(unique.values())
        if name:
            out = [r for r in out if fqdn(r["Name"]).lower() == fqdn(name).lower()]
        if record_type:
            out = [r for r in out if r["Type"] == record_type]
        return out

    def get_record_set(
        self, zone_id: str, name: str, record_type: str, set_identifier: str | None = None
    ) -> dict[str, Any] | None:
        for record in self.list_record_sets(zone_id, name=name, record_type=record_type):
            if record.get("SetIdentifier") == set_identifier:
                return record
        return None

    def prepare_changes(
        self, zone_id: str, changes: Sequence[Mapping[str, Any]], *, comment: str = ""
    ) -> ChangeResult:
        """The effective batch (changes that would change nothing dropped) and what it will replace.

        Captured BEFORE submitting, so a rollback is possible even when the submit's answer is lost
        (a timeout after Route 53 applied the batch).
        """
        current = {record_key(r): r for r in self.list_record_sets(zone_id)}
        effective: list[dict[str, Any]] = []
        previous: dict[RecordKey, dict[str, Any] | None] = {}
        for change in changes:
            action = change["Action"]
            record = dict(change["ResourceRecordSet"])
            key = record_key(record)
            existing = current.get(key)
            if action == "DELETE" and existing is None:
                continue
            if action in ("UPSERT", "CREATE") and existing is not None:
                if _normalise(existing) == _normalise(record):
                    continue
                if action == "CREATE":
                    action = "UPSERT"  # creating what exists would fail; the caller wants this state
            if action == "DELETE":
                record = dict(existing)  # DELETE must name the record exactly as it is
            previous.setdefault(key, copy.deepcopy(existing) if existing is not None else None)
            effective.append({"Action": action, "ResourceRecordSet": record})
        return ChangeResult(
            change_id=None, status="PENDING" if effective else "INSYNC", applied=effective, previous=previous
        )

    def submit_changes(self, zone_id: str, prepared: ChangeResult, *, comment: str = "") -> ChangeResult:
        """Submit a prepared batch (Route 53 applies one batch atomically)."""
        if not prepared.applied:
            return prepared
        batch: dict[str, Any] = {"Changes": prepared.applied}
        if comment:
            batch["Comment"] = comment[:256]
        response = self.conn.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch=batch)
        info = response["ChangeInfo"]
        self.log.info(
            "Route 53 change %s (%s): %d change(s)", info["Id"], info["Status"], len(prepared.applied)
        )
        return ChangeResult(
            change_id=info["Id"].rsplit("/", 1)[-1],
            status=info["Status"],
            applied=prepared.applied,
            previous=prepared.previous,
        )

    def change_record_sets(
        self, zone_id: str, changes: Sequence[Mapping[str, Any]], *, comment: str = ""
    ) -> ChangeResult:
        """Apply a change batch, skipping changes that would change nothing; capture what was there."""
        return self.submit_changes(zone_id, self.prepare_changes(zone_id, changes), comment=comment)

    def rollback(self, zone_id: str, result: ChangeResult, *, comment: str = "rollback") -> ChangeResult:
        """Put back every record set a change replaced (and remove the ones it created)."""
        current = {record_key(r): r for r in self.list_record_sets(zone_id)}
        changes: list[dict[str, Any]] = []
        # Deletions first: a failover record and a plain record of the same name cannot coexist.
        for key, before in result.previous.items():
            now = current.get(key)
            if before is None and now is not None:
                changes.append({"Action": "DELETE", "ResourceRecordSet": now})
        for key, before in result.previous.items():
            if before is not None:
                changes.append({"Action": "UPSERT", "ResourceRecordSet": before})
            elif key not in current:
                continue
        return self.change_record_sets(zone_id, changes, comment=comment)

    def get_change_status(self, change_id: str) -> str:
        try:
            return self.conn.get_change(Id=change_id)["ChangeInfo"]["Status"]
        except self.conn.exceptions.NoSuchChange as exc:
            raise AirflowNotFoundException(f"Route 53 change {change_id} not found") from exc

    def wait_for_change_insync(self, change_id: str, *, delay: int = 5, max_attempts: int = 60) -> None:
        """Block until the change has propagated to every Route 53 authoritative server."""
        self.get_waiter("resource_record_sets_changed").wait(
            Id=change_id, WaiterConfig={"Delay": delay, "MaxAttempts": max_attempts}
        )

    # -- health checks -----------------------------------------------------------------------
    @staticmethod
    def caller_reference(name: str, config: Mapping[str, Any]) -> str:
        """Deterministic per name and settings: a retried create returns the same check, not a copy."""
        digest = hashlib.sha256(json.dumps(dict(config), sort_keys=True).encode()).hexdigest()[:16]
        return f"{name}-{digest}"[:64]

    def list_health_checks(self) -> list[dict[str, Any]]:
        checks: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"MaxItems": "1000"}
        while True:
            page = self.conn.list_health_checks(**kwargs)
            checks.extend(page.get("HealthChecks", []))
            if not page.get("IsTruncated") or not page.get("NextMarker"):
                return checks
            kwargs["Marker"] = page["NextMarker"]

    def health_check_tags(self, check_ids: Iterable[str]) -> dict[str, dict[str, str]]:
        ids = list(check_ids)
        out: dict[str, dict[str, str]] = {}
        for i in range(0, len(ids), 10):  # the API takes at most 10 ids per call
            response = self.conn.list_tags_for_resources(
                ResourceType="healthcheck", ResourceIds=ids[i : i + 10]
            )
            for item in response.get("ResourceTagSets", []):
                out[item["ResourceId"]] = {t["Key"]: t["Value"] for t in item.get("Tags", [])}
        return out

    def find_health_check(self, name: str) -> dict[str, Any] | None:
        """The health check tagged Name=<name> (the bundle names every check it manages)."""
        checks = self.list_health_checks()
        tags = self.health_check_tags(c["Id"] for c in checks)
        matches = [c for c in checks if tags.get(c["Id"], {}).get("Name") == name]
        if len(matches) > 1:
            raise AirflowException(
                f"{len(matches)} Route 53 health checks are tagged Name={name}: {[c['Id'] for c in matches]}"
            )
        return matches[0] if matches else None

    def ensure_health_check(
        self, name: str, config: Mapping[str, Any], tags: Mapping[str, str] | None = None
    ) -> tuple[str, bool]:
        """Create or update the named health check to `config`. Returns (id, changed)."""
        existing = self.find_health_check(name)
        all_tags = {"Name": name, **(tags or {})}
        if existing is None:
            response = self.conn.create_health_check(
                CallerReference=self.caller_reference(name, config), HealthCheckConfig=dict(config)
            )
            check_id = response["HealthCheck"]["Id"]
            self._tag_health_check(check_id, all_tags)
            self.log.info("Created Route 53 health check %s (%s)", check_id, name)
            return check_id, True
        check_id = existing["Id"]
        current = existing["HealthCheckConfig"]
        updates = {k: v for k, v in config.items() if k in _UPDATABLE and current.get(k) != v}
        immutable = {k for k, v in config.items() if k not in _UPDATABLE and current.get(k) != v}
        if immutable:
            raise AirflowException(
                f"health check {name} ({check_id}): {sorted(immutable)} cannot be changed in place; "
                "delete it (and the records using it) to recreate"
            )
        changed = False
        if updates:
            self.conn.update_health_check(
                HealthCheckId=check_id, HealthCheckVersion=existing["HealthCheckVersion"], **updates
            )
            changed = True
        current_tags = self.health_check_tags([check_id]).get(check_id, {})
        if any(current_tags.get(k) != v for k, v in all_tags.items()):
            self._tag_health_check(check_id, all_tags)
            changed = True
        return check_id, changed

    def _tag_health_check(self, check_id: str, tags: Mapping[str, str]) -> None:
        self.conn.change_tags_for_resource(
            ResourceType="healthcheck",
            ResourceId=check_id,
            AddTags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )

    def get_health_check(self, check_id: str) -> dict[str, Any]:
        try:
            return self.conn.get_health_check(HealthCheckId=check_id)["HealthCheck"]
        except self.conn.exceptions.NoSuchHealthCheck as exc:
            raise AirflowNotFoundException(f"Route 53 health check {check_id} not found") from exc

    @staticmethod
    def _flags(check: Mapping[str, Any]) -> dict[str, bool]:
        cfg = check["HealthCheckConfig"]
        return {"Inverted": bool(cfg.get("Inverted", False)), "Disabled": bool(cfg.get("Disabled", False))}

    def health_check_flags(self, check_id: str) -> dict[str, bool]:
        return self._flags(self.get_health_check(check_id))

    def set_health_check_flags(
        self, check_id: str, *, inverted: bool | None = None, disabled: bool | None = None
    ) -> dict[str, Any]:
        """Invert or disable a check (the data-plane failover lever). Returns the previous flags."""
        check = self.get_health_check(check_id)
        before = self._flags(check)
        updates: dict[str, Any] = {}
        if inverted is not None and before["Inverted"] != inverted:
            updates["Inverted"] = inverted
        if disabled is not None and before["Disabled"] != disabled:
            updates["Disabled"] = disabled
        if updates:
            self.conn.update_health_check(
                HealthCheckId=check_id, HealthCheckVersion=check["HealthCheckVersion"], **updates
            )
            self.log.info("Route 53 health check %s: %s (was %s)", check_id, updates, before)
        return before

    def delete_health_check(self, check_id: str) -> bool:
        """Delete; False when it was already gone (checked first: the emulator never says so)."""
        try:
            self.get_health_check(check_id)
            self.conn.delete_health_check(HealthCheckId=check_id)
        except (AirflowNotFoundException, self.conn.exceptions.NoSuchHealthCheck):
            return False
        return True


# Fields UpdateHealthCheck accepts (Type, RequestInterval and MeasureLatency are fixed at creation).
_UPDATABLE = frozenset(
    {
        "IPAddress",
        "Port",
        "ResourcePath",
        "FullyQualifiedDomainName",
        "SearchString",
        "FailureThreshold",
        "Inverted",
        "Disabled",
        "HealthThreshold",
        "ChildHealthChecks",
        "EnableSNI",
        "Regions",
        "AlarmIdentifier",
        "InsufficientDataHealthStatus",
    }
)
