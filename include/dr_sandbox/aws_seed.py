"""Seed the AWS emulator with the estate's AWS resources, idempotently.

The DAGs find their resources by the names in the estate config, so the sandbox creates exactly
those (RDS primary + cross-region replica, per-region KMS keys and buckets, the Object Lock archive,
the Route 53 failover pair with health checks, notification topics, secrets). A second call
creates nothing and returns the same ids, so a restarted sandbox can always re-seed safely.

Works around moto 5.2.5 (see FACTS.md): duplicate Route 53 CREATEs add copies (we look first and
UPSERT only what differs), the record-set paginator breaks on failover pairs (one call, large
MaxItems), and multi-region KMS keys cannot decrypt (single-region keys only).
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from dr_automation.route53_plan import (
    failover_records,
    health_check_config,
    health_check_name,
    health_check_tags,
)

if TYPE_CHECKING:
    from dr_automation.estate import Estate

GLOBAL_REGION = "us-east-1"  # Route 53 is global; boto3 signs its calls for us-east-1
ROUTE53_MAX_ITEMS = "1000"
ALLOWED_REQUEST_INTERVALS = (10, 30)  # the only values Route 53 accepts
DB_MASTER_USERNAME = "dr_admin"
DB_PORT = 5432
ONCALL_TOPIC = "dr-oncall"
_CALLER_REF_PREFIX = "dr-sandbox"


class SeedError(ValueError):
    """The seed cannot run with these arguments; the message names the field and the reason."""


# -- helpers ----------------------------------------------------------------------------------


class _Clients:
    """One boto3 client per (service, region), all pointed at the emulator, with standard retries."""

    def __init__(self, endpoint_url: str) -> None:
        session = boto3.session.Session()
        if session.get_credentials() is None:
            # The emulator accepts any key; a sandbox run must not need real AWS credentials.
            session = boto3.session.Session(aws_access_key_id="sandbox", aws_secret_access_key="sandbox")
        self._session = session
        self._endpoint_url = endpoint_url
        self._config = Config(
            retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30
        )
        self._cache: dict[tuple[str, str], Any] = {}

    def __call__(self, service: str, region: str = GLOBAL_REGION) -> Any:
        key = (service, region)
        if key not in self._cache:
            self._cache[key] = self._session.client(
                service, region_name=region, endpoint_url=self._endpoint_url, config=self._config
            )
        return self._cache[key]


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _tag_key(estate: Estate) -> str:
    return f"{estate.raw['organization']['tag_prefix']}:managed-by"


def _tags(estate: Estate, **extra: str) -> dict[str, str]:
    return {_tag_key(estate): "dr", **extra}


def _systems(estate: Estate) -> Iterator[Mapping[str, Any]]:
    for tier in estate.tiers.values():
        yield from tier.systems


def _validate(
    estate: Estate,
    endpoint_url: str,
    region_addresses: Mapping[str, tuple[str, int]],
    health_interval_override: int | None,
) -> None:
    parsed = urlparse(endpoint_url or "")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise SeedError(f"endpoint_url: {endpoint_url!r} is not an http(s) URL of the AWS emulator")
    for region in region_addresses:
        if region not in estate.regions:
            raise SeedError(
                f"region_addresses.{region}: not a region of the estate ({', '.join(estate.regions)})"
            )
    for record in estate.route53["failover_records"]:
        region = record["region"]
        if region not in region_addresses:
            raise SeedError(
                f"region_addresses.{region}: missing; the failover record {record['set_identifier']} "
                "needs the address its health check probes"
            )
    for region, value in region_addresses.items():
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise SeedError(f"region_addresses.{region}: must be an (ip address, port) pair")
        address, port = value
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise SeedError(f"region_addresses.{region}: {address!r} is not an IP address") from None
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise SeedError(f"region_addresses.{region}: port {port!r} is not a TCP port number")
    if health_interval_override is not None and health_interval_override not in ALLOWED_REQUEST_INTERVALS:
        raise SeedError(
            f"health_interval_override: {health_interval_override!r} is not a Route 53 request interval "
            f"(allowed: {', '.join(map(str, ALLOWED_REQUEST_INTERVALS))})"
        )
    for region in estate.raw.get("archive", {}).get("buckets", {}):
        if region not in estate.regions:
            raise SeedError(f"archive.buckets.{region}: not a region of the estate, so it has no KMS key")


# -- KMS --------------------------------------------------------------------------------------


def _seed_kms(estate: Estate, clients: _Clients) -> dict[str, dict[str, str]]:
    """One single-region symmetric key per region, behind the region's alias."""
    key_ids: dict[str, str] = {}
    key_arns: dict[str, str] = {}
    for name, region in estate.regions.items():
        kms = clients("kms", name)
        try:
            meta = kms.describe_key(KeyId=region.kms_key_alias)["KeyMetadata"]
        except ClientError as exc:
            if _error_code(exc) != "NotFoundException":
                raise
            meta = kms.create_key(
                Description=f"DR backups in {name} ({estate.name})",
                KeySpec="SYMMETRIC_DEFAULT",
                KeyUsage="ENCRYPT_DECRYPT",
                MultiRegion=False,  # moto: multi-region keys cannot decrypt
                Tags=[{"TagKey": k, "TagValue": v} for k, v in _tags(estate, Region=name).items()],
            )["KeyMetadata"]
            kms.create_alias(AliasName=region.kms_key_alias, TargetKeyId=meta["KeyId"])
        key_ids[name] = meta["KeyId"]
        key_arns[name] = meta["Arn"]
    return {"ids": key_ids, "arns": key_arns}


# -- S3 ---------------------------------------------------------------------------------------


def _ensure_bucket(s3: Any, bucket: str, region: str, *, object_lock: bool = False) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        if _error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    if object_lock:
        kwargs["ObjectLockEnabledForBucket"] = True
    s3.create_bucket(**kwargs)


def _configure_bucket(estate: Estate, s3: Any, bucket: str, region: str, key_arn: str) -> None:
    """Versioning on, default SSE-KMS with the region's key, tags; each written only if it differs."""
    if s3.get_bucket_versioning(Bucket=bucket).get("Status") != "Enabled":
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    rule = {
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
        "BucketKeyEnabled": True,
    }
    try:
        current = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    except ClientError as exc:
        if _error_code(exc) != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        current = []
    if [{k: r.get(k) for k in rule} for r in current] != [rule]:
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]})

    tags = _tags(estate, Region=region)
    try:
        have = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    except ClientError as exc:
        if _error_code(exc) != "NoSuchTagSet":
            raise
        have = {}
    if have != tags:
        s3.put_bucket_tagging(
            Bucket=bucket, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}
        )


def _configure_object_lock(s3: Any, bucket: str, mode: str, years: int) -> None:
    """Default retention for the archive; moto refuses to set it on a non-empty bucket, so only if it differs."""
    wanted = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": mode, "Years": years}}}
    current = s3.get_object_lock_configuration(Bucket=bucket).get("ObjectLockConfiguration", {})
    retention = current.get("Rule", {}).get("DefaultRetention", {})
    if (
        current.get("ObjectLockEnabled") == "Enabled"
        and retention.get("Mode") == mode
        and retention.get("Years") == years
        and not retention.get("Days")
    ):
        return
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=wanted)


def _sample_objects(system: Mapping[str, Any]) -> dict[str, bytes]:
    """A few small objects so backup/restore of a bucket or prefix has something to move."""
    if system["type"] == "s3_prefix":
        prefix = str(system.get("prefix", ""))
        return {
            f"{prefix}2026/01/0{n}/events-{n:04d}.json": json.dumps(
                {"system": system["name"], "sequence": n, "event": "sample"}
            ).encode()
            for n in range(1, 4)
        }
    return {
        f"tenants/tenant-{n:03d}/profile.json": json.dumps({"tenant": n, "plan": "team"}).encode()
        for n in range(1, 4)
    }


def _seed_s3(estate: Estate, clients: _Clients, key_arns: Mapping[str, str]) -> dict[str, Any]:
    backup: dict[str, str] = {}
    for name, region in estate.regions.items():
        s3 = clients("s3", name)
        _ensure_bucket(s3, region.backup_bucket, name)
        _configure_bucket(estate, s3, region.backup_bucket, name, key_arns[name])
        backup[name] = region.backup_bucket

    archive_cfg = estate.raw.get("archive", {})
    archive: dict[str, str] = {}
    for name, bucket in archive_cfg.get("buckets", {}).items():
        s3 = clients("s3", name)
        _ensure_bucket(s3, bucket, name, object_lock=True)
        _configure_bucket(estate, s3, bucket, name, key_arns[name])
        _configure_object_lock(
            s3,
            bucket,
            archive_cfg.get("object_lock_mode", "COMPLIANCE"),
            int(archive_cfg["object_lock_years"]),
        )
        archive[name] = bucket

    primary = estate.primary_region.name
    systems: dict[str, str] = {}
    s3 = clients("s3", primary)
    for system in _systems(estate):
        bucket = system.get("bucket")
        if not bucket or system.get("type") not in ("s3_bucket", "s3_prefix"):
            continue
        if bucket not in systems.values():
            _ensure_bucket(s3, bucket, primary)
            _configure_bucket(estate, s3, bucket, primary, key_arns[primary])
        systems[system["name"]] = bucket
        for key, body in _sample_objects(system).items():
            try:
                s3.head_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                if _error_code(exc) not in ("404", "NoSuchKey", "NotFound"):
                    raise
                s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    return {"backup": backup, "archive": archive, "systems": systems}


# -- Secrets Manager and RDS ------------------------------------------------------------------


def _get_secret(sm: Any, secret_id: str) -> dict[str, Any] | None:
    try:
        return sm.get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        if _error_code(exc) == "ResourceNotFoundException":
            return None
        raise


def _secret_tags(estate: Estate) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in _tags(estate).items()]


def db_credentials_secret_id(estate: Estate) -> str:
    """Where the sandbox keeps the primary database's master credentials."""
    prefix = estate.raw["organization"]["tag_prefix"]
    return f"{prefix}/rds/{estate.databases['primary']['rds_instance_id']}/master-credentials"


def _describe_instance(rds: Any, instance_id: str) -> dict[str, Any] | None:
    try:
        return rds.describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"][0]
    except ClientError as exc:
        if _error_code(exc) == "DBInstanceNotFound":
            return None
        raise


def _seed_rds_and_secrets(
    estate: Estate, clients: _Clients, key_arns: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    primary_cfg = estate.databases["primary"]
    primary_region = primary_cfg["region"]
    instance_id = primary_cfg["rds_instance_id"]
    rds = clients("rds", primary_region)
    sm = clients("secretsmanager", primary_region)
    secret_id = db_credentials_secret_id(estate)
    secret_arns: dict[str, str] = {}

    existing_secret = _get_secret(sm, secret_id)
    instance = _describe_instance(rds, instance_id)
    if existing_secret is not None:
        password = json.loads(existing_secret["SecretString"])["password"]
    else:
        password = secrets.token_urlsafe(24)  # the sandbox makes its own credentials
    rds_tags = [{"Key": k, "Value": v} for k, v in _tags(estate, Role="primary").items()]
    if instance is None:
        instance = rds.create_db_instance(
            DBInstanceIdentifier=instance_id,
            Engine=primary_cfg.get("engine", "postgres"),
            DBInstanceClass="db.t3.medium",
            AllocatedStorage=20,
            DBName=primary_cfg["database"],
            MasterUsername=DB_MASTER_USERNAME,
            MasterUserPassword=password,
            Port=DB_PORT,
            BackupRetentionPeriod=7,  # read replicas and PITR need automated backups
            StorageEncrypted=True,
            KmsKeyId=key_arns[primary_region],
            Tags=rds_tags,
        )["DBInstance"]
    elif existing_secret is None:
        # The instance outlived its secret: give it the new password so the secret is the truth.
        rds.modify_db_instance(
            DBInstanceIdentifier=instance_id, MasterUserPassword=password, ApplyImmediately=True
        )

    if existing_secret is None:
        endpoint = instance.get("Endpoint") or {}
        created = sm.create_secret(
            Name=secret_id,
            Description=f"Master credentials of RDS instance {instance_id} (sandbox-generated)",
            SecretString=json.dumps(
                {
                    "engine": primary_cfg.get("engine", "postgres"),
                    "host": endpoint.get("Address", ""),
                    "port": endpoint.get("Port", DB_PORT),
                    "username": DB_MASTER_USERNAME,
                    "password": password,
                    "dbname": primary_cfg["database"],
                    "dbInstanceIdentifier": instance_id,
                }
            ),
            Tags=_secret_tags(estate),
        )
        secret_arns[secret_id] = created["ARN"]
    else:
        secret_arns[secret_id] = existing_secret["ARN"]

    arns = {instance_id: instance["DBInstanceArn"]}
    replica_cfg = primary_cfg.get("replica")
    if replica_cfg:
        replica_region = replica_cfg["region"]
        rds_replica = clients("rds", replica_region)
        replica = _describe_instance(rds_replica, replica_cfg["rds_instance_id"])
        if replica is None:
            replica = rds_replica.create_db_instance_read_replica(
                DBInstanceIdentifier=replica_cfg["rds_instance_id"],
                SourceDBInstanceIdentifier=instance["DBInstanceArn"],  # cross-region needs the ARN
                SourceRegion=primary_region,
                KmsKeyId=key_arns[replica_region],
                Tags=[{"Key": k, "Value": v} for k, v in _tags(estate, Role="replica").items()],
            )["DBInstance"]
        arns[replica_cfg["rds_instance_id"]] = replica["DBInstanceArn"]

    for system in _systems(estate):
        if system.get("type") != "secrets":
            continue
        for api_secret in system.get("secret_ids", ()):
            found = _get_secret(sm, api_secret)
            if found is None:
                found = sm.create_secret(
                    Name=api_secret,
                    Description=f"Sandbox stand-in for {api_secret} (backed up by {system['name']})",
                    SecretString=json.dumps(
                        {"value": secrets.token_urlsafe(32), "generated_by": "dr-sandbox"}
                    ),
                    Tags=_secret_tags(estate),
                )
            secret_arns[api_secret] = found["ARN"]
    return arns, secret_arns


# -- Route 53 ---------------------------------------------------------------------------------

#: Health-check settings Route 53 fixes at creation (a change means a new check).
_FIXED_AT_CREATION = frozenset({"Type", "RequestInterval", "MeasureLatency"})


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else f"{name}."


def _find_zone(r53: Any, zone: str) -> str | None:
    listed = r53.list_hosted_zones_by_name(DNSName=zone, MaxItems="100")["HostedZones"]
    for hz in listed:
        if hz["Name"] == _fqdn(zone) and not hz.get("Config", {}).get("PrivateZone", False):
            return hz["Id"].rsplit("/", 1)[-1]
    return None


def _all_health_checks(r53: Any) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"MaxItems": ROUTE53_MAX_ITEMS}
    while True:
        page = r53.list_health_checks(**kwargs)
        checks.extend(page.get("HealthChecks", []))
        if not page.get("IsTruncated") or not page.get("NextMarker"):
            return checks
        kwargs["Marker"] = page["NextMarker"]


def _seed_health_checks(
    estate: Estate,
    r53: Any,
    region_addresses: Mapping[str, tuple[str, int]],
    interval: int,
) -> tuple[dict[str, str], list[str]]:
    """One HTTP health check per failover region, found again by its CallerReference.

    Returns the ids by region and the ids of our older checks for those regions that were replaced.
    """
    existing = _all_health_checks(r53)
    ids: dict[str, str] = {}
    stale: list[str] = []
    for fo in estate.route53["failover_records"]:
        region = fo["region"]
        address, port = region_addresses[region]
        # Type and interval cannot be updated on a health check: they are part of its identity.
        name = health_check_name(estate, region)
        base_ref = f"{_CALLER_REF_PREFIX}:{name}:"
        caller_ref = f"{base_ref}HTTP:{interval}"
        # Exactly what dns_failover_setup reconciles to (one definition), on the sandbox's address;
        # the sandbox's regional apps speak plain HTTP.
        config = {
            **health_check_config(estate, region),
            "Type": "HTTP",
            "IPAddress": str(address),
            "Port": int(port),
            "RequestInterval": interval,
        }
        wanted = {k: v for k, v in config.items() if k not in _FIXED_AT_CREATION}
        match = next((hc for hc in existing if hc.get("CallerReference") == caller_ref), None)
        stale += [
            hc["Id"]
            for hc in existing
            if hc.get("CallerReference", "").startswith(base_ref) and hc.get("CallerReference") != caller_ref
        ]
        if match is None:
            match = r53.create_health_check(CallerReference=caller_ref, HealthCheckConfig=config)[
                "HealthCheck"
            ]
        else:
            current = match["HealthCheckConfig"]
            if any(current.get(k) != v for k, v in wanted.items()):
                r53.update_health_check(HealthCheckId=match["Id"], **wanted)
        hc_id = match["Id"]
        tags = {"Name": name, **health_check_tags(estate, region), **_tags(estate)}
        have = r53.list_tags_for_resource(ResourceType="healthcheck", ResourceId=hc_id)["ResourceTagSet"].get(
            "Tags", []
        )
        if {t["Key"]: t["Value"] for t in have} != tags:
            r53.change_tags_for_resource(
                ResourceType="healthcheck",
                ResourceId=hc_id,
                AddTags=[{"Key": k, "Value": v} for k, v in tags.items()],
            )
        ids[region] = hc_id
    return ids, stale


def _record_key(rrset: Mapping[str, Any]) -> tuple[str, str, str | None]:
    return (rrset["Name"], rrset["Type"], rrset.get("SetIdentifier"))


def _same_record(have: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    def norm(r: Mapping[str, Any]) -> tuple[Any, ...]:
        return (
            int(r.get("TTL", 0)),
            sorted(v["Value"] for v in r.get("ResourceRecords", [])),
            r.get("Failover"),
            r.get("HealthCheckId"),
        )

    return norm(have) == norm(want)


def _seed_route53(
    estate: Estate,
    clients: _Clients,
    region_addresses: Mapping[str, tuple[str, int]],
    health_interval_override: int | None,
) -> dict[str, Any]:
    r53 = clients("route53")
    route53 = estate.route53
    zone = route53["hosted_zone"]
    zone_id = _find_zone(r53, zone)
    if zone_id is None:
        created = r53.create_hosted_zone(
            Name=zone,
            CallerReference=f"{_CALLER_REF_PREFIX}:{zone}",
            HostedZoneConfig={"Comment": f"{estate.name} public zone (DR sandbox)", "PrivateZone": False},
        )
        zone_id = created["HostedZone"]["Id"].rsplit("/", 1)[-1]
    r53.change_tags_for_resource(
        ResourceType="hostedzone",
        ResourceId=zone_id,
        AddTags=[{"Key": k, "Value": v} for k, v in _tags(estate).items()],
    )

    interval = health_interval_override or int(route53["health_check"].get("request_interval_seconds", 30))
    hc_ids, stale = _seed_health_checks(estate, r53, region_addresses, interval)

    ttl = int(route53.get("ttl_seconds", 60))
    by_set = {fo["set_identifier"]: fo["region"] for fo in route53["failover_records"]}
    wanted: list[dict[str, Any]] = [
        {**record, "ResourceRecords": [{"Value": str(region_addresses[by_set[record["SetIdentifier"]]][0])}]}
        for record in failover_records(estate, hc_ids)
    ]
    for name, region in estate.regions.items():
        # Apps not running in the sandbox keep the configured address (nothing connects to it).
        address = region_addresses[name][0] if name in region_addresses else region.address
        wanted.append(
            {
                "Name": _fqdn(region.hostname),
                "Type": "A",
                "TTL": ttl,
                "ResourceRecords": [{"Value": str(address)}],
            }
        )

    # One call with a large MaxItems: moto's paginator breaks on failover pairs.
    listed = r53.list_resource_record_sets(HostedZoneId=zone_id, MaxItems=ROUTE53_MAX_ITEMS)
    have = {_record_key(r): r for r in listed["ResourceRecordSets"]}
    changes = [
        {"Action": "UPSERT", "ResourceRecordSet": w}
        for w in wanted
        if _record_key(w) not in have or not _same_record(have[_record_key(w)], w)
    ]
    if changes:
        r53.change_resource_record_sets(
            HostedZoneId=zone_id,
            ChangeBatch={"Comment": "DR sandbox seed", "Changes": changes},
        )
    for hc_id in stale:  # replaced health checks, no longer referenced by any record
        r53.delete_health_check(HealthCheckId=hc_id)
    return {"hosted_zone_id": zone_id, "health_check_ids": hc_ids}


# -- SNS, SQS, SES ----------------------------------------------------------------------------


#: Contact channels delivered through an SNS topic named by the contact's address.
SNS_CHANNELS = ("phone", "sms", "sns")


def contact_topic_names(estate: Estate) -> list[str]:
    """The SNS topics notifications.contacts names (pagers, SMS groups), in first-seen order."""
    contacts = estate.raw.get("notifications", {}).get("contacts", {})
    names = [
        str(entry[channel]) for entry in contacts.values() for channel in SNS_CHANNELS if entry.get(channel)
    ]
    return list(dict.fromkeys(names))


def incident_topic_names(estate: Estate) -> list[str]:
    """One topic per incident level, the on-call channel, and every contact's pager/SMS topic."""
    levels = [int(level["level"]) for level in estate.raw.get("incident_levels", [])]
    base = [f"dr-incidents-level-{level}" for level in sorted(levels)] + [ONCALL_TOPIC]
    return list(dict.fromkeys(base + contact_topic_names(estate)))


def ses_sender(estate: Estate) -> str:
    """The address incident email is sent from (notifications.sender), verified in SES by the seed."""
    return str(estate.raw.get("notifications", {}).get("sender") or f"dr-alerts@{estate.domain}")


def _seed_notifications(estate: Estate, clients: _Clients) -> dict[str, Any]:
    """Topics (each with an SQS "<topic>-inbox" subscribed, so tests read what was published) in
    the notifications region, and the SES sender verified in every region."""
    region = str(estate.raw.get("notifications", {}).get("region") or estate.primary_region.name)
    sns = clients("sns", region)
    sqs = clients("sqs", region)
    topic_arns: dict[str, str] = {}
    queue_urls: dict[str, str] = {}
    for topic in incident_topic_names(estate):
        topic_arn = sns.create_topic(  # CreateTopic with the same name returns the same ARN
            Name=topic, Tags=[{"Key": k, "Value": v} for k, v in _tags(estate).items()]
        )["TopicArn"]
        queue_url = sqs.create_queue(QueueName=f"{topic}-inbox", tags=_tags(estate))["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn", "Policy"])[
            "Attributes"
        ]
        queue_arn = attrs["QueueArn"]
        policy = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "sns.amazonaws.com"},
                        "Action": "sqs:SendMessage",
                        "Resource": queue_arn,
                        "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
                    }
                ],
            },
            sort_keys=True,
        )
        if attrs.get("Policy") != policy:
            sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": policy})
        subs = sns.list_subscriptions_by_topic(TopicArn=topic_arn).get("Subscriptions", [])
        if not any(s["Protocol"] == "sqs" and s["Endpoint"] == queue_arn for s in subs):
            sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        topic_arns[topic] = topic_arn
        queue_urls[topic] = queue_url

    sender = ses_sender(estate)
    for name in estate.regions:
        ses = clients("ses", name)
        if sender not in ses.list_identities(IdentityType="EmailAddress").get("Identities", []):
            ses.verify_email_identity(EmailAddress=sender)
    return {"topic_arns": topic_arns, "queue_urls": queue_urls, "ses_sender": sender}


# -- regional compute: Auto Scaling group, load balancer and its write gate -----------------

STANDBY_AMI = "ami-12c6146b"  # one of moto's built-in images


def standby_capacity(estate: Estate, region: str) -> int:
    """The size a standby region runs at: a third of its serving size (at least one)."""
    return max(1, estate.regions[region].capacity["serving_desired"] // 3)


def _seed_region_compute(estate: Estate, clients: _Clients) -> dict[str, Any]:
    """Per region: a VPC, the API Auto Scaling group (serving size on the primary, standby size
    elsewhere) and an HTTPS load balancer whose write gate is open on the primary only."""
    out: dict[str, Any] = {}
    primary = estate.primary_region.name
    for name, region in estate.regions.items():
        ec2, asg, elbv2 = clients("ec2", name), clients("autoscaling", name), clients("elbv2", name)
        tag = _tags(estate)
        vpcs = ec2.describe_vpcs(Filters=[{"Name": f"tag:{_tag_key(estate)}", "Values": ["dr"]}])["Vpcs"]
        if vpcs:
            vpc = vpcs[0]["VpcId"]
            subnets = [
                s["SubnetId"]
                for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
            ]
        else:
            tag_spec = [{"Key": k, "Value": v} for k, v in tag.items()]
            vpc = ec2.create_vpc(
                CidrBlock="10.40.0.0/16", TagSpecifications=[{"ResourceType": "vpc", "Tags": tag_spec}]
            )["Vpc"]["VpcId"]
            subnets = [
                ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.40.{i}.0/24", AvailabilityZone=f"{name}{zone}")[
                    "Subnet"
                ]["SubnetId"]
                for i, zone in enumerate("ab")
            ]
        cap = region.capacity
        group = cap["auto_scaling_group"]
        if not asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]:
            template = f"{group}-template"
            with _ignore_codes("InvalidLaunchTemplateName.AlreadyExistsException"):
                ec2.create_launch_template(
                    LaunchTemplateName=template,
                    LaunchTemplateData={"ImageId": STANDBY_AMI, "InstanceType": "m6i.large"},
                )
            size = cap["serving_desired"] if name == primary else standby_capacity(estate, name)
            asg.create_auto_scaling_group(
                AutoScalingGroupName=group,
                LaunchTemplate={"LaunchTemplateName": template},
                MinSize=min(size, cap["serving_min"]),
                MaxSize=cap["serving_desired"] * 2,
                DesiredCapacity=size,
                VPCZoneIdentifier=",".join(subnets),
                Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in tag.items()],
            )
        out[name] = {
            "auto_scaling_group": group,
            **_seed_load_balancer(estate, elbv2, clients, name, vpc, subnets),
        }
    return out


def _seed_load_balancer(
    estate: Estate, elbv2: Any, clients: _Clients, region: str, vpc: str, subnets: list[str]
) -> dict[str, Any]:
    from dr_automation.target_region import (
        find_write_gate,
        write_gate_actions,
        write_gate_conditions,
        write_gate_tag,
    )

    spec = estate.regions[region].load_balancer
    try:
        lb_arn = elbv2.describe_load_balancers(Names=[spec["name"]])["LoadBalancers"][0]["LoadBalancerArn"]
    except ClientError as exc:
        if _error_code(exc) != "LoadBalancerNotFound":
            raise
        lb_arn = elbv2.create_load_balancer(
            Name=spec["name"], Subnets=subnets, Scheme="internet-facing", Type="application"
        )["LoadBalancers"][0]["LoadBalancerArn"]
    listeners = elbv2.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"]
    if not any(x["Port"] == spec["listener_port"] for x in listeners):
        tg_arn = elbv2.create_target_group(
            Name=spec["name"], Protocol="HTTP", Port=8080, VpcId=vpc, HealthCheckPath="/health"
        )["TargetGroups"][0]["TargetGroupArn"]
        cert = clients("acm", region).request_certificate(DomainName=estate.regions[region].hostname)[
            "CertificateArn"
        ]
        listener = elbv2.create_listener(
            LoadBalancerArn=lb_arn,
            Protocol="HTTPS",
            Port=spec["listener_port"],
            Certificates=[{"CertificateArn": cert}],
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_arn}],
        )["Listeners"][0]["ListenerArn"]
        closed = region != estate.primary_region.name
        elbv2.create_rule(
            ListenerArn=listener,
            Priority=10,
            Conditions=write_gate_conditions(),
            Actions=write_gate_actions(closed, tg_arn),
            Tags=[write_gate_tag(estate)],
        )
    gate = find_write_gate(estate, region, elbv2)
    return {
        "load_balancer_arn": lb_arn,
        "write_gate_rule_arn": gate["rule_arn"],
        "writes_closed": gate["closed"],
    }


class _ignore_codes:
    """Ignore a ClientError with one of these codes (an idempotent create that already happened)."""

    def __init__(self, *codes: str) -> None:
        self.codes = codes

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        return isinstance(exc, ClientError) and _error_code(exc) in self.codes


# -- what the backup tiers read: machine images, lifecycle rules -----------------------------


def _seed_backup_sources(estate: Estate, clients: _Clients) -> dict[str, Any]:
    """A machine image per machine_images system (tagged with its tag) in the primary region, and
    every tier's lifecycle rules on its buckets (what the tiers' check_retention then finds)."""
    from dr_automation.backup.plan import tier_plan
    from dr_automation.backup.retention import ensure_rules, tier_rules

    primary = estate.primary_region.name
    ec2 = clients("ec2", primary)
    images: dict[str, str] = {}
    for system in _systems(estate):
        if system.get("type") != "machine_images":
            continue
        tag = system["tag"]
        found = ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag-key", "Values": [tag]}])["Images"]
        if found:
            images[system["name"]] = found[0]["ImageId"]
            continue
        image_id = ec2.register_image(
            Name=f"{estate.raw['organization']['tag_prefix']}-api-base",
            Description="Sandbox stand-in for the API servers' machine image",
        )["ImageId"]
        ec2.create_tags(
            Resources=[image_id],
            Tags=[{"Key": tag, "Value": "api"}, *[{"Key": k, "Value": v} for k, v in _tags(estate).items()]],
        )
        images[system["name"]] = image_id
    lifecycle: dict[str, list[str]] = {}
    for key in estate.tiers:
        for (region, bucket), rules in tier_rules(tier_plan(estate, key)).items():
            ensure_rules(clients("s3", region), bucket, rules)  # written once, present after
            lifecycle.setdefault(bucket, []).extend(r["ID"] for r in rules)
    return {"machine_images": images, "lifecycle_rules": {b: sorted(ids) for b, ids in lifecycle.items()}}


# -- entry point ------------------------------------------------------------------------------


def seed_aws(
    estate: Estate,
    endpoint_url: str,
    *,
    region_addresses: Mapping[str, tuple[str, int]],
    health_interval_override: int | None = None,
) -> dict[str, Any]:
    """Create the estate's AWS resources in the emulator (idempotent) and return their ids.

    region_addresses maps a region to the (IP, port) of its sandbox app: health checks probe it and
    the failover and regional A records point at it. It must cover every failover record's region.
    """
    _validate(estate, endpoint_url, region_addresses, health_interval_override)
    clients = _Clients(endpoint_url)
    kms = _seed_kms(estate, clients)
    buckets = _seed_s3(estate, clients, kms["arns"])
    rds_arns, secret_arns = _seed_rds_and_secrets(estate, clients, kms["arns"])
    dns = _seed_route53(estate, clients, region_addresses, health_interval_override)
    notifications = _seed_notifications(estate, clients)
    compute = _seed_region_compute(estate, clients)
    backup_sources = _seed_backup_sources(estate, clients)
    return {
        "regions": compute,
        "backup_sources": backup_sources,
        "hosted_zone_id": dns["hosted_zone_id"],
        "health_check_ids": dns["health_check_ids"],
        "kms_key_ids": kms["ids"],
        "kms_key_arns": kms["arns"],
        "rds_instance_arns": rds_arns,
        "topic_arns": notifications["topic_arns"],
        "queue_urls": notifications["queue_urls"],
        "ses_sender": notifications["ses_sender"],
        "secret_arns": secret_arns,
        "db_credentials_secret_id": db_credentials_secret_id(estate),
        "buckets": buckets,
    }
