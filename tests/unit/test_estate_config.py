"""The estate config loader: the bundled file is valid, and each kind of mistake gets one clear error.

Every bad case mutates a deep copy of the bundled LeanVibe estate (or supplies raw text for
YAML-level mistakes), so the cases keep working as the bundled file grows, and each asserts the exact
field path plus a piece of the reason an operator would read in the DAG import error.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dr_automation.estate import DEFAULT_ESTATE_PATH, EstateConfigError, load_estate, validation

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def bundled() -> Doc:
    return yaml.safe_load(DEFAULT_ESTATE_PATH.read_text(encoding="utf-8"))


def write_doc(tmp_path: Path, doc: Doc, name: str = "estate.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def load_error(path: Path) -> EstateConfigError:
    with pytest.raises(EstateConfigError) as info:
        load_estate(path)
    return info.value


def system(doc: Doc, tier: str, name: str) -> Doc:
    return next(s for s in doc["tiers"][tier]["systems"] if s["name"] == name)


# -- the bundled file ---------------------------------------------------------------------------


def test_bundled_estate_is_valid_and_typed() -> None:
    estate = load_estate(DEFAULT_ESTATE_PATH)
    assert estate.name == "LeanVibe"
    assert estate.primary_region.name == "us-east-1"
    assert estate.secondary_region.name == "us-west-2"
    assert estate.dr_region.name == "eu-west-1"
    assert estate.primary_region.port == 443
    assert estate.primary_region.protocol == "HTTPS"
    tier1 = estate.tiers["tier1_realtime"]
    assert (tier1.rpo_minutes, tier1.schedule, tier1.object_lock) == (5, "*/5 * * * *", False)
    assert estate.tiers["tier4_archival"].object_lock is True
    assert estate.route53["health_check"]["request_interval_seconds"] == 30
    assert tier1.systems[0]["name"] == "primary-database"
    with pytest.raises(TypeError):
        estate.raw["version"] = 2  # type: ignore[index]


def test_loopback_addresses_are_valid(tmp_path: Path, bundled: Doc) -> None:
    """The sandbox stands in for regions with 127.x addresses and plain HTTP on high ports."""
    doc = copy.deepcopy(bundled)
    for index, region in enumerate(doc["regions"].values(), start=1):
        region["endpoint"].update(address=f"127.0.0.{index + 10}", port=18000 + index, protocol="HTTP")
    doc["regions"]["eu-west-1"]["endpoint"]["hostname"] = "localhost"
    estate = load_estate(write_doc(tmp_path, doc))
    assert estate.primary_region.address == "127.0.0.11"
    assert estate.dr_region.port == 18003


def test_cache_returns_same_object_until_file_changes(tmp_path: Path, bundled: Doc) -> None:
    path = write_doc(tmp_path, bundled)
    first = load_estate(path)
    assert load_estate(path) is first

    doc = copy.deepcopy(bundled)
    doc["tiers"]["tier1_realtime"]["rpo_minutes"] = 4
    write_doc(tmp_path, doc)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    second = load_estate(path)
    assert second is not first
    assert second.tiers["tier1_realtime"].rpo_minutes == 4


def test_env_var_selects_the_file(tmp_path: Path, bundled: Doc, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = copy.deepcopy(bundled)
    doc["organization"]["name"] = "OtherCo"
    monkeypatch.setenv("DR_ESTATE_CONFIG", str(write_doc(tmp_path, doc)))
    assert load_estate().name == "OtherCo"


def test_schema_is_valid_draft_2020_12() -> None:
    from jsonschema import Draft202012Validator

    schema = json.loads(validation.SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_closes_every_object() -> None:
    """additionalProperties everywhere, so a typo in any section is an error rather than ignored."""
    schema = json.loads(validation.SCHEMA_PATH.read_text(encoding="utf-8"))
    open_objects: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "additionalProperties" not in node:
                open_objects.append(where)
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}/{index}")

    walk(schema, "#")
    assert open_objects == []


def test_validator_is_compiled_once() -> None:
    assert validation._validator() is validation._validator()


def test_strict_loader_works_with_plain_yaml_load() -> None:
    assert yaml.load("a: 1\nb: [x, y]\n", Loader=validation._StrictLoader) == {"a": 1, "b": ["x", "y"]}
    with pytest.raises(Exception, match="duplicate key 'a'"):
        yaml.load("a: 1\nb: 2\na: 3\n", Loader=validation._StrictLoader)


def test_yaml_anchors_and_merge_keys_are_allowed(tmp_path: Path) -> None:
    """Duplicate-key detection must not trip over merge keys or aliases."""
    text = DEFAULT_ESTATE_PATH.read_text(encoding="utf-8")
    for old, new in (
        ("  check_interval_seconds: 30\n", "  <<: {check_interval_seconds: 30}\n"),
        ("    namespace: leanvibe-data\n", "    namespace: &data_ns leanvibe-data\n"),
        ("[leanvibe-production, leanvibe-workers]", "[leanvibe-production, leanvibe-workers, *data_ns]"),
    ):
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / "estate.yaml"
    path.write_text(text, encoding="utf-8")
    estate = load_estate(path)
    assert estate.health["check_interval_seconds"] == 30
    assert estate.kubernetes["namespaces"][-1] == "leanvibe-data"


# -- one clear error per kind of mistake -------------------------------------------------------


def _set(*keys: str | int, value: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        target: Any = doc
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return mutate


def _delete(*keys: str | int) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        target: Any = doc
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]

    return mutate


def _rename(*keys: str | int, new: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        target: Any = doc
        for key in keys[:-1]:
            target = target[key]
        target[new] = target.pop(keys[-1])

    return mutate


def _two_primaries(doc: Doc) -> None:
    doc["regions"]["us-west-2"]["role"] = "primary"


def _system_with(tier: str, name: str, **fields: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        system(doc, tier, name).update(fields)

    return mutate


def _drop_system_field(tier: str, name: str, field: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        del system(doc, tier, name)[field]

    return mutate


def _duplicate_system_name(doc: Doc) -> None:
    systems = doc["tiers"]["tier3_daily"]["systems"]
    systems[3]["name"] = systems[0]["name"]


def _drop_incident_level_4(doc: Doc) -> None:
    doc["incident_levels"] = [lv for lv in doc["incident_levels"] if lv["level"] != 4]


def _no_archive(doc: Doc) -> None:
    del doc["archive"]


def _sla_credit(index: int, **fields: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        doc["business_impact"]["sla_credits"][index].update(fields)

    return mutate


def _contact(name: str, *, drop: str | None = None, rename: str | None = None) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        contacts = doc["notifications"]["contacts"]
        if drop is not None:
            del contacts[name][drop]
        elif rename is not None:
            contacts[rename] = contacts.pop(name)
        else:
            del contacts[name]

    return mutate


def _stakeholder_in_both_audiences(doc: Doc) -> None:
    doc["stakeholders"]["external"][0]["group"] = "Marketing"


BAD_DOCS = [
    # --- structure, caught by the schema
    pytest.param(_delete("health"), "health", "is required", id="missing-section"),
    pytest.param(_set("tierz", value={}), "<root>", "unknown field 'tierz'", id="unknown-section"),
    pytest.param(
        _rename("tiers", "tier1_realtime", "rpo_minutes", new="rpo_minuts"),
        "tiers.tier1_realtime",
        "unknown field 'rpo_minuts' (allowed: dag_id, schedule, rpo_minutes",
        id="typo-in-field-name",
    ),
    pytest.param(_set("version", value=2), "version", "must be 1 (got 2)", id="version"),
    pytest.param(
        _set("tiers", "tier1_realtime", "rpo_minutes", value=-5),
        "tiers.tier1_realtime.rpo_minutes",
        "must be at least 1 (got -5)",
        id="negative-rpo",
    ),
    pytest.param(
        _set("tiers", "tier2_frequent", "retention_days", value="30"),
        "tiers.tier2_frequent.retention_days",
        "must be an integer (got string '30')",
        id="number-as-string",
    ),
    pytest.param(
        _set("tiers", "tier1_realtime", "compression", value="no"),
        "tiers.tier1_realtime.compression",
        "must be true or false",
        id="boolean-as-string",
    ),
    pytest.param(
        _rename("regions", "us-east-1", new="us-east-1a"),
        "regions.us-east-1a",
        "is not a valid key: must be an AWS region name",
        id="bad-region-name",
    ),
    pytest.param(
        _set("regions", "us-west-2", "role", value="tertiary"),
        "regions.us-west-2.role",
        "must be one of primary, secondary, dr (got 'tertiary')",
        id="bad-role",
    ),
    pytest.param(
        _set("regions", "us-east-1", "endpoint", "address", value="300.1.1.1"),
        "regions.us-east-1.endpoint.address",
        "must be an IPv4 address",
        id="bad-ipv4",
    ),
    pytest.param(
        _set("regions", "eu-west-1", "endpoint", "port", value=70000),
        "regions.eu-west-1.endpoint.port",
        "must be at most 65535 (got 70000)",
        id="port-too-high",
    ),
    pytest.param(
        _set("regions", "eu-west-1", "endpoint", "protocol", value="https"),
        "regions.eu-west-1.endpoint.protocol",
        "did you mean 'HTTPS'?",
        id="protocol-case",
    ),
    pytest.param(
        _set("regions", "us-east-1", "backup_bucket", value="LeanVibe_Backups"),
        "regions.us-east-1.backup_bucket",
        "must be an S3 bucket name",
        id="bad-bucket-name",
    ),
    pytest.param(
        _set("regions", "us-east-1", "backup_bucket", value="backups..prod"),
        "regions.us-east-1.backup_bucket",
        "no '..'",
        id="bucket-double-dot",
    ),
    pytest.param(
        _set("regions", "us-east-1", "kms_key_alias", value="leanvibe-dr"),
        "regions.us-east-1.kms_key_alias",
        "must be a KMS key alias",
        id="bad-kms-alias",
    ),
    pytest.param(
        _set("connections", "aws", value="aws dr"),
        "connections.aws",
        "must be an Airflow connection id",
        id="bad-connection-id",
    ),
    pytest.param(
        _rename("tiers", "tier1_realtime", "systems", 0, "database", new="databse"),
        "tiers.tier1_realtime.systems[0]",
        "unknown field 'databse' for type 'postgres_database' (allowed: name, type, database); did you mean 'database'?",
        id="typo-in-system-field",
    ),
    pytest.param(
        _delete("databases", "neo4j", "cluster"),
        "databases.neo4j.cluster",
        "is required (a database entry without 'engine' is a Neo4j cluster)",
        id="neo4j-missing-field",
    ),
    pytest.param(
        _set("tiers", value={}),
        "tiers",
        "must have at least 1 entry (got 0)",
        id="no-tiers",
    ),
    pytest.param(
        _set("kubernetes", "namespaces", value=["leanvibe-production", "leanvibe-production"]),
        "kubernetes.namespaces",
        "must not contain duplicates ('leanvibe-production' appears more than once)",
        id="duplicate-namespace",
    ),
    pytest.param(
        _set("tiers", "tier3_daily", "storage_class", value="GLACIER_DEEP"),
        "tiers.tier3_daily.storage_class",
        "must be one of STANDARD, STANDARD_IA",
        id="bad-storage-class",
    ),
    pytest.param(
        _set("tiers", "tier3_daily", "encryption", value="kms"),
        "tiers.tier3_daily.encryption",
        "must be one of aws:kms, AES256 (got 'kms')",
        id="bad-encryption",
    ),
    pytest.param(
        _system_with("tier1_realtime", "user-sessions", type="memcached_keys"),
        "tiers.tier1_realtime.systems[2].type",
        "must be one of postgres_database",
        id="bad-system-type",
    ),
    pytest.param(
        _drop_system_field("tier2_frequent", "user-files", "bucket"),
        "tiers.tier2_frequent.systems[3].bucket",
        "is required (type s3_bucket needs: bucket)",
        id="system-missing-type-field",
    ),
    pytest.param(
        _system_with("tier1_realtime", "primary-database", bucket="leanvibe-user-files-prod"),
        "tiers.tier1_realtime.systems[0]",
        "unknown field 'bucket' for type 'postgres_database' (allowed: name, type, database)",
        id="system-field-of-other-type",
    ),
    pytest.param(
        _system_with("tier2_frequent", "kubernetes-objects", kinds="everything"),
        "tiers.tier2_frequent.systems[1].kinds",
        "must be 'all' or a non-empty list of Kubernetes kinds (got 'everything')",
        id="kinds-not-all-or-list",
    ),
    pytest.param(
        _set("route53", "health_check", "type", value="HTTPS_STRING"),
        "route53.health_check.type",
        "must be one of HTTP, HTTPS, HTTP_STR_MATCH, HTTPS_STR_MATCH, TCP",
        id="bad-health-check-type",
    ),
    pytest.param(
        _set("route53", "health_check", "request_interval_seconds", value=15),
        "route53.health_check.request_interval_seconds",
        "must be one of 10, 30 (got 15)",
        id="bad-request-interval",
    ),
    pytest.param(
        _set("route53", "health_check", "failure_threshold", value=11),
        "route53.health_check.failure_threshold",
        "must be at most 10 (got 11)",
        id="failure-threshold-too-high",
    ),
    pytest.param(
        _set("route53", "health_check", "type", value="HTTPS_STR_MATCH"),
        "route53.health_check.search_string",
        "is required (string-matching health checks need a search_string)",
        id="str-match-needs-search-string",
    ),
    pytest.param(
        _set("route53", "health_check", "checker_regions", value=["us-east-1", "us-west-2"]),
        "route53.health_check.checker_regions",
        "must have at least 3 items (got 2)",
        id="too-few-checker-regions",
    ),
    pytest.param(
        _set("route53", "ttl_seconds", value=-1),
        "route53.ttl_seconds",
        "must be at least 0 (got -1)",
        id="negative-ttl",
    ),
    pytest.param(
        _set("route53", "failover_records", 1, "failover", value="Secondary"),
        "route53.failover_records[1].failover",
        "must be one of PRIMARY, SECONDARY (got 'Secondary'); did you mean 'SECONDARY'?",
        id="bad-failover-value",
    ),
    pytest.param(
        _set("health", "healthy_score", value=0),
        "health.healthy_score",
        "must be greater than 0 (got 0)",
        id="healthy-score-zero",
    ),
    pytest.param(
        _set("health", "thresholds", "error_rate", value=1.5),
        "health.thresholds.error_rate",
        "must be at most 1 (got 1.5)",
        id="share-above-one",
    ),
    pytest.param(
        _set("stakeholders", "internal", 0, "channels", value=["phone", "pager"]),
        "stakeholders.internal[0].channels[1]",
        "must be one of email, phone, chat, sms, status_page, formal_notice, sns (got 'pager')",
        id="bad-channel",
    ),
    pytest.param(
        _set("stakeholders", "internal", 0, "from_level", value=5),
        "stakeholders.internal[0].from_level",
        "must be at most 4 (got 5)",
        id="stakeholder-level-out-of-range",
    ),
    pytest.param(
        _delete("stakeholders", "internal", 1, "from_level"),
        "stakeholders.internal[1].from_level",
        "is required (a contact without 'when' needs notify_within_minutes and from_level)",
        id="stakeholder-without-level-or-when",
    ),
    pytest.param(
        _set("business_impact", "sla_credits", 0, "credit", value=1.5),
        "business_impact.sla_credits[0].credit",
        "must be at most 1 (got 1.5)",
        id="credit-above-one",
    ),
    pytest.param(
        _set("failover_authorization", "allowed_requesters", value=[]),
        "failover_authorization.allowed_requesters",
        "must have at least 1 item (got 0)",
        id="no-requesters",
    ),
    pytest.param(
        _set("failover_authorization", "approval_required_levels", value=[1, 5]),
        "failover_authorization.approval_required_levels[1]",
        "must be at most 4 (got 5)",
        id="approval-level-out-of-range",
    ),
    pytest.param(
        _set("databases", "neo4j", "bolt_uri", value="http://neo4j:7474"),
        "databases.neo4j.bolt_uri",
        "must be a Bolt URI",
        id="bad-bolt-uri",
    ),
    # --- cross-field rules
    pytest.param(
        _two_primaries,
        "regions.us-west-2.role",
        "role 'primary' is already taken by region 'us-east-1'",
        id="two-primary-regions",
    ),
    pytest.param(_delete("regions", "eu-west-1"), "regions", "no region has role 'dr'", id="no-dr-region"),
    pytest.param(
        _set("regions", "us-west-2", "backup_bucket", value="leanvibe-backups-prod"),
        "regions.us-west-2.backup_bucket",
        "already the backup bucket of region 'us-east-1'",
        id="shared-backup-bucket",
    ),
    pytest.param(
        _set("regions", "us-west-2", "capacity", "serving_desired", value=2),
        "regions.us-west-2.capacity.serving_desired",
        "2 is below serving_min 6",
        id="serving-capacity-below-min",
    ),
    pytest.param(
        _delete("regions", "eu-west-1", "load_balancer"),
        "regions.eu-west-1.load_balancer",
        "is required",
        id="region-without-load-balancer",
    ),
    pytest.param(
        _set("sessions", "key_prefix", value="session:*"),
        "sessions.key_prefix",
        "without glob characters",
        id="session-prefix-with-glob",
    ),
    pytest.param(
        _set("archive", "buckets", "ap-south-1", value="leanvibe-archive-ap-south-1"),
        "archive.buckets.ap-south-1",
        "region 'ap-south-1' is not defined in regions (defined: us-east-1, us-west-2, eu-west-1)",
        id="archive-region-undefined",
    ),
    pytest.param(
        _set("databases", "primary", "region", value="us-east-2"),
        "databases.primary.region",
        "region 'us-east-2' is not defined in regions",
        id="database-region-undefined",
    ),
    pytest.param(
        _set("databases", "primary", "replica", "region", value="us-east-1"),
        "databases.primary.replica.region",
        "must differ from the database's own region 'us-east-1'",
        id="replica-in-same-region",
    ),
    pytest.param(
        _set("tiers", "tier2_frequent", "dag_id", value="backup_tier1_realtime"),
        "tiers.tier2_frequent.dag_id",
        "dag_id 'backup_tier1_realtime' is already used by tiers.tier1_realtime",
        id="duplicate-dag-id",
    ),
    pytest.param(
        _set("tiers", "tier1_realtime", "schedule", value="*/5 * * *"),
        "tiers.tier1_realtime.schedule",
        "must be a 5-field cron expression",
        id="cron-four-fields",
    ),
    pytest.param(
        _set("tiers", "tier3_daily", "schedule", value="0 25 * * *"),
        "tiers.tier3_daily.schedule",
        "hour field '25': 25 is out of range 0-23",
        id="cron-out-of-range",
    ),
    pytest.param(
        _set("tiers", "tier4_archival", "retention_days", value=6),
        "tiers.tier4_archival.retention_days",
        "6 days is shorter than rpo_minutes 10080",
        id="retention-shorter-than-rpo",
    ),
    pytest.param(
        _no_archive,
        "tiers.tier4_archival.object_lock",
        "needs archive buckets",
        id="object-lock-without-archive",
    ),
    pytest.param(
        _duplicate_system_name,
        "tiers.tier3_daily.systems[3].name",
        "system name 'full-snapshot' is already used by systems[0]",
        id="duplicate-system-name",
    ),
    pytest.param(
        _system_with("tier1_realtime", "primary-database", database="orders"),
        "tiers.tier1_realtime.systems[0].database",
        "database 'orders' is not defined in databases (defined: primary, neo4j",
        id="unknown-database",
    ),
    pytest.param(
        _system_with("tier3_daily", "neo4j-cluster", database="primary"),
        "tiers.tier3_daily.systems[1].database",
        "type 'neo4j' needs a Neo4j cluster",
        id="database-of-wrong-kind",
    ),
    pytest.param(
        _system_with("tier2_frequent", "application-config", kinds=["ConfigMap", "CronJob"]),
        "tiers.tier2_frequent.systems[0].kinds[1]",
        "kind 'CronJob' is not listed in kubernetes.resource_kinds",
        id="kind-not-in-resource-kinds",
    ),
    pytest.param(
        _system_with("tier3_daily", "full-snapshot", copy_to_region="us-east-1"),
        "tiers.tier3_daily.systems[0].copy_to_region",
        "must differ from the database's region 'us-east-1'",
        id="snapshot-copy-same-region",
    ),
    pytest.param(
        _system_with("tier3_daily", "full-snapshot", copy_to_region="ap-south-1"),
        "tiers.tier3_daily.systems[0].copy_to_region",
        "region 'ap-south-1' is not defined in regions",
        id="snapshot-copy-region-undefined",
    ),
    pytest.param(
        _set("route53", "record_name", value="api.example.com"),
        "route53.record_name",
        "'api.example.com' is not inside hosted_zone 'leanvibe.ai'",
        id="record-outside-zone",
    ),
    pytest.param(
        _set("route53", "failover_records", 1, "region", value="us-east-2"),
        "route53.failover_records[1].region",
        "region 'us-east-2' is not defined in regions (defined: us-east-1, us-west-2, eu-west-1)",
        id="failover-region-undefined",
    ),
    pytest.param(
        _set("route53", "failover_records", 1, "failover", value="PRIMARY"),
        "route53.failover_records[1].failover",
        "a PRIMARY record is already defined at failover_records[0]",
        id="two-primary-records",
    ),
    pytest.param(
        _set("route53", "failover_records", 0, "region", value="eu-west-1"),
        "route53.failover_records[0].region",
        "must point at the primary-role region 'us-east-1'",
        id="primary-record-not-primary-region",
    ),
    pytest.param(
        _set("route53", "failover_records", 1, "set_identifier", value="primary-us-east-1"),
        "route53.failover_records[1].set_identifier",
        "set_identifier 'primary-us-east-1' is already used",
        id="duplicate-set-identifier",
    ),
    pytest.param(
        _set("incident_levels", 3, "level", value=3),
        "incident_levels[3].level",
        "level 3 is already defined at incident_levels[2]",
        id="duplicate-incident-level",
    ),
    pytest.param(_drop_incident_level_4, "incident_levels", "(missing: 4)", id="missing-incident-level"),
    pytest.param(
        _set("incident_levels", 2, "max_infrastructure_share", value=0.2),
        "incident_levels[2].max_infrastructure_share",
        "must be at least 0.25",
        id="share-decreases",
    ),
    pytest.param(
        _set("incident_levels", 3, "rto_minutes", value=30),
        "incident_levels[3].rto_minutes",
        "the RTO cannot decrease",
        id="rto-decreases",
    ),
    pytest.param(
        _set("stakeholders", "external", 3, "from_level", value=2),
        "stakeholders.external[3].from_level",
        "cannot be combined with when: as_needed",
        id="stakeholder-level-and-when",
    ),
    pytest.param(
        _set("business_impact", "customer_distribution", "developer", value=0.4),
        "business_impact.customer_distribution",
        "shares must add up to 1.0 (got 0.9)",
        id="distribution-sum",
    ),
    pytest.param(
        _rename("business_impact", "customer_distribution", "team", new="teams"),
        "business_impact.customer_distribution.teams",
        "is not a customer tier of hourly_revenue (tiers: enterprise, team, developer)",
        id="distribution-keys",
    ),
    pytest.param(
        _sla_credit(2, below_uptime_percent=99.95),
        "business_impact.sla_credits[2].below_uptime_percent",
        "thresholds must strictly decrease",
        id="sla-thresholds-not-decreasing",
    ),
    pytest.param(
        _sla_credit(2, credit=0.25),
        "business_impact.sla_credits[2].credit",
        "must be above the previous credit 0.25",
        id="sla-credits-not-increasing",
    ),
    pytest.param(
        _set("failover_authorization", "approvers", value=[]),
        "failover_authorization.approvers",
        "must name at least one approver",
        id="approval-without-approvers",
    ),
    pytest.param(
        _contact("CEO", drop="phone"),
        "notifications.contacts.CEO",
        "no address for channel 'phone' that the stakeholder matrix uses (stakeholders.internal[0].channels)",
        id="role-without-channel",
    ),
    pytest.param(
        _contact("VP Engineering", drop="email"),
        'notifications.contacts."VP Engineering"',
        "no address for channel 'email'",
        id="role-with-space-without-channel",
    ),
    pytest.param(
        _contact("Regulatory Bodies", drop="formal_notice"),
        'notifications.contacts."Regulatory Bodies"',
        "no address for channel 'formal_notice'",
        id="as-required-group-without-channel",
    ),
    pytest.param(
        _contact("Developer Customers"),
        "notifications.contacts",
        "has no entry for stakeholder 'Developer Customers' (stakeholders.external[2] reaches it by status_page)",
        id="stakeholder-without-contact",
    ),
    pytest.param(
        _contact("Marketing", rename="Marketting"),
        "notifications.contacts.Marketting",
        "is not a stakeholder of the matrix (stakeholders: CEO, CTO,",
        id="contact-names-unknown-stakeholder",
    ),
    pytest.param(
        _contact("Marketing", rename="Marketting"),
        "notifications.contacts.Marketting",
        "did you mean 'Marketing'?",
        id="contact-typo-suggestion",
    ),
    pytest.param(
        _stakeholder_in_both_audiences,
        "stakeholders.external[0].group",
        "'Marketing' is already listed at stakeholders.internal[5]",
        id="stakeholder-name-in-both-audiences",
    ),
    pytest.param(
        _set("notifications", "failure_levels", "dags", "regional failover", value=3),
        'notifications.failure_levels.dags."regional failover"',
        "is not a valid DAG id",
        id="failure-level-bad-dag-id",
    ),
    pytest.param(
        _set("notifications", "failure_levels", "dags", "x" * 251, value=3),
        "notifications.failure_levels.dags." + "x" * 251,
        "at most 250",
        id="failure-level-dag-id-too-long",
    ),
    pytest.param(
        _set("drills", "report_bucket", value="leanvibe-backups-prod"),
        "drills.report_bucket",
        "is not one of archive.buckets",
        id="drill-report-bucket-not-object-locked",
    ),
    pytest.param(
        _set("drills", "record_domain", value="drill.example.com"),
        "drills.record_domain",
        "is not inside route53.hosted_zone 'leanvibe.ai'",
        id="drill-records-outside-the-zone",
    ),
    pytest.param(
        _set("drills", "stakeholders", value=["CTO", "Janitor"]),
        "drills.stakeholders[1]",
        "'Janitor' is not in the stakeholder matrix",
        id="drill-stakeholder-unknown",
    ),
    pytest.param(
        _set("drills", "stack", "ap-south-1", value={"address": "198.51.100.140", "port": 443}),
        "drills.stack.ap-south-1",
        "region 'ap-south-1' is not defined in regions",
        id="drill-stack-unknown-region",
    ),
    pytest.param(
        _set("drills", "objectives", "region_outage", "rto_minutes", value=0),
        "drills.objectives.region_outage.rto_minutes",
        "greater than 0",
        id="drill-objective-zero-rto",
    ),
    pytest.param(
        _set("notifications", "failure_levels", "dags", "regional_failover\n", value=3),
        "notifications.failure_levels.dags.regional_failover\n",
        "is not a valid DAG id",
        id="failure-level-dag-id-trailing-newline",
    ),
]


@pytest.mark.parametrize(("mutate", "field_path", "reason"), BAD_DOCS)
def test_bad_config_names_field_and_reason(
    tmp_path: Path, bundled: Doc, mutate: Callable[[Doc], None], field_path: str, reason: str
) -> None:
    doc = copy.deepcopy(bundled)
    mutate(doc)
    path = write_doc(tmp_path, doc)
    error = load_error(path)
    assert error.field_path == field_path, error.reason
    assert reason in error.reason
    assert str(error) == f"Invalid estate config {path}: {field_path}: {error.reason}"


def test_at_least_twenty_kinds_of_mistake() -> None:
    assert len({p.id for p in BAD_DOCS}) == len(BAD_DOCS) >= 20


# -- YAML-level and I/O mistakes ----------------------------------------------------------------


def _bundled_text_with(old: str, new: str) -> str:
    text = DEFAULT_ESTATE_PATH.read_text(encoding="utf-8")
    assert old in text
    return text.replace(old, new, 1)


BAD_TEXTS = [
    pytest.param(
        lambda: _bundled_text_with("    rpo_minutes: 5\n", "    rpo_minutes: 5\n    rpo_minutes: 10\n"),
        "tiers.tier1_realtime.rpo_minutes",
        "duplicate key 'rpo_minutes' at line",
        id="duplicate-key",
    ),
    pytest.param(
        lambda: _bundled_text_with("  us-west-2:\n", "  us-east-1:\n"),
        "regions.us-east-1",
        "YAML would silently keep only the last one",
        id="duplicate-region",
    ),
    pytest.param(
        lambda: "version: 1\nregions: [us-east-1, us-west-2\n",
        "<file>",
        "is not valid YAML at line 3, column 1",
        id="syntax-error",
    ),
    pytest.param(
        lambda: "version: 1\n  organization: x\n",
        "<file>",
        "is not valid YAML at line 2",
        id="bad-indentation",
    ),
    pytest.param(lambda: "", "<root>", "the file is empty", id="empty-file"),
    pytest.param(lambda: "# only a comment\n", "<root>", "the file is empty", id="comment-only"),
    pytest.param(lambda: "~\n", "<root>", "the document is empty", id="null-document"),
    pytest.param(
        lambda: "- version: 1\n- regions: {}\n",
        "<root>",
        "must be a mapping of sections (got a list)",
        id="list-at-root",
    ),
    pytest.param(lambda: "just text\n", "<root>", "(got string 'just text')", id="scalar-at-root"),
    pytest.param(
        lambda: "version: 1\n---\nversion: 1\n",
        "<file>",
        "expected a single document",
        id="two-documents",
    ),
    pytest.param(
        lambda: _bundled_text_with("  tier1_realtime:\n", "  1:\n"),
        "tiers",
        "key '1' at line",
        id="non-string-key",
    ),
    pytest.param(
        lambda: _bundled_text_with("      - {name: user-sessions,", "      - {name: user-sessions, yes: 1,"),
        "tiers.tier1_realtime.systems[2]",
        "YAML reads it as bool",
        id="yaml-bool-key",
    ),
]


@pytest.mark.parametrize(("make_text", "field_path", "reason"), BAD_TEXTS)
def test_bad_yaml_names_field_and_reason(
    tmp_path: Path, make_text: Callable[[], str], field_path: str, reason: str
) -> None:
    path = tmp_path / "estate.yaml"
    path.write_text(make_text(), encoding="utf-8")
    error = load_error(path)
    assert (error.field_path, error.path) == (field_path, str(path)), error.reason
    assert reason in error.reason
    assert str(error).startswith(f"Invalid estate config {path}: {field_path}: ")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    error = load_error(path)
    assert error.field_path == "<file>"
    assert "cannot be read (No such file or directory)" in error.reason
    assert str(error).startswith(f"Invalid estate config {path}: <file>: ")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    error = load_error(tmp_path)
    assert error.field_path == "<file>"
    assert "cannot be read" in error.reason


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "estate.yaml"
    path.write_bytes(b"version: 1\norganization: {name: \xff\xfe}\n")
    error = load_error(path)
    assert (error.field_path, error.reason) == ("<file>", "is not UTF-8 text (byte 32)")


def test_error_is_a_value_error_with_parts(tmp_path: Path, bundled: Doc) -> None:
    doc = copy.deepcopy(bundled)
    doc["route53"]["health_check"]["port"] = 0
    error = load_error(write_doc(tmp_path, doc))
    assert isinstance(error, ValueError)
    assert (error.field_path, error.reason) == ("route53.health_check.port", "must be at least 1 (got 0)")


# -- cron validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("*/5 * * * *", None),
        ("0 1 * * 0", None),
        ("0,30 8-18/2 1 JAN-JUN mon-fri", None),
        ("0 0 * * 7", None),
        ("@daily", "must be a 5-field cron expression"),
        ("0 0 0 * * *", "got 6 field(s)"),
        ("60 * * * *", "minute field '60': 60 is out of range 0-59"),
        ("* * 0 * *", "day-of-month field '0': 0 is out of range 1-31"),
        ("* * * 13 *", "month field '13': 13 is out of range 1-12"),
        ("*/0 * * * *", "has a step of 0"),
        ("5-1 * * * *", "range start is after its end"),
        ("* * * FOO *", "'FOO' is not a number"),
        ("? * * * *", "is not a number, range, list"),
    ],
)
@pytest.mark.parametrize("with_croniter", [True, False], ids=["croniter", "fallback"])
def test_cron_error(
    expression: str, problem: str | None, with_croniter: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not with_croniter:
        monkeypatch.setattr(validation, "_croniter", lambda: None)
    else:
        assert validation._croniter() is not None  # pinned in requirements.txt
    result = validation.cron_error(expression)
    if problem is None:
        assert result is None
    else:
        assert result is not None and problem in result
