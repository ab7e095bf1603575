"""The cluster workflow's plan: the request validated, the names it will give, the path (streams or freeze),
the estimates and the questions on-call is asked; and the defaults every stage reads."""

from __future__ import annotations

import os
import re
from datetime import timedelta

from botocore.exceptions import ClientError

from neptune_guard import aws
from neptune_guard.remediate import naming, network, replicator_package
from neptune_guard.remediate.resources import (
    InvalidRequest,
    Step,
    custom_endpoints,
    describe_cluster,
    instances_in,
    parse_arn,
    tags_of,
    utcnow,
)
from neptune_guard.tags import CREATED_BY, CUTOVER, RETAINED_UNTIL, RETIRED_BY, created_by, customer_tags, tag_list

DEFAULT_APPROVAL_TIMEOUT_SECONDS = 24 * 3600


DEFAULT_SOAK_SECONDS = 7 * 24 * 3600


RETAINED_CHECK_SECONDS = 24 * 3600  # Neptune restarts a stopped cluster after 7 days: look once a day


# Neptune publishes its metrics at 1 to 5 minute granularity, and only non-zero values: two 5-minute
# periods after the original stopped answering under its name, every write it took is visible.
DEFAULT_METRICS_SETTLE_SECONDS = 600


MINIMUM_METRICS_SETTLE_SECONDS = 300  # Neptune's coarsest metric period: a shorter settle could miss a write


QUIET_BEFORE_SNAPSHOT_SECONDS = 600  # two of Neptune's 5-minute metric periods without a write


STREAMS_DEFAULT_EXPIRY_DAYS = 7  # neptune_streams_expiry_days when the parameter group leaves it out


# Rates behind the plan's estimates (seconds). Restore: "can take up to a few hours" for a large volume
# (https://docs.aws.amazon.com/neptune/latest/userguide/backup-restore-restore-snapshot.html); snapshots are
# incremental storage copies; a rename is a metadata change whose DNS follows in about a minute
# (https://docs.aws.amazon.com/neptune/latest/userguide/manage-console-rename.html). Conservative, not measured in AWS.
ESTIMATES = {"snapshot_base_seconds": 300, "snapshot_seconds_per_tb": 1800, "restore_base_seconds": 900,
             "restore_seconds_per_tb": 5400, "instance_seconds": 900, "rename_seconds": 60, "drain_seconds": 5}


KEY_ARN = re.compile(r"\Aarn:aws[a-z-]*:kms:([a-z0-9-]+):([0-9]{12}):key/[A-Za-z0-9-]+\Z")


KEY_ALIAS = re.compile(r"\Aalias/[A-Za-z0-9_/+=,.@-]+\Z")


REQUEST_FIELDS = {"account_id", "region", "cluster_id", "snapshot_id", "target_key", "role_name", "approval_timeout_seconds",
                  "soak_seconds", "metrics_settle_seconds", "replace_key", "finding", "requested_by"}


def _bounded_seconds(request: dict, name: str, low: int, high: int) -> None:
    value = request.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
        raise InvalidRequest(f"{name} must be a whole number of seconds from {low} to {high}, got {value!r}")


def validate_request(request: dict, resource_field: str = "cluster_id") -> None:
    if not isinstance(request, dict):
        raise InvalidRequest("the request must be a JSON object")
    unknown = sorted(set(request) - REQUEST_FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown request fields: {', '.join(unknown)}")
    for name in ("account_id", "region", resource_field, "target_key"):
        if not isinstance(request.get(name), str) or not request[name]:
            raise InvalidRequest(f"missing or malformed field {name!r}")
    if not aws.ACCOUNT_ID.match(request["account_id"]):
        raise InvalidRequest(f"account_id must be 12 digits, got {request['account_id']!r}")
    if not aws.REGION_NAME.match(request["region"]):
        raise InvalidRequest(f"not a region: {request['region']!r}")
    if resource_field == "cluster_id" and not naming.is_identifier(request["cluster_id"]):
        raise InvalidRequest(f"not a Neptune cluster identifier: {request['cluster_id']!r}")
    if resource_field == "snapshot_id" and not re.fullmatch(r"(rds:)?[a-zA-Z](?!.*--)[a-zA-Z0-9-]{0,250}(?<!-)", request["snapshot_id"]):
        raise InvalidRequest(f"not a cluster snapshot identifier: {request['snapshot_id']!r}")
    if request.get("role_name") is not None and not re.fullmatch(r"[A-Za-z0-9_+=,.@-]{1,64}", str(request["role_name"])):
        raise InvalidRequest(f"not a role name: {request['role_name']!r}")
    _bounded_seconds(request, "approval_timeout_seconds", 1, 7 * 24 * 3600)
    _bounded_seconds(request, "soak_seconds", 0, 365 * 24 * 3600)
    _bounded_seconds(request, "metrics_settle_seconds", 0, 3600)
    key = request["target_key"]
    arn = KEY_ARN.match(key)
    if not arn and not KEY_ALIAS.match(key):
        raise InvalidRequest(f"target_key must be a KMS key ARN or an alias name, got {key!r}")
    if key.startswith("alias/aws/"):
        raise InvalidRequest(f"{key} is an AWS-managed key: the target must be a customer-managed key")
    if arn and arn.group(1) != request["region"]:
        raise InvalidRequest(f"the key {key} is in {arn.group(1)}, the resource in {request['region']}")


def allowed_key_arns() -> frozenset[str]:
    """Keys of other accounts that the deployment explicitly allows as targets (ALLOWED_TARGET_KEY_ARNS)."""
    return frozenset(k.strip() for k in os.environ.get("ALLOWED_TARGET_KEY_ARNS", "").split(",") if k.strip())


def validated_key(kms, request: dict) -> dict:
    """The target key's metadata, if it is a customer-managed, Enabled key in the resource's region, owned by
    the resource's account or explicitly allowed by the deployment."""
    try:
        key = kms.describe_key(KeyId=request["target_key"])["KeyMetadata"]
    except ClientError as error:
        raise InvalidRequest(f"cannot use key {request['target_key']}: {error.response['Error']['Message']}") from error
    if key["KeyManager"] != "CUSTOMER":
        raise InvalidRequest(f"{request['target_key']} is an AWS-managed key: the target must be a customer-managed key")
    if key["KeyState"] != "Enabled":
        raise InvalidRequest(f"key {key['Arn']} is {key['KeyState']}, not Enabled")
    arn = parse_arn(key["Arn"], "key ARN")
    if arn["region"] != request["region"]:
        raise InvalidRequest(f"key {key['Arn']} is not in the resource's region {request['region']}")
    if arn["account"] != request["account_id"] and key["Arn"] not in allowed_key_arns():
        raise InvalidRequest(f"key {key['Arn']} belongs to account {arn['account']}, not to the resource's account "
                             f"{request['account_id']}, and is not in the deployment's ALLOWED_TARGET_KEY_ARNS")
    return key


def if_left_behind(arn: str, tags: dict[str, str], keys: list[str], also: str = "") -> str:
    """What on-call does when the execution a tag names has ended without taking it off (stopped by hand, or its
    rollback failed): the tags would hold the resource against every later plan. Only tags naming an execution."""
    named = [k for k in keys if ":execution:" in tags[k]]
    if not named:
        return ""
    executions = sorted({tags[k] for k in named})
    return (f" If {'that execution has' if len(executions) == 1 else 'those executions have'} ended (neptune-guard status "
            f"{' / '.join(executions)}), the tags were left behind: remove them{also} with aws rds remove-tags-from-resource "
            f"--region {arn.split(':')[3]} --resource-name {arn} --tag-keys {' '.join(named)}")


def _refuse_unless_ours_to_remediate(cluster: dict, tags: dict[str, str]) -> None:
    if RETIRED_BY in tags:
        raise InvalidRequest(f"{cluster['DBClusterIdentifier']} is an original retained by {tags[RETIRED_BY]} until "
                             f"{tags.get(RETAINED_UNTIL)}: it is decommissioned by that execution, not re-encrypted")
    for key in (CREATED_BY, CUTOVER):
        if key in tags:
            raise InvalidRequest(f"{cluster['DBClusterIdentifier']} is part of remediation {tags[key]} ({key}); "
                                 "one remediation per cluster at a time."
                                 + if_left_behind(cluster["DBClusterArn"], tags, [key],
                                                  " (and from its instances and custom endpoints)" if key == CUTOVER else ""))
    if cluster.get("GlobalClusterIdentifier"):
        raise InvalidRequest(f"{cluster['DBClusterIdentifier']} is a member of global database {cluster['GlobalClusterIdentifier']}: "
                             "a restore cannot rejoin it; remove it from the global database first (Neptune's documented "
                             "procedure), then remediate, then add the new cluster back")


def current_key_is_customer_managed(kms, cluster: dict) -> bool:
    if not cluster.get("StorageEncrypted"):
        return False
    try:
        return kms.describe_key(KeyId=cluster["KmsKeyId"])["KeyMetadata"]["KeyManager"] == "CUSTOMER"
    except ClientError:
        return True  # another account's key, which only a customer-managed key can be


def cluster_names(cluster_id: str, instance_ids: list[str], execution: str) -> dict:
    """Every name this execution gives: derived from the cluster's and instances' identifiers and the
    execution, so a stale resource of an earlier run can never carry one of them."""
    token = naming.execution_token(execution)
    instances = {i: {"new_id": naming.derived(i, "cmk", token), "retired_id": naming.derived(i, "retired", token)} for i in instance_ids}
    for role in ("new_id", "retired_id"):
        given: dict[str, str] = {}
        for instance, derived in instances.items():
            if derived[role] in given:  # the suffix is kept whole, so two long identifiers alike at the start collide
                raise InvalidRequest(f"instances {given[derived[role]]} and {instance} would both be named {derived[role]} by this "
                                     "remediation (their identifiers agree as far as a name has room for): rename one, then plan again")
            given[derived[role]] = instance
    return {
        "snapshot_id": naming.derived(cluster_id, "pre-cmk", token, naming.MAX_SNAPSHOT_IDENTIFIER),
        "archive_snapshot_id": naming.derived(cluster_id, "archive", token, naming.MAX_SNAPSHOT_IDENTIFIER),
        "final_snapshot_id": naming.derived(cluster_id, "final", token, naming.MAX_SNAPSHOT_IDENTIFIER),
        "archive_cluster_id": naming.derived(cluster_id, "archive", token),
        "new_cluster_id": naming.derived(cluster_id, "cmk", token),
        "retired_cluster_id": naming.derived(cluster_id, "retired", token),
        "instances": instances,
    }


def plan_cluster(step: Step) -> dict:
    """Read the cluster, its instances and the key; refuse what cannot be done safely; list what will be carried."""
    request = step.request
    validate_request(request)
    neptune, kms = step.neptune, step.client("kms")
    cluster = describe_cluster(neptune, request["cluster_id"])
    if cluster is None or cluster.get("Engine") != "neptune":
        raise InvalidRequest(f"no Neptune cluster {request['cluster_id']} in {request['account_id']} {request['region']}")
    cluster_tags = tags_of(neptune, cluster["DBClusterArn"])
    _refuse_unless_ours_to_remediate(cluster, cluster_tags)
    if cluster["Status"] != "available":
        raise InvalidRequest(f"cluster {request['cluster_id']} is {cluster['Status']}, not available")
    key = validated_key(kms, request)
    if cluster.get("StorageEncrypted") and cluster.get("KmsKeyId") == key["Arn"]:
        raise InvalidRequest(f"cluster {request['cluster_id']} is already encrypted with {key['Arn']}")
    if current_key_is_customer_managed(kms, cluster) and not request.get("replace_key"):
        raise InvalidRequest(f"cluster {request['cluster_id']} is already on the customer-managed key {cluster['KmsKeyId']}; "
                             "replacing one CMK with another must be asked for explicitly (replace_key)")
    cluster_id = cluster["DBClusterIdentifier"]
    members = sorted(cluster.get("DBClusterMembers", []), key=lambda m: not m.get("IsClusterWriter"))
    names = cluster_names(cluster_id, [m["DBInstanceIdentifier"] for m in members], step.execution)
    described = instances_in(neptune, [cluster_id])
    instances = []
    for member in members:
        instance = described[member["DBInstanceIdentifier"]]
        if CUTOVER in tags_of(neptune, instance["DBInstanceArn"]):
            raise InvalidRequest(f"instance {instance['DBInstanceIdentifier']} is part of another remediation")
        instances.append({
            "id": instance["DBInstanceIdentifier"],
            **names["instances"][instance["DBInstanceIdentifier"]],
            "writer": bool(member.get("IsClusterWriter")),
            "create": {k: v for k, v in {
                "DBInstanceClass": instance["DBInstanceClass"],
                "PromotionTier": instance.get("PromotionTier", 1),
                "AvailabilityZone": instance.get("AvailabilityZone"),
                "DBParameterGroupName": (instance.get("DBParameterGroups") or [{}])[0].get("DBParameterGroupName"),
                "AutoMinorVersionUpgrade": instance.get("AutoMinorVersionUpgrade"),
                "PreferredMaintenanceWindow": instance.get("PreferredMaintenanceWindow"),
                "Tags": customer_tags(neptune.list_tags_for_resource(ResourceName=instance["DBInstanceArn"]).get("TagList", [])),
            }.items() if v is not None},
            "ca_certificate": instance.get("CACertificateIdentifier"),
        })
    restore = {
        "VpcSecurityGroupIds": [g["VpcSecurityGroupId"] for g in cluster.get("VpcSecurityGroups", [])],
        "DBSubnetGroupName": cluster.get("DBSubnetGroup"),
        "DBClusterParameterGroupName": cluster.get("DBClusterParameterGroup"),
        "EnableIAMDatabaseAuthentication": bool(cluster.get("IAMDatabaseAuthenticationEnabled")),
        "EnableCloudwatchLogsExports": cluster.get("EnabledCloudwatchLogsExports", []),
        "DeletionProtection": bool(cluster.get("DeletionProtection")),
        "CopyTagsToSnapshot": bool(cluster.get("CopyTagsToSnapshot")),
        "Port": cluster.get("Port"),
        "EngineVersion": cluster.get("EngineVersion"),
        "StorageType": cluster.get("StorageType"),
        "ServerlessV2ScalingConfiguration": cluster.get("ServerlessV2ScalingConfiguration"),
    }
    modify = {
        "BackupRetentionPeriod": cluster.get("BackupRetentionPeriod", 1),
        "PreferredBackupWindow": cluster.get("PreferredBackupWindow"),
        "PreferredMaintenanceWindow": cluster.get("PreferredMaintenanceWindow"),
    }
    endpoints = custom_endpoints(neptune, cluster_id)
    old_resource_id = cluster["DbClusterResourceId"]
    # The data-access ARN names the resource id, which is `cluster-...` already (iam-data-resources.html)
    iam_resource = f"arn:{parse_arn(cluster['DBClusterArn'])['partition']}:neptune-db:{request['region']}:{request['account_id']}:{old_resource_id}/*"
    soak = request.get("soak_seconds", DEFAULT_SOAK_SECONDS)
    approval_timeout = request.get("approval_timeout_seconds", DEFAULT_APPROVAL_TIMEOUT_SECONDS)
    estimates = estimated_waits(volume_bytes(step.client("cloudwatch"), cluster_id), len(instances))
    # Replication needs the stream's records from the snapshot to the cutover. The decommission proof needs none of
    # them: it looks for records after the cutover's position, and one expired there keeps the original (never a
    # delete on an unproven stream).
    streams = streams_path(neptune, step.client("ec2"), step.client("lambda"), cluster, estimates["until_cutover_seconds"] + approval_timeout)
    return {
        "kind": "cluster-plan",
        "execution": step.execution,
        "cluster_id": cluster_id,
        "cluster_arn": cluster["DBClusterArn"],
        "cluster_resource_id": old_resource_id,  # immutable; the ARN follows renames
        "original_encrypted": bool(cluster.get("StorageEncrypted")),
        "original_key": cluster.get("KmsKeyId") if cluster.get("StorageEncrypted") else None,
        "target_key_arn": key["Arn"],
        **{k: v for k, v in names.items() if k != "instances"},
        "restore": {k: v for k, v in restore.items() if v not in (None, [], {})}
                   | {"Tags": customer_tags(tag_list(cluster_tags)) + created_by(step.execution)},
        "modify": {k: v for k, v in modify.items() if v is not None},
        "roles": [{"RoleArn": r["RoleArn"], **({"FeatureName": r["FeatureName"]} if r.get("FeatureName") else {})}
                  for r in cluster.get("AssociatedRoles", [])],
        "instances": instances,
        "iam_authentication": {
            "enabled": bool(cluster.get("IAMDatabaseAuthenticationEnabled")),
            "old_resource_id": old_resource_id,
            "policy_resource": iam_resource,
            "find_policies": ("aws iam get-account-authorization-details --output json | "
                              f"grep -n '{old_resource_id}'"),
        },
        "approval_timeout_seconds": request.get("approval_timeout_seconds", DEFAULT_APPROVAL_TIMEOUT_SECONDS),
        "metrics_settle_seconds": max(request.get("metrics_settle_seconds", DEFAULT_METRICS_SETTLE_SECONDS), MINIMUM_METRICS_SETTLE_SECONDS),
        "soak_seconds": soak,
        "retained_check_seconds": min(RETAINED_CHECK_SECONDS, soak),
        "custom_endpoints": endpoints,
        "summary": (f"Re-encrypted under {key['Arn']}; the original is retained, stopped, as {names['retired_cluster_id']} "
                    f"for {soak // 86400} days, then archived under the key and deleted after on-call approval."),
        "path": streams["path"],
        "streams": streams,
        "estimates": estimates,
        "questions": {
            "snapshot": (f"Approve re-encryption of Neptune cluster {cluster_id} in {request['account_id']} {request['region']} under "
                         f"{key['Arn']}? " + (
                             "Neptune Streams path: the application KEEPS WRITING; the workflow snapshots, restores under the key and "
                             "replicates every change from the stream into the new cluster until the cutover, where writes pause "
                             f"for about {estimates['write_pause_seconds']['streams']} s. Not carried: RDF blank nodes stop it "
                             "(rolled back, nothing lost); if the application writes them, reject: with neptune_streams off (a "
                             "reboot) the plan takes the freeze path."
                             if streams["path"] == "streams" else
                             f"Freeze path ({streams['why']}): STOP ALL WRITES to {cluster_id} before approving, until the cutover "
                             f"(about {estimates['write_pause_seconds']['freeze'] // 60} minutes for this cluster): the workflow first "
                             "checks that CloudWatch shows no write for ten minutes, then snapshots it, and refuses the cutover if any "
                             "write reaches it after the snapshot.")),
            "cutover": (f"Approve cutover: {names['new_cluster_id']} (verified, encrypted with {key['Arn']}) takes the name "
                        f"{cluster_id}; the original becomes {names['retired_cluster_id']}, stopped, retained "
                        f"{soak // 86400} days, then decommissioned after a third approval."),
            "decommission": (f"Approve decommissioning {names['retired_cluster_id']} (the original of {cluster_id}): archive it under "
                             f"{key['Arn']} as {names['archive_snapshot_id']}, then delete it, its automated backups and the "
                             f"workflow's snapshot {names['snapshot_id']}?"),
        },
    }


def cluster_parameters(neptune, group: str | None) -> dict[str, str]:
    if not group:
        return {}
    pages = neptune.get_paginator("describe_db_cluster_parameters").paginate(DBClusterParameterGroupName=group)
    return {p["ParameterName"]: str(p.get("ParameterValue")) for page in pages for p in page["Parameters"] if "ParameterValue" in p}


def streams_path(neptune, ec2, lam, cluster: dict, needed_seconds: int) -> dict:
    """The streams path when the cluster's stream is on (applied on every instance), outlives the rebuild and the
    cutover approval, its security groups admit something the replicator can join (network.py), and the region can
    run the signed replicator (replicator_package.py; not checked where no package is configured, as in the CLI's
    preview); otherwise the freeze path, and why. https://docs.aws.amazon.com/neptune/latest/userguide/streams-using-enabling.html"""
    parameters = cluster_parameters(neptune, cluster.get("DBClusterParameterGroup"))
    expiry_days = int(parameters.get("neptune_streams_expiry_days", STREAMS_DEFAULT_EXPIRY_DAYS))
    pending = [m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", []) if m.get("DBClusterParameterGroupStatus") != "in-sync"]
    group = cluster.get("DBClusterParameterGroup")
    how = (f"set neptune_streams to 1 in the cluster parameter group {group}, then reboot every instance (a reboot on-call "
           "schedules), then plan again")
    if parameters.get("neptune_streams") != "1":
        return {"path": "freeze", "why": "Neptune Streams is off", "enable": how, "expiry_days": expiry_days}
    if pending:
        return {"path": "freeze", "why": f"neptune_streams waits for a reboot of {', '.join(pending)}", "enable": how, "expiry_days": expiry_days}
    if expiry_days * 86400 < needed_seconds:
        raise InvalidRequest(f"the stream of {cluster['DBClusterIdentifier']} keeps records {expiry_days} days, shorter than the "
                             f"{needed_seconds // 3600} hours this remediation may need from the snapshot to the cutover (the "
                             "rebuild and the cutover question): raise neptune_streams_expiry_days (up to 90) or shorten "
                             "approval_timeout_seconds")
    subnets = neptune.describe_db_subnet_groups(DBSubnetGroupName=cluster["DBSubnetGroup"])["DBSubnetGroups"][0] if cluster.get("DBSubnetGroup") else None
    if subnets is None:
        return {"path": "freeze", "why": "the cluster has no subnet group for the replicator to join", "expiry_days": expiry_days}
    groups = sorted(g["VpcSecurityGroupId"] for g in cluster.get("VpcSecurityGroups", []))
    subnet_ids, port = sorted(s["SubnetIdentifier"] for s in subnets["Subnets"]), cluster.get("Port") or 8182
    reach = network.describe_reach(ec2, port, subnets["VpcId"], groups, subnet_ids)
    if reach is None:
        return {"path": "freeze", "expiry_days": expiry_days,
                "why": (f"its security groups admit on port {port} neither a security group nor an IPv4 range the replicator could "
                        "join (it joins what admits the application, and changes no group)"),
                "enable": (f"admit the application's security group (or its subnets' range) on port {port} in a rule of one of "
                           f"{cluster['DBClusterIdentifier']}'s security groups, then plan again")}
    signing = replicator_package.configured()
    if signing is not None and replicator_package.code_signing_config(lam, signing[1]) is None:
        return {"path": "freeze", "expiry_days": expiry_days,
                "why": "this account and region have no Neptune Guard code-signing configuration, so no replicator can be made here",
                "enable": "deploy the NeptuneGuardMemberEvents StackSet's instance in this account and region, then plan again"}
    return {"path": "streams", "why": "Neptune Streams is on: the application keeps writing until a pause of seconds at the cutover",
            "expiry_days": expiry_days,
            "network": {"vpc_id": subnets["VpcId"], "subnets": subnet_ids, "security_groups": groups, "port": port, "reach": reach}}


def volume_bytes(cloudwatch, cluster_id: str) -> int | None:
    """The cluster volume's size (VolumeBytesUsed, the largest of the last day), None where CloudWatch has none."""
    now = utcnow()
    found = cloudwatch.get_metric_statistics(Namespace="AWS/Neptune", MetricName="VolumeBytesUsed", StartTime=now - timedelta(days=1),
                                             EndTime=now, Period=3600, Statistics=["Maximum"],
                                             Dimensions=[{"Name": "DBClusterIdentifier", "Value": cluster_id}])["Datapoints"]
    return int(max(d["Maximum"] for d in found)) if found else None


def estimated_waits(size: int | None, instances: int) -> dict:
    """Each wait, estimated from the volume's size (ESTIMATES says where the rates come from); an unknown size counts
    as 1 TB. The ASL's waits poll long enough for the largest volume Neptune allows (128 TiB)."""
    terabytes = max((size if size is not None else 10**12) / 10**12, 0.01)
    snapshot = int(ESTIMATES["snapshot_base_seconds"] + terabytes * ESTIMATES["snapshot_seconds_per_tb"])
    restore = int(ESTIMATES["restore_base_seconds"] + terabytes * ESTIMATES["restore_seconds_per_tb"])
    instance = int(ESTIMATES["instance_seconds"])
    until_cutover = snapshot + restore + instance
    rename = int(ESTIMATES["rename_seconds"])
    return {"volume_bytes": size, "snapshot_seconds": snapshot, "restore_seconds": restore, "instances_seconds": instance,
            "until_cutover_seconds": until_cutover,
            "write_pause_seconds": {"streams": int(ESTIMATES["drain_seconds"] + 2 * rename),
                                    "freeze": until_cutover + QUIET_BEFORE_SNAPSHOT_SECONDS + MINIMUM_METRICS_SETTLE_SECONDS + 2 * rename},
            "nameless_seconds": {"streams": rename, "freeze": MINIMUM_METRICS_SETTLE_SECONDS + rename}}
