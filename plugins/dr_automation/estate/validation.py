"""Parse and validate an estate config: strict YAML, then JSON Schema, then cross-field rules.

A broken estate file breaks every DAG of the bundle at import time, so the one message it produces
must point at the exact field and say what is wrong in plain words. Hence: duplicate YAML keys are
refused (PyYAML silently keeps the last one), only the single most relevant schema error is reported
(re-worded from jsonschema's), and rules a schema cannot express (references between sections,
orderings, sums) are checked in Python in document order, each with its own message.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dr_automation.estate.model import BUNDLE_ROOT, EstateConfigError

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

SCHEMA_PATH = BUNDLE_ROOT / "include" / "estate" / "schema.json"
ROLES = ("primary", "secondary", "dr")
INCIDENT_LEVELS = (1, 2, 3, 4)
SHARE_TOLERANCE = 0.001

PathPart = str | int


class _Problem(Exception):
    """One violated rule; turned into EstateConfigError once the file path is known."""

    def __init__(self, path: Sequence[PathPart], reason: str) -> None:
        super().__init__(reason)
        self.path = tuple(path)
        self.reason = reason


def parse_and_validate(path: Path) -> dict[str, Any]:
    """Return the parsed document, or raise EstateConfigError naming the field path and the reason."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise EstateConfigError(path, "<file>", f"is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise EstateConfigError(path, "<file>", f"cannot be read ({exc.strerror or exc})") from None
    try:
        document = _load_yaml(text)
        _check_schema(document)
        _check_cross_fields(document)
    except _Problem as problem:
        raise EstateConfigError(path, format_path(problem.path), problem.reason) from None
    except _YamlSyntaxError as exc:
        raise EstateConfigError(path, "<file>", str(exc)) from None
    return document


def format_path(parts: Iterable[PathPart]) -> str:
    """`tiers.tier1_realtime.rpo_minutes`, `route53.failover_records[1].region`, or `<root>`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            if not text or any(c in text for c in ".[] "):
                text = json.dumps(text)
            out += f".{text}" if out else text
    return out or "<root>"


# -- YAML ----------------------------------------------------------------------------------------


class _YamlSyntaxError(Exception):
    pass


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe loader that refuses duplicate and non-string keys (PyYAML keeps the last duplicate).

    The check runs on the composed node tree, before construction, so the error can still name the
    field path and the line of both occurrences. Works with `yaml.load(text, Loader=_StrictLoader)`.
    """

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            _check_keys(node, (), set())
        return node


_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _where(node: yaml.Node) -> str:
    return f"line {node.start_mark.line + 1}, column {node.start_mark.column + 1}"


def _check_keys(node: yaml.Node, path: tuple[PathPart, ...], seen: set[int]) -> None:
    """Walk the composed tree (before construction, so paths and line numbers are still known)."""
    if id(node) in seen:  # an alias: already checked where the anchor was defined
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_at: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                _check_keys(value_node, path, seen)
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR_TAG:
                shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else "a complex key"
                raise _Problem(
                    path,
                    f"key {shown!r} at {_where(key_node)} is not a string (YAML reads it as "
                    f"{key_node.tag.rsplit(':', 1)[-1]}); quote it",
                )
            key = key_node.value
            if key in first_at:
                raise _Problem(
                    (*path, key),
                    f"duplicate key {key!r} at {_where(key_node)} (first defined at "
                    f"{_where(first_at[key])}); YAML would silently keep only the last one",
                )
            first_at[key] = key_node
            _check_keys(value_node, (*path, key), seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_keys(item, (*path, index), seen)


def _load_yaml(text: str) -> dict[str, Any]:
    loader = _StrictLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            raise _YamlSyntaxError(_describe_yaml_error(exc)) from None
        except yaml.YAMLError as exc:
            raise _YamlSyntaxError(f"is not valid YAML: {exc}") from None
        if node is None:
            raise _Problem(
                (), "the file is empty (expected a mapping of sections: version, regions, tiers, ...)"
            )
        try:
            document = loader.construct_document(node)
        except yaml.MarkedYAMLError as exc:
            raise _YamlSyntaxError(_describe_yaml_error(exc)) from None
    finally:
        loader.dispose()
    if document is None:
        raise _Problem(
            (), "the document is empty (expected a mapping of sections: version, regions, tiers, ...)"
        )
    if not isinstance(document, dict):
        raise _Problem((), f"must be a mapping of sections (got {_describe_type(document)})")
    return document


def _describe_yaml_error(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    what = "; ".join(part for part in (exc.context, exc.problem) if part)
    return f"is not valid YAML{where}: {what}"


# -- JSON Schema ---------------------------------------------------------------------------------


@functools.cache
def _validator() -> Draft202012Validator:
    """Compiled once per process: DAG files call load_estate at parse time.

    The schema itself is checked against the 2020-12 meta-schema by the unit tests, not here: that
    check costs ~80 ms, paid again by every DAG-file parse process.
    """
    from jsonschema import Draft202012Validator

    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        schema = json.load(fh)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _check_schema(document: dict[str, Any]) -> None:
    from jsonschema.exceptions import best_match

    errors = list(_validator().iter_errors(document))
    error = best_match(errors)
    if error is None:
        return
    if error.validator == "required":
        # A misspelt field is both "unknown" and "missing"; the unknown-field message names the typo.
        siblings = [e for e in errors if e.absolute_path == error.absolute_path]
        per_type = [
            e for e in siblings if "propertyNames" in e.absolute_schema_path and e.validator == "enum"
        ]
        unknown = [e for e in siblings if e.validator == "additionalProperties"]
        error = (per_type or unknown or [error])[0]
    raise _Problem(*_explain(error, document))


_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _describe_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"string {_short(value)}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    return f"{type(value).__name__} {_short(value)}"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _got(value: Any) -> str:
    return f"(got {_short(value)})" if not isinstance(value, bool) else f"(got {_describe_type(value)})"


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"


def _suggest(name: str, candidates: Iterable[str]) -> str:
    by_lower = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"; did you mean {by_lower[close[0]]!r}?" if close else ""


def _explain(error: ValidationError, document: Mapping[str, Any]) -> tuple[list[PathPart], str]:
    """Turn jsonschema's error into (field path, reason in plain words)."""
    # A described anyOf/oneOf (e.g. "'all' or a list of kinds") says more than any of its branches.
    node: ValidationError | None = error
    while node is not None:
        if node.validator in ("anyOf", "oneOf") and "description" in node.schema:
            return list(node.absolute_path), f"must be {node.schema['description']} {_got(node.instance)}"
        node = node.parent

    path: list[PathPart] = list(error.absolute_path)
    kind, expected, instance, schema = error.validator, error.validator_value, error.instance, error.schema
    schema_path = list(error.absolute_schema_path)

    if "propertyNames" in schema_path:
        return _explain_property_name(error, path, document)
    if kind == "required":
        missing = next(name for name in expected if name not in instance)
        why = f" ({schema['x-why-required']})" if "x-why-required" in schema else ""
        return [*path, missing], f"is required{why}"
    if kind == "additionalProperties" and expected is False:
        allowed = list(schema.get("properties", {}))
        patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
        extra = next(
            key for key in instance if key not in allowed and not any(p.search(str(key)) for p in patterns)
        )
        return path, f"unknown field {extra!r} (allowed: {', '.join(allowed)}){_suggest(str(extra), allowed)}"
    if kind == "type":
        types = expected if isinstance(expected, list) else [expected]
        wanted = " or ".join(_TYPE_NAMES.get(t, t) for t in types)
        return path, f"must be {wanted} (got {_describe_type(instance)})"
    if kind == "enum":
        options = ", ".join(str(option) for option in expected)
        hint = _suggest(str(instance), [str(o) for o in expected]) if isinstance(instance, str) else ""
        return path, f"must be one of {options} {_got(instance)}{hint}"
    if kind == "const":
        return path, f"must be {expected!r} {_got(instance)}"
    if kind in ("pattern", "format"):
        if "description" in schema:
            return path, f"must be {schema['description']} {_got(instance)}"
        if kind == "format":
            return path, f"must be a valid {expected} {_got(instance)}"
        return path, f"must match the pattern {expected} {_got(instance)}"
    bounds = {
        "minimum": "at least",
        "maximum": "at most",
        "exclusiveMinimum": "greater than",
        "exclusiveMaximum": "less than",
    }
    if kind in bounds:
        return path, f"must be {bounds[kind]} {expected} (got {instance})"
    if kind in ("minLength", "maxLength"):
        bound = "at least" if kind == "minLength" else "at most"
        return path, f"must be {bound} {_plural(expected, 'character')} long (got {len(instance)})"
    if kind in ("minItems", "maxItems"):
        bound = "at least" if kind == "minItems" else "at most"
        return path, f"must have {bound} {_plural(expected, 'item')} (got {len(instance)})"
    if kind in ("minProperties", "maxProperties"):
        bound = "at least" if kind == "minProperties" else "at most"
        return path, f"must have {bound} {_plural(expected, 'entry', 'entries')} (got {len(instance)})"
    if kind == "uniqueItems":
        seen: list[Any] = []
        for item in instance:
            if item in seen:
                return path, f"must not contain duplicates ({_short(item)} appears more than once)"
            seen.append(item)
    if "description" in schema:
        return path, f"must be {schema['description']} {_got(instance)}"
    return path, error.message


def _explain_property_name(
    error: ValidationError, path: list[PathPart], document: Mapping[str, Any]
) -> tuple[list[PathPart], str]:
    name = error.instance
    if error.validator == "enum":  # a per-type field list (systems)
        allowed = [str(a) for a in error.validator_value]
        owner: Any = document
        for part in path:
            owner = owner[part]
        type_name = owner.get("type", "?") if isinstance(owner, Mapping) else "?"
        return path, (
            f"unknown field {name!r} for type {type_name!r} (allowed: {', '.join(allowed)})"
            f"{_suggest(str(name), allowed)}"
        )
    description = error.schema.get("description", "a valid name")
    return [*path, name], f"is not a valid key: must be {description}"


# -- cross-field rules ---------------------------------------------------------------------------


def _check_cross_fields(doc: dict[str, Any]) -> None:
    """Rules between fields, in document order so the first problem in the file is the one reported."""
    checks: tuple[Callable[[dict[str, Any]], None], ...] = (
        _check_regions,
        _check_archive,
        _check_databases,
        _check_kubernetes,
        _check_tiers,
        _check_route53,
        _check_incident_levels,
        _check_stakeholders,
        _check_notifications,
        _check_business_impact,
        _check_failover_authorization,
        _check_verification,
        _check_drills,
    )
    for check in checks:
        check(doc)


def _region_names(doc: Mapping[str, Any]) -> list[str]:
    return list(doc["regions"])


def _require_region(doc: Mapping[str, Any], path: Sequence[PathPart], region: str) -> None:
    names = _region_names(doc)
    if region not in names:
        raise _Problem(path, f"region {region!r} is not defined in regions (defined: {', '.join(names)})")


def _check_regions(doc: Mapping[str, Any]) -> None:
    holder: dict[str, str] = {}
    for name, spec in doc["regions"].items():
        role = spec["role"]
        if role in holder:
            raise _Problem(
                ("regions", name, "role"),
                f"role {role!r} is already taken by region {holder[role]!r} (exactly one region per role)",
            )
        holder[role] = name
    for role in ROLES:
        if role not in holder:
            raise _Problem(
                ("regions",),
                f"no region has role {role!r} (exactly one region each for {', '.join(ROLES)})",
            )
    buckets: dict[str, str] = {}
    for name, spec in doc["regions"].items():
        bucket = spec["backup_bucket"]
        if bucket in buckets:
            raise _Problem(
                ("regions", name, "backup_bucket"),
                f"bucket {bucket!r} is already the backup bucket of region {buckets[bucket]!r} "
                "(S3 bucket names are global: one bucket cannot live in two regions)",
            )
        buckets[bucket] = name
    for name, spec in doc["regions"].items():
        capacity = spec["capacity"]
        if capacity["serving_desired"] < capacity["serving_min"]:
            raise _Problem(
                ("regions", name, "capacity", "serving_desired"),
                f"{capacity['serving_desired']} is below serving_min {capacity['serving_min']}",
            )


def _check_archive(doc: Mapping[str, Any]) -> None:
    archive = doc.get("archive")
    if not archive:
        return
    backup = {spec["backup_bucket"]: name for name, spec in doc["regions"].items()}
    seen: dict[str, str] = {}
    for region, bucket in archive["buckets"].items():
        _require_region(doc, ("archive", "buckets", region), region)
        if bucket in backup:
            raise _Problem(
                ("archive", "buckets", region),
                f"bucket {bucket!r} is also the backup bucket of region {backup[bucket]!r}; "
                "the Object Lock archive needs its own buckets",
            )
        if bucket in seen:
            raise _Problem(
                ("archive", "buckets", region),
                f"bucket {bucket!r} is already the archive bucket of region {seen[bucket]!r} "
                "(S3 bucket names are global)",
            )
        seen[bucket] = region


def _is_rds(spec: Mapping[str, Any]) -> bool:
    return "engine" in spec


def _check_databases(doc: Mapping[str, Any]) -> None:
    for key, spec in doc["databases"].items():
        if not _is_rds(spec):
            continue
        _require_region(doc, ("databases", key, "region"), spec["region"])
        replica = spec.get("replica")
        if replica:
            _require_region(doc, ("databases", key, "replica", "region"), replica["region"])
            if replica["region"] == spec["region"]:
                raise _Problem(
                    ("databases", key, "replica", "region"),
                    f"must differ from the database's own region {spec['region']!r} "
                    "(a replica in the same region does not survive a regional outage)",
                )
            if replica["rds_instance_id"] == spec["rds_instance_id"]:
                raise _Problem(
                    ("databases", key, "replica", "rds_instance_id"),
                    f"must differ from the primary instance id {spec['rds_instance_id']!r}",
                )


def _check_kubernetes(doc: Mapping[str, Any]) -> None:
    seen: dict[str, int] = {}
    for index, spec in enumerate(doc["kubernetes"]["resource_kinds"]):
        kind = spec["kind"]
        if kind in seen:
            raise _Problem(
                ("kubernetes", "resource_kinds", index, "kind"),
                f"kind {kind!r} is already listed at kubernetes.resource_kinds[{seen[kind]}]",
            )
        seen[kind] = index


_SYSTEM_DATABASE_ENGINE = {
    "postgres_database": "rds",
    "postgres_wal": "rds",
    "rds_snapshot": "rds",
    "neo4j": "neo4j",
}


def _check_tiers(doc: Mapping[str, Any]) -> None:
    dag_ids: dict[str, str] = {}
    known_kinds = [spec["kind"] for spec in doc["kubernetes"]["resource_kinds"]]
    for key, tier in doc["tiers"].items():
        base = ("tiers", key)
        dag_id = tier["dag_id"]
        if dag_id in dag_ids:
            raise _Problem((*base, "dag_id"), f"dag_id {dag_id!r} is already used by tiers.{dag_ids[dag_id]}")
        dag_ids[dag_id] = key
        cron_problem = cron_error(tier["schedule"])
        if cron_problem:
            raise _Problem((*base, "schedule"), cron_problem)
        if tier["retention_days"] * 1440 < tier["rpo_minutes"]:
            raise _Problem(
                (*base, "retention_days"),
                f"{tier['retention_days']} days is shorter than rpo_minutes {tier['rpo_minutes']} "
                "(a backup would expire before the next one is due)",
            )
        if tier.get("object_lock") and not (doc.get("archive") or {}).get("buckets"):
            raise _Problem(
                (*base, "object_lock"),
                "needs archive buckets, but the config has no archive.buckets section",
            )
        _check_tier_retention(doc, base, tier)
        names: dict[str, int] = {}
        for index, system in enumerate(tier["systems"]):
            spath = (*base, "systems", index)
            name = system["name"]
            if name in names:
                raise _Problem(
                    (*spath, "name"),
                    f"system name {name!r} is already used by systems[{names[name]}] of this tier",
                )
            names[name] = index
            _check_system(doc, spath, system, known_kinds)


# S3's minimum storage duration per class: an object deleted earlier is billed for it anyway.
_MIN_STORAGE_DAYS = {
    "STANDARD_IA": 30,
    "ONEZONE_IA": 30,
    "GLACIER_IR": 90,
    "GLACIER": 90,
    "DEEP_ARCHIVE": 180,
}


def _check_tier_retention(
    doc: Mapping[str, Any], base: tuple[PathPart, ...], tier: Mapping[str, Any]
) -> None:
    days = tier["retention_days"]
    minimum = _MIN_STORAGE_DAYS.get(tier["storage_class"], 0)
    if days < minimum:
        raise _Problem(
            (*base, "retention_days"),
            f"{days} days is below the {minimum}-day minimum storage duration of storage_class "
            f"{tier['storage_class']} (deleting earlier is billed as if kept {minimum} days)",
        )
    archive = doc.get("archive") or {}
    if tier.get("object_lock") and archive.get("object_lock_years"):
        locked_days = archive["object_lock_years"] * 365
        if days < locked_days:
            raise _Problem(
                (*base, "retention_days"),
                f"{days} days is shorter than the archive's Object Lock of {archive['object_lock_years']} "
                f"years ({locked_days} days): expiry would be refused while the objects are locked",
            )


def _check_system(
    doc: Mapping[str, Any], spath: tuple[PathPart, ...], system: Mapping[str, Any], known_kinds: list[str]
) -> None:
    databases = doc["databases"]
    kind = system["type"]
    if "database" in system:
        db_key = system["database"]
        if db_key not in databases:
            raise _Problem(
                (*spath, "database"),
                f"database {db_key!r} is not defined in databases (defined: {', '.join(databases)})",
            )
        engine = "rds" if _is_rds(databases[db_key]) else "neo4j"
        wanted = _SYSTEM_DATABASE_ENGINE.get(kind)
        if wanted and wanted != engine:
            label = {"rds": "an RDS/PostgreSQL database (with 'engine')", "neo4j": "a Neo4j cluster"}
            raise _Problem(
                (*spath, "database"),
                f"type {kind!r} needs {label[wanted]}, but databases.{db_key} is {label[engine]}",
            )
    if kind == "kubernetes_objects" and system["kinds"] != "all":
        for index, name in enumerate(system["kinds"]):
            if name not in known_kinds:
                raise _Problem(
                    (*spath, "kinds", index),
                    f"kind {name!r} is not listed in kubernetes.resource_kinds "
                    f"(listed: {', '.join(known_kinds)}){_suggest(name, known_kinds)}",
                )
    if kind == "rds_snapshot" and "copy_to_region" in system:
        target = system["copy_to_region"]
        _require_region(doc, (*spath, "copy_to_region"), target)
        source = databases[system["database"]]["region"]
        if target == source:
            raise _Problem(
                (*spath, "copy_to_region"),
                f"must differ from the database's region {source!r} (a same-region copy adds no protection)",
            )


def _normalise_dns(name: str) -> str:
    return name.rstrip(".").lower()


def _check_route53(doc: Mapping[str, Any]) -> None:
    r53 = doc["route53"]
    zone, record = _normalise_dns(r53["hosted_zone"]), _normalise_dns(r53["record_name"])
    if record != zone and not record.endswith("." + zone):
        raise _Problem(
            ("route53", "record_name"),
            f"{r53['record_name']!r} is not inside hosted_zone {r53['hosted_zone']!r}",
        )
    first: dict[str, int] = {}
    identifiers: dict[str, int] = {}
    for index, item in enumerate(r53["failover_records"]):
        ipath = ("route53", "failover_records", index)
        role = item["failover"]
        if role in first:
            raise _Problem(
                (*ipath, "failover"),
                f"a {role} record is already defined at failover_records[{first[role]}] "
                "(need exactly one PRIMARY and one SECONDARY)",
            )
        first[role] = index
        ident = item["set_identifier"]
        if ident in identifiers:
            raise _Problem(
                (*ipath, "set_identifier"),
                f"set_identifier {ident!r} is already used by failover_records[{identifiers[ident]}]",
            )
        identifiers[ident] = index
        _require_region(doc, (*ipath, "region"), item["region"])
    primary_region = next(name for name, spec in doc["regions"].items() if spec["role"] == "primary")
    by_role = {item["failover"]: (index, item) for index, item in enumerate(r53["failover_records"])}
    p_index, p_item = by_role["PRIMARY"]
    if p_item["region"] != primary_region:
        raise _Problem(
            ("route53", "failover_records", p_index, "region"),
            f"the PRIMARY record must point at the primary-role region {primary_region!r} "
            f"(got {p_item['region']!r})",
        )
    s_index, s_item = by_role["SECONDARY"]
    if s_item["region"] == p_item["region"]:
        raise _Problem(
            ("route53", "failover_records", s_index, "region"),
            f"the SECONDARY record must point at another region than the PRIMARY ({p_item['region']!r})",
        )


def _check_incident_levels(doc: Mapping[str, Any]) -> None:
    levels = doc["incident_levels"]
    where: dict[int, int] = {}
    for index, item in enumerate(levels):
        level = item["level"]
        if level in where:
            raise _Problem(
                ("incident_levels", index, "level"),
                f"level {level} is already defined at incident_levels[{where[level]}]",
            )
        where[level] = index
    missing = [str(level) for level in INCIDENT_LEVELS if level not in where]
    if missing:
        raise _Problem(
            ("incident_levels",),
            f"levels 1, 2, 3 and 4 must each be defined once (missing: {', '.join(missing)})",
        )
    for field, label in (
        ("max_infrastructure_share", "share of infrastructure"),
        ("rto_minutes", "RTO"),
        ("rpo_minutes", "RPO"),
    ):
        for lower, higher in itertools.pairwise(INCIDENT_LEVELS):
            low, high = levels[where[lower]][field], levels[where[higher]][field]
            if high < low:
                raise _Problem(
                    ("incident_levels", where[higher], field),
                    f"must be at least {low} (level {lower}'s value): the {label} cannot decrease as "
                    f"the level rises (got {high})",
                )


def _check_stakeholders(doc: Mapping[str, Any]) -> None:
    for group, id_field in (("internal", "role"), ("external", "group")):
        seen: dict[str, int] = {}
        for index, item in enumerate(doc["stakeholders"][group]):
            ipath = ("stakeholders", group, index)
            if "when" in item:
                for field in ("from_level", "notify_within_minutes"):
                    if field in item:
                        raise _Problem(
                            (*ipath, field),
                            f"cannot be combined with when: {item['when']} "
                            "(a contact is either level-driven or as-needed)",
                        )
            name = item[id_field]
            if name in seen:
                raise _Problem(
                    (*ipath, id_field), f"{name!r} is already listed at stakeholders.{group}[{seen[name]}]"
                )
            seen[name] = index


def _check_notifications(doc: Mapping[str, Any]) -> None:
    """The address book must cover the stakeholder matrix exactly: routing never sends half a plan."""
    matrix: dict[str, tuple[str, int, Sequence[str]]] = {}
    for group, id_field in (("internal", "role"), ("external", "group")):
        for index, item in enumerate(doc["stakeholders"][group]):
            name = item[id_field]
            if name in matrix:
                other_group, other_index, _ = matrix[name]
                raise _Problem(
                    ("stakeholders", group, index, id_field),
                    f"{name!r} is already listed at stakeholders.{other_group}[{other_index}] "
                    "(notifications.contacts is keyed by name, so names must be unique across "
                    "internal and external)",
                )
            matrix[name] = (group, index, item["channels"])
    notifications = doc["notifications"]
    contacts = notifications["contacts"]
    for name in contacts:
        if name not in matrix:
            raise _Problem(
                ("notifications", "contacts", name),
                f"is not a stakeholder of the matrix (stakeholders: {', '.join(matrix)})"
                f"{_suggest(name, matrix)}",
            )
    for name, (group, index, channels) in matrix.items():
        if name not in contacts:
            raise _Problem(
                ("notifications", "contacts"),
                f"has no entry for stakeholder {name!r} (stakeholders.{group}[{index}] reaches it by "
                f"{', '.join(channels)})",
            )
        for channel in channels:
            if channel not in contacts[name]:
                raise _Problem(
                    ("notifications", "contacts", name),
                    f"no address for channel {channel!r} that the stakeholder matrix uses "
                    f"(stakeholders.{group}[{index}].channels)",
                )
    for dag_id in notifications["failure_levels"].get("dags", {}):
        if not _DAG_ID.fullmatch(dag_id):
            raise _Problem(
                ("notifications", "failure_levels", "dags", dag_id),
                "is not a valid DAG id: at most 250 letters, digits, '_', '.' or '-'",
            )


_DAG_ID = re.compile(r"[A-Za-z0-9_.-]{1,250}")


def _check_business_impact(doc: Mapping[str, Any]) -> None:
    impact = doc["business_impact"]
    revenue, distribution = impact["hourly_revenue"], impact["customer_distribution"]
    for key in distribution:
        if key not in revenue:
            raise _Problem(
                ("business_impact", "customer_distribution", key),
                f"is not a customer tier of hourly_revenue (tiers: {', '.join(revenue)})",
            )
    for key in revenue:
        if key not in distribution:
            raise _Problem(
                ("business_impact", "customer_distribution"),
                f"has no share for customer tier {key!r} (keys must match hourly_revenue: {', '.join(revenue)})",
            )
    total = math.fsum(distribution.values())
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise _Problem(
            ("business_impact", "customer_distribution"),
            f"shares must add up to 1.0 (got {total:.4g})",
        )
    credits = impact["sla_credits"]
    target = impact["sla_target_percent"]
    if credits[0]["below_uptime_percent"] > target:
        raise _Problem(
            ("business_impact", "sla_credits", 0, "below_uptime_percent"),
            f"must not be above sla_target_percent {target} (got {credits[0]['below_uptime_percent']})",
        )
    for index in range(1, len(credits)):
        prev, cur = credits[index - 1], credits[index]
        if not cur["below_uptime_percent"] < prev["below_uptime_percent"]:
            raise _Problem(
                ("business_impact", "sla_credits", index, "below_uptime_percent"),
                f"must be below the previous threshold {prev['below_uptime_percent']} (thresholds must "
                f"strictly decrease; got {cur['below_uptime_percent']})",
            )
        if not cur["credit"] > prev["credit"]:
            raise _Problem(
                ("business_impact", "sla_credits", index, "credit"),
                f"must be above the previous credit {prev['credit']} (a lower uptime earns a strictly "
                f"larger credit; got {cur['credit']})",
            )


def _check_failover_authorization(doc: Mapping[str, Any]) -> None:
    auth = doc["failover_authorization"]
    if auth["approval_required_levels"] and not auth["approvers"]:
        raise _Problem(
            ("failover_authorization", "approvers"),
            "must name at least one approver while approval_required_levels is not empty",
        )


# -- cron ----------------------------------------------------------------------------------------

_CRON_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    (
        "month",
        1,
        12,
        {m: i for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), start=1)},
    ),
    ("day-of-week", 0, 7, {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}),
)
_CRON_ITEM = re.compile(r"^(?P<range>\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/(?P<step>[0-9]+))?$")


def _check_drills(doc: Mapping[str, Any]) -> None:
    """Drills report into the Object Lock archive, fail only stack regions the estate has, name their
    records inside the hosted zone and report to people the stakeholder matrix knows."""
    drills = doc.get("drills")
    if not drills:
        return
    problem = cron_error(drills["schedule"])
    if problem:
        raise _Problem(("drills", "schedule"), problem)
    archive = list(((doc.get("archive") or {}).get("buckets") or {}).values())
    if drills["report_bucket"] not in archive:
        raise _Problem(
            ("drills", "report_bucket"),
            f"{drills['report_bucket']!r} is not one of archive.buckets ({', '.join(archive) or 'none'}): "
            "drill reports are kept under Object Lock",
        )
    for region in drills["stack"]:
        _require_region(doc, ("drills", "stack", region), region)
    zone = doc["route53"]["hosted_zone"].rstrip(".")
    domain = drills["record_domain"].rstrip(".")
    if not domain.endswith(f".{zone}"):
        raise _Problem(("drills", "record_domain"), f"{domain!r} is not inside route53.hosted_zone {zone!r}")
    if domain == doc["route53"]["record_name"].rstrip(".") or doc["route53"]["record_name"].rstrip(
        "."
    ).endswith(f".{domain}"):
        raise _Problem(
            ("drills", "record_domain"), "must not contain the production record route53.record_name"
        )
    known = [
        str(item.get("role") or item.get("group"))
        for audience in ("internal", "external")
        for item in doc["stakeholders"][audience]
    ]
    for i, name in enumerate(drills["stakeholders"]):
        if name not in known:
            raise _Problem(
                ("drills", "stakeholders", i),
                f"{name!r} is not in the stakeholder matrix ({', '.join(known)})",
            )


def _check_verification(doc: Mapping[str, Any]) -> None:
    schedule = (doc.get("verification") or {}).get("sweep_schedule")
    problem = cron_error(schedule) if schedule is not None else None
    if problem:
        raise _Problem(("verification", "sweep_schedule"), problem)


def cron_error(expression: str) -> str | None:
    """Why `expression` is not a plain 5-field cron expression, or None if it is one."""
    fields = expression.split()
    if len(fields) != 5:
        return (
            f"must be a 5-field cron expression (minute hour day-of-month month day-of-week), "
            f"got {len(fields)} field(s) in {expression!r}"
        )
    for text, (label, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            problem = _cron_item_error(item, label, low, high, names)
            if problem:
                return f"{problem} in cron expression {expression!r}"
    croniter = _croniter()
    if croniter is not None and not croniter.is_valid(expression):
        return f"is not a valid cron expression {expression!r}"
    return None


def _cron_item_error(item: str, label: str, low: int, high: int, names: Mapping[str, int]) -> str | None:
    match = _CRON_ITEM.match(item)
    if not match:
        return f"{label} field {item!r} is not a number, range, list, '*' or step"
    step = match.group("step")
    if step is not None and int(step) == 0:
        return f"{label} field {item!r} has a step of 0"
    if match.group("range") == "*":
        return None
    values: list[int] = []
    for part in match.group("range").split("-"):
        if part.isdigit():
            values.append(int(part))
        elif part.upper() in names:
            values.append(names[part.upper()])
        else:
            return f"{label} field {item!r}: {part!r} is not a number"
    for value in values:
        if not low <= value <= high:
            return f"{label} field {item!r}: {value} is out of range {low}-{high}"
    if len(values) == 2 and values[0] > values[1]:
        return f"{label} field {item!r}: range start is after its end"
    return None


@functools.cache
def _croniter() -> Any:
    """croniter is a second opinion when installed (Airflow ships it); the checks above stand alone."""
    try:
        from croniter import croniter
    except ImportError:
        return None
    return croniter
