"""Re-encrypting a Neptune cluster under a customer-managed key: the plan and the workflow's steps.

The state machine (state_machines/cluster_remediation.asl.json) calls one step at a time, each a
function of a `Step` (the request, the plan, the state so far). Every step is idempotent and
convergent: it looks at what is there, does the next thing, and raises ResourceNotReady while AWS is
still working, so that the waiting and the back-off live in the ASL. A step touches only what carries
this execution's tag (see rds_resources); all AWS calls go through the member account's remediation role.

Write safety: the application must stop writing before the snapshot. The workflow measures, from the
original's CloudWatch metrics, every index insert, index delete and bulk-load request since the
snapshot: before asking for the cutover, and again after the original has been renamed away (its
endpoint no longer resolves) and the metrics have had time to arrive. Any write, and the new cluster
never takes the name: the original is renamed back and keeps serving, unless on-call explicitly
approved with --accept-write-loss, which the execution records.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta, timezone

import boto3
from botocore.exceptions import ClientError

from neptune_guard import aws
from neptune_guard.remediate import live_cutover, naming
from neptune_guard.remediate.resources import (
    CREATED_BY,
    CUTOVER,
    DECOMMISSION_APPROVED_BY,
    REMEDIATED_BY,
    REPLACED_BY,
    RETAINED_UNTIL,
    RETIRED_BY,
    TAG_PREFIX,
    InvalidRequest,
    NotOurs,
    ResourceNotReady,
    Step,
    VerificationFailed,
    adopt_or_create,
    created_by,
    customer_tags,
    describe_cluster,
    describe_snapshot,
    instances_in,
    parse_arn,
    require_available_cluster,
    require_available_snapshot,
    require_ours,
    tag_list,
    tags_of,
)

DEFAULT_APPROVAL_TIMEOUT_SECONDS = 24 * 3600
DEFAULT_SOAK_SECONDS = 7 * 24 * 3600
RETAINED_CHECK_SECONDS = 24 * 3600  # Neptune restarts a stopped cluster after 7 days: look once a day
# Neptune publishes its metrics at 1 to 5 minute granularity, and only non-zero values: two 5-minute
# periods after the original stopped answering under its name, every write it took is visible.
DEFAULT_METRICS_SETTLE_SECONDS = 600
MINIMUM_METRICS_SETTLE_SECONDS = 300  # Neptune's coarsest metric period: a shorter settle could miss a write
STREAMS_DEFAULT_EXPIRY_DAYS = 7  # neptune_streams_expiry_days when the parameter group leaves it out
# Rates behind the plan's estimates (seconds). Restore: "can take up to a few hours" for a large volume
# (https://docs.aws.amazon.com/neptune/latest/userguide/backup-restore-restore-snapshot.html); snapshots are
# incremental storage copies; a rename is a metadata change whose DNS follows in about a minute
# (https://docs.aws.amazon.com/neptune/latest/userguide/manage-console-rename.html). Conservative, not measured in AWS.
ESTIMATES = {"snapshot_base_seconds": 300, "snapshot_seconds_per_tb": 1800, "restore_base_seconds": 900,
             "restore_seconds_per_tb": 5400, "instance_seconds": 900, "rename_seconds": 60, "drain_seconds": 5}
WRITE_METRICS = ("NumIndexInsertsPerSec", "NumIndexDeletesPerSec", "LoaderRequestsPerSec")
SERVED = TAG_PREFIX + "served-production"  # set on the new cluster just before it takes the production name
ARCHIVED_BY = TAG_PREFIX + "archived-by"  # the archive of a decommissioned original: the customer's, never deleted by us
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


def _refuse_unless_ours_to_remediate(cluster: dict, tags: dict[str, str]) -> None:
    if RETIRED_BY in tags:
        raise InvalidRequest(f"{cluster['DBClusterIdentifier']} is an original retained by {tags[RETIRED_BY]} until "
                             f"{tags.get(RETAINED_UNTIL)}: it is decommissioned by that execution, not re-encrypted")
    for key in (CREATED_BY, CUTOVER):
        if key in tags:
            raise InvalidRequest(f"{cluster['DBClusterIdentifier']} is part of remediation {tags[key]} ({key}); "
                                 "one remediation per cluster at a time")
    if cluster.get("GlobalClusterIdentifier"):
        raise InvalidRequest(f"{cluster['DBClusterIdentifier']} is a member of global database {cluster['GlobalClusterIdentifier']}: "
                             "a restore cannot rejoin it; remove it from the global database first (Neptune's documented "
                             "procedure), then remediate, then add the new cluster back")


def _current_key_is_customer_managed(kms, cluster: dict) -> bool:
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
    return {
        "snapshot_id": naming.derived(cluster_id, "pre-cmk", token, naming.MAX_SNAPSHOT_IDENTIFIER),
        "archive_snapshot_id": naming.derived(cluster_id, "archive", token, naming.MAX_SNAPSHOT_IDENTIFIER),
        "final_snapshot_id": naming.derived(cluster_id, "final", token, naming.MAX_SNAPSHOT_IDENTIFIER),
        "archive_cluster_id": naming.derived(cluster_id, "archive", token),
        "new_cluster_id": naming.derived(cluster_id, "cmk", token),
        "retired_cluster_id": naming.derived(cluster_id, "retired", token),
        "instances": {i: {"new_id": naming.derived(i, "cmk", token), "retired_id": naming.derived(i, "retired", token)}
                      for i in instance_ids},
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
    if _current_key_is_customer_managed(kms, cluster) and not request.get("replace_key"):
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
    iam_resource = f"arn:{parse_arn(cluster['DBClusterArn'])['partition']}:neptune-db:{request['region']}:{request['account_id']}:cluster-{old_resource_id}/*"
    soak = request.get("soak_seconds", DEFAULT_SOAK_SECONDS)
    approval_timeout = request.get("approval_timeout_seconds", DEFAULT_APPROVAL_TIMEOUT_SECONDS)
    estimates = estimated_waits(volume_bytes(step.client("cloudwatch"), cluster_id), len(instances))
    # Replication needs the stream's records from the snapshot to the cutover. The decommission proof needs none of
    # them: it looks for records after the cutover's position, and one expired there keeps the original (never a
    # delete on an unproven stream).
    streams = streams_path(neptune, cluster, estimates["until_cutover_seconds"] + approval_timeout)
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
                              f"grep -n 'cluster-{old_resource_id}'"),
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
                             f"for about {estimates['write_pause_seconds']['streams']} s. Not carried: RDF blank nodes and labels "
                             "removed from a vertex that lives on stop it (rolled back, nothing lost); a label ADDED to an existing "
                             "vertex (openCypher SET n:Label) would not reach the new cluster. If the application does that, "
                             "reject: with neptune_streams off (a reboot) the plan takes the freeze path."
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


def streams_path(neptune, cluster: dict, needed_seconds: int) -> dict:
    """The streams path when the cluster's stream is on (applied on every instance) and outlives the rebuild and the
    cutover approval; otherwise the freeze path, and why. https://docs.aws.amazon.com/neptune/latest/userguide/streams-using-enabling.html"""
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
    return {"path": "streams", "why": "Neptune Streams is on: the application keeps writing until a pause of seconds at the cutover",
            "expiry_days": expiry_days,
            "network": {"vpc_id": subnets["VpcId"], "subnets": sorted(s["SubnetIdentifier"] for s in subnets["Subnets"]),
                        "security_groups": sorted(g["VpcSecurityGroupId"] for g in cluster.get("VpcSecurityGroups", [])),
                        "port": cluster.get("Port") or 8182}}


def volume_bytes(cloudwatch, cluster_id: str) -> int | None:
    """The cluster volume's size (VolumeBytesUsed, the largest of the last day), None where CloudWatch has none."""
    now = _utcnow()
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


def custom_endpoints(neptune, cluster_id: str) -> list[dict]:
    """The cluster's custom endpoints, as CreateDBClusterEndpoint takes them back: a restore does not carry them."""
    found = neptune.describe_db_cluster_endpoints(DBClusterIdentifier=cluster_id,
                                                  Filters=[{"Name": "db-cluster-endpoint-type", "Values": ["custom"]}])
    return [{"id": e["DBClusterEndpointIdentifier"], "type": e["CustomEndpointType"], "arn": e["DBClusterEndpointArn"],
             "static_members": e.get("StaticMembers", []), "excluded_members": e.get("ExcludedMembers", []),
             "tags": customer_tags(neptune.list_tags_for_resource(ResourceName=e["DBClusterEndpointArn"]).get("TagList", []))}
            for e in found["DBClusterEndpoints"]]


def _describe_endpoint(neptune, identifier: str) -> dict | None:
    try:
        found = neptune.describe_db_cluster_endpoints(DBClusterEndpointIdentifier=identifier)["DBClusterEndpoints"]
    except ClientError as error:
        if error.response["Error"]["Code"] == "DBClusterEndpointNotFoundFault":
            return None
        raise
    return found[0] if found else None


def _converge_endpoints(step: Step) -> bool:
    """Every planned custom endpoint on whichever cluster holds the production name, under its own identifier (so
    its DNS name stays); True when nothing is left to do. An endpoint is moved only if it carries this execution's
    cutover tag."""
    plan, neptune = step.plan, step.neptune
    done = True
    for endpoint in plan.get("custom_endpoints", []):
        found = _describe_endpoint(neptune, endpoint["id"])
        if found is not None and found["DBClusterIdentifier"] == plan["cluster_id"]:
            done = done and found["Status"] == "available"
            continue
        done = False
        if found is not None:
            if tags_of(neptune, found["DBClusterEndpointArn"]).get(CUTOVER) != step.execution:
                raise NotOurs(f"custom endpoint {endpoint['id']} is not marked for execution {step.execution}")
            if found["Status"] != "deleting":
                neptune.delete_db_cluster_endpoint(DBClusterEndpointIdentifier=endpoint["id"])
            continue
        members = {k: v for k, v in (("StaticMembers", endpoint["static_members"]), ("ExcludedMembers", endpoint["excluded_members"])) if v}
        neptune.create_db_cluster_endpoint(DBClusterIdentifier=plan["cluster_id"], DBClusterEndpointIdentifier=endpoint["id"],
                                           EndpointType=endpoint["type"], **members,
                                           Tags=endpoint["tags"] + [{"Key": CUTOVER, "Value": step.execution}])
    return done


def move_custom_endpoints(step: Step) -> dict:
    """After the new cluster took the production name: its custom endpoints, recreated with their type and members."""
    if not _converge_endpoints(step):
        raise ResourceNotReady("moving the custom endpoints to the serving cluster")
    return {"custom_endpoints": [e["id"] for e in step.plan.get("custom_endpoints", [])]}


def request_approval(step: Step, stage: str, task_token: str) -> dict:
    """Tell on-call what is asked of them; the execution waits for `approve` or `reject`."""
    from neptune_guard.remediate import notifications

    plan, state = step.plan, step.state
    requested_at = _utcnow()
    deadline = _iso(requested_at + timedelta(seconds=int(plan.get("approval_timeout_seconds", DEFAULT_APPROVAL_TIMEOUT_SECONDS))))
    question = plan["questions"][stage]
    detail = {"plan": plan}
    writes_detected = False
    if stage == "cutover" and plan.get("path") == "streams":
        replication = state.get("replication", {})
        detail["replication_lag"] = {k: replication.get(k) for k in ("lag_records", "lag_seconds", "latest", "positions")}
        question = (f"The new cluster is {replication.get('lag_records')} records ({replication.get('lag_seconds')} s) behind "
                    f"{plan['cluster_id']}, replicating continuously. STOP WRITES to {plan['cluster_id']}, then approve: the "
                    "workflow drains to the original's last committed event, proves the new cluster's position equals it "
                    "(commit and operation numbers), and swaps the names; resume writes when the execution reports CUT_OVER. "
                    f"Replication looks for your answer every {replication.get('pause_seconds', 5)} s now, less often the longer "
                    "it waits (never more than a tenth of the wait): stop writes just before you answer. " + question)
    if stage == "cutover":
        writes = state.get("write_check", {})
        detail["write_activity"] = writes
        writes_detected = bool(writes.get("writes_detected"))
        if writes_detected:
            question = (f"WRITES DETECTED on {plan['cluster_id']} after its snapshot ({writes['metrics']}). A cutover "
                        "now would lose them. Reject (the original keeps serving; re-run once writes are stopped), "
                        "or approve with --accept-write-loss to lose them on purpose. " + question)
        new_id = state.get("verified", {}).get("resource_id")
        detail["iam_authentication"] = {
            **plan["iam_authentication"], "new_resource_id": new_id,
            "update": (f"IAM policies granting neptune-db:* on cluster-{plan['cluster_resource_id']} must name "
                       f"cluster-{new_id} after the cutover"),
        }
    send_notification(notifications.approval(step.execution, stage, step.request, question, deadline, writes_detected, detail))
    return {"requested_at": _iso(requested_at)}


def mark_original(step: Step) -> dict:
    """After the first approval: confirm the original, its instances and its custom endpoints carry this execution's
    cutover mark, which the approval endpoint wrote (approval_marks.py) and which alone lets the remediation role
    snapshot, rename and stop them; and that they are still what was planned."""
    plan, neptune = step.plan, step.neptune
    cluster = describe_cluster(neptune, plan["cluster_id"])
    if cluster is None or cluster["DbClusterResourceId"] != plan["cluster_resource_id"]:
        raise NotOurs(f"{plan['cluster_id']} is no longer the cluster that was planned and approved")
    tags = tags_of(neptune, cluster["DBClusterArn"])
    if tags.get(CUTOVER, step.execution) != step.execution or RETIRED_BY in tags or CREATED_BY in tags:
        raise NotOurs(f"{plan['cluster_id']} is already part of remediation {tags.get(CUTOVER) or tags.get(RETIRED_BY) or tags.get(CREATED_BY)}")
    members = sorted(m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", []))
    if members != sorted(i["id"] for i in plan["instances"]):
        raise NotOurs(f"the instances of {plan['cluster_id']} changed since the plan: {members}")
    endpoints = custom_endpoints(neptune, plan["cluster_id"])
    if sorted(e["id"] for e in endpoints) != sorted(e["id"] for e in plan.get("custom_endpoints", [])):
        raise NotOurs(f"the custom endpoints of {plan['cluster_id']} changed since the plan")
    covered = [cluster["DBClusterArn"], *(i["DBInstanceArn"] for i in instances_in(neptune, [plan["cluster_id"]]).values()),
               *(e["arn"] for e in endpoints)]
    unmarked = [arn for arn in covered if tags_of(neptune, arn).get(CUTOVER) != step.execution]
    if unmarked:
        raise NotOurs(f"the snapshot approval's mark is missing on {', '.join(unmarked)}: approve through the approval endpoint")
    return {"marked": [plan["cluster_id"], *members, *(e["id"] for e in endpoints)]}


def unmark_original(step: Step) -> dict:
    """Nothing was done with the original after all (its writes did not stop): take off the marks the snapshot
    approval put on it for this execution, so that it is free for the next remediation."""
    plan, neptune = step.plan, step.neptune
    cluster = describe_cluster(neptune, plan["cluster_id"])
    if cluster is None or cluster["DbClusterResourceId"] != plan["cluster_resource_id"]:
        return {"unmarked": []}
    covered = [cluster["DBClusterArn"], *(i["DBInstanceArn"] for i in instances_in(neptune, [plan["cluster_id"]]).values()),
               *(e["arn"] for e in custom_endpoints(neptune, plan["cluster_id"]))]
    unmarked = [arn for arn in covered if tags_of(neptune, arn).get(CUTOVER) == step.execution]
    for arn in unmarked:
        neptune.remove_tags_from_resource(ResourceName=arn, TagKeys=[CUTOVER])
    return {"unmarked": unmarked}


def create_snapshot(step: Step) -> dict:
    plan, neptune = step.plan, step.neptune
    adopt_or_create(neptune, describe_snapshot(neptune, plan["snapshot_id"]), "DBClusterSnapshotArn", step.execution,
                    lambda: neptune.create_db_cluster_snapshot(DBClusterSnapshotIdentifier=plan["snapshot_id"],
                                                               DBClusterIdentifier=plan["cluster_id"], Tags=created_by(step.execution)))
    return {"snapshot_id": plan["snapshot_id"]}


def snapshot_available(step: Step) -> dict:
    plan, neptune = step.plan, step.neptune
    snapshot = require_available_snapshot(neptune, plan["snapshot_id"])
    require_ours(neptune, snapshot, "DBClusterSnapshotArn", step.execution)
    return {"snapshot_id": plan["snapshot_id"], "created_at": _iso(snapshot["SnapshotCreateTime"])}


def restore_cluster(step: Step) -> dict:
    plan, neptune = step.plan, step.neptune

    def restore():
        snapshot = describe_snapshot(neptune, plan["snapshot_id"])
        if snapshot is None:
            raise NotOurs(f"the workflow's snapshot {plan['snapshot_id']} is gone")
        require_ours(neptune, snapshot, "DBClusterSnapshotArn", step.execution)
        neptune.restore_db_cluster_from_snapshot(DBClusterIdentifier=plan["new_cluster_id"], SnapshotIdentifier=plan["snapshot_id"],
                                                 Engine="neptune", KmsKeyId=plan["target_key_arn"], **plan["restore"])

    adopt_or_create(neptune, describe_cluster(neptune, plan["new_cluster_id"]), "DBClusterArn", step.execution, restore)
    return {"cluster_id": plan["new_cluster_id"]}


def new_cluster_available(step: Step) -> dict:
    require_available_cluster(step.neptune, step.plan["new_cluster_id"])
    return {"status": "available"}


def apply_settings(step: Step) -> dict:
    """What the restore does not take: backup retention and windows, IAM roles with their feature names."""
    plan, neptune = step.plan, step.neptune
    cluster = require_available_cluster(neptune, plan["new_cluster_id"])
    require_ours(neptune, cluster, "DBClusterArn", step.execution)
    neptune.modify_db_cluster(DBClusterIdentifier=plan["new_cluster_id"], ApplyImmediately=True, **plan["modify"])
    present = {r["RoleArn"] for r in cluster.get("AssociatedRoles", [])}
    for role in plan["roles"]:
        if role["RoleArn"] not in present:
            neptune.add_role_to_db_cluster(DBClusterIdentifier=plan["new_cluster_id"], **role)
    return {"applied": sorted(plan["modify"]) + (["roles"] if plan["roles"] else [])}


def create_instances(step: Step) -> dict:
    plan, neptune = step.plan, step.neptune
    existing = instances_in(neptune, [plan["new_cluster_id"]])
    for instance in plan["instances"]:
        if instance["new_id"] in existing:
            require_ours(neptune, existing[instance["new_id"]], "DBInstanceArn", step.execution)
            continue
        create = instance["create"]
        neptune.create_db_instance(DBInstanceIdentifier=instance["new_id"], Engine="neptune", DBClusterIdentifier=plan["new_cluster_id"],
                                   **{**create, "Tags": create.get("Tags", []) + created_by(step.execution)})
    return {"instances": [i["new_id"] for i in plan["instances"]]}


def instances_available(step: Step) -> dict:
    """Waits for the new instances, then sets what CreateDBInstance does not take (the CA certificate)."""
    plan, neptune = step.plan, step.neptune
    described_by_id = instances_in(neptune, [plan["new_cluster_id"]])
    for instance in plan["instances"]:
        described = described_by_id.get(instance["new_id"])
        if described is None or described["DBInstanceStatus"] != "available":
            raise ResourceNotReady(f"instance {instance['new_id']} is {described and described['DBInstanceStatus']}")
    for instance in plan["instances"]:
        wanted = instance.get("ca_certificate")
        if wanted and described_by_id[instance["new_id"]].get("CACertificateIdentifier") != wanted:
            require_ours(neptune, described_by_id[instance["new_id"]], "DBInstanceArn", step.execution)
            neptune.modify_db_instance(DBInstanceIdentifier=instance["new_id"], CACertificateIdentifier=wanted, ApplyImmediately=True)
            raise ResourceNotReady(f"setting the CA certificate of {instance['new_id']}")
    return {"status": "available"}


def verify(step: Step) -> dict:
    """The new cluster against the plan: key, every carried setting, every instance and its settings."""
    plan, neptune = step.plan, step.neptune
    cluster = describe_cluster(neptune, plan["new_cluster_id"])
    if cluster is None:
        raise VerificationFailed(f"{plan['new_cluster_id']} is gone")
    wanted, modify = plan["restore"], plan["modify"]
    checks = {
        "encrypted": (cluster.get("StorageEncrypted"), True),
        "key": (cluster.get("KmsKeyId"), plan["target_key_arn"]),
        "deletion protection": (cluster.get("DeletionProtection"), wanted.get("DeletionProtection", False)),
        "IAM authentication": (cluster.get("IAMDatabaseAuthenticationEnabled"), wanted.get("EnableIAMDatabaseAuthentication", False)),
        "log exports": (sorted(cluster.get("EnabledCloudwatchLogsExports", [])), sorted(wanted.get("EnableCloudwatchLogsExports", []))),
        "copy tags to snapshot": (bool(cluster.get("CopyTagsToSnapshot")), wanted.get("CopyTagsToSnapshot", False)),
        "roles": (sorted((r["RoleArn"], r.get("FeatureName")) for r in cluster.get("AssociatedRoles", [])),
                  sorted((r["RoleArn"], r.get("FeatureName")) for r in plan["roles"])),
        "tags": (tags_of(neptune, cluster["DBClusterArn"]), {t["Key"]: t["Value"] for t in wanted["Tags"]}),
    }
    for field, described_as in (("Port", "Port"), ("EngineVersion", "EngineVersion"), ("DBSubnetGroupName", "DBSubnetGroup"),
                                ("DBClusterParameterGroupName", "DBClusterParameterGroup"), ("StorageType", "StorageType"),
                                ("ServerlessV2ScalingConfiguration", "ServerlessV2ScalingConfiguration")):
        if field in wanted:
            checks[field] = (cluster.get(described_as), wanted[field])
    if wanted.get("VpcSecurityGroupIds"):
        checks["security groups"] = (sorted(g["VpcSecurityGroupId"] for g in cluster.get("VpcSecurityGroups", [])),
                                     sorted(wanted["VpcSecurityGroupIds"]))
    for field in modify:
        checks[field] = (cluster.get(field), modify[field])
    checks["instances"] = (sorted(m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", [])),
                           sorted(i["new_id"] for i in plan["instances"]))
    writers = [m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", []) if m.get("IsClusterWriter")]
    checks["writer"] = (writers, [i["new_id"] for i in plan["instances"] if i["writer"]])
    described_by_id = instances_in(neptune, [plan["new_cluster_id"]])
    for instance in plan["instances"]:
        described = described_by_id.get(instance["new_id"], {})
        for field, want in instance["create"].items():
            have = described.get(field) if field not in ("DBParameterGroupName", "Tags") else None
            if field == "DBParameterGroupName":
                have = (described.get("DBParameterGroups") or [{}])[0].get("DBParameterGroupName")
            if field == "Tags":
                have = tags_of(neptune, described["DBInstanceArn"]) if described else {}
                want = {t["Key"]: t["Value"] for t in want + created_by(step.execution)}
            checks[f"{field} of {instance['new_id']}"] = (have, want)
        if instance.get("ca_certificate"):
            checks[f"CA certificate of {instance['new_id']}"] = (described.get("CACertificateIdentifier"), instance["ca_certificate"])
    mismatches = [f"{name}: {have!r}, expected {want!r}" for name, (have, want) in checks.items() if have != want]
    if mismatches:
        raise VerificationFailed("; ".join(mismatches))
    return {"cluster_id": plan["new_cluster_id"], "resource_id": cluster["DbClusterResourceId"], "endpoint": cluster.get("Endpoint"),
            "checked": sorted(checks)}


def write_activity(cloudwatch, windows: list[tuple[str, datetime, datetime]]) -> dict:
    """Every write CloudWatch saw for these (cluster identifier, start, end) windows: index inserts and deletes
    (every mutation of the graph writes its indexes) and bulk-loader requests."""
    queries, labels = [], {}
    for n, (cluster_id, start, end) in enumerate(windows):
        for metric in WRITE_METRICS:
            query_id = f"m{n}{WRITE_METRICS.index(metric)}"
            labels[query_id] = metric
            queries.append({"Id": query_id, "ReturnData": True, "MetricStat": {
                "Metric": {"Namespace": "AWS/Neptune", "MetricName": metric,
                           "Dimensions": [{"Name": "DBClusterIdentifier", "Value": cluster_id}]},
                "Period": 60, "Stat": "Sum"}})
    # Metrics are per minute: a window runs to the end of its last minute, so the latest writes are in it.
    windows = [(c, start, (end + timedelta(minutes=1)).replace(second=0, microsecond=0)) for c, start, end in windows]
    totals = dict.fromkeys(WRITE_METRICS, 0.0)
    for n, (cluster_id, start, end) in enumerate(windows):
        window_queries = [q for q in queries if q["Id"].startswith(f"m{n}")]
        for page in cloudwatch.get_paginator("get_metric_data").paginate(MetricDataQueries=window_queries, StartTime=start, EndTime=end):
            for result in page["MetricDataResults"]:
                totals[labels[result["Id"]]] += sum(result.get("Values", []))
    return {"windows": [{"cluster_id": c, "from": _iso(s), "to": _iso(e)} for c, s, e in windows],
            "metrics": totals, "writes_detected": any(v > 0 for v in totals.values())}


def _snapshot_minute(step: Step) -> datetime:
    """Metrics are per minute: the window starts with the snapshot's minute, so a write just after it counts."""
    return datetime.fromisoformat(step.state["snapshot"]["created_at"]).replace(second=0, microsecond=0)


QUIET_BEFORE_SNAPSHOT_SECONDS = 600  # two of Neptune's 5-minute metric periods without a write


def writes_stopped(step: Step) -> dict:
    """Before the snapshot: proof that the application has stopped writing (no write for the last ten minutes).
    Writes before the snapshot are in it; this only spares a remediation that could never cut over."""
    now = _utcnow()
    since = (now - timedelta(seconds=QUIET_BEFORE_SNAPSHOT_SECONDS)).replace(second=0, microsecond=0)
    return write_activity(step.client("cloudwatch"), [(step.plan["cluster_id"], since, now)])


def measure_writes(step: Step) -> dict:
    """Writes that reached the original since the snapshot, for the cutover question."""
    return write_activity(step.client("cloudwatch"), [(step.plan["cluster_id"], _snapshot_minute(step), _utcnow())])


def writes_until_now(step: Step) -> dict:
    """Writes since the snapshot, under the original's name until it moved aside and under its retired name after."""
    plan = step.plan
    now = _utcnow()
    return write_activity(step.client("cloudwatch"), [(plan["cluster_id"], _snapshot_minute(step), now),
                                                      (plan["retired_cluster_id"], _cutover_started(step), now)])


def _cutover_started(step: Step) -> datetime:
    """The minute the cutover began, recorded by Step Functions before the first rename request."""
    return datetime.fromisoformat(step.state["cutover_clock"]["started_at"].replace("Z", "+00:00")).replace(second=0, microsecond=0)


BUSY = ("InvalidDBClusterStateFault", "InvalidDBInstanceStateFault")


def _renaming(modify, old: str, **arguments) -> None:
    """A rename that AWS refuses while the resource is busy is not ready yet, not a failure."""
    try:
        modify(ApplyImmediately=True, **arguments)
    except ClientError as error:
        if error.response["Error"]["Code"] in BUSY:
            raise ResourceNotReady(f"{old} cannot be renamed yet: {error.response['Error']['Message']}") from error
        raise


def _rename_cluster(neptune, old: str, new: str) -> None:
    _renaming(neptune.modify_db_cluster, old, DBClusterIdentifier=old, NewDBClusterIdentifier=new)


def _rename_instance(neptune, old: str, new: str) -> None:
    _renaming(neptune.modify_db_instance, old, DBInstanceIdentifier=old, NewDBInstanceIdentifier=new)


def _converge_instance_names(neptune, cluster_id: str, renames: dict[str, str]) -> bool:
    """Rename the cluster's instances per `renames` (old id -> new id); True when nothing is left to do."""
    pending = False
    for instance_id, instance in instances_in(neptune, [cluster_id]).items():
        if instance_id in renames:
            _rename_instance(neptune, instance_id, renames[instance_id])
            pending = True
        elif instance["DBInstanceStatus"] == "renaming":
            pending = True
    return not pending


def move_original_aside(step: Step) -> dict:
    """Cutover, first half: the original (marked for this execution) and its instances move to their retired
    names, so nothing reaches it under the production names any more."""
    plan, neptune = step.plan, step.neptune
    original, retired = plan["cluster_id"], plan["retired_cluster_id"]
    holder = describe_cluster(neptune, original)
    if holder is not None and holder["DbClusterResourceId"] == plan["cluster_resource_id"]:
        require_ours(neptune, holder, "DBClusterArn", step.execution, CUTOVER)
        if holder["Status"] != "available":
            raise ResourceNotReady(f"{original} is {holder['Status']}")
        _rename_cluster(neptune, original, retired)
        raise ResourceNotReady(f"renaming {original} to {retired}")
    moved = describe_cluster(neptune, retired)
    if moved is None or moved["DbClusterResourceId"] != plan["cluster_resource_id"]:
        raise ResourceNotReady(f"{retired} is not there yet")
    if moved["Status"] != "available":
        raise ResourceNotReady(f"{retired} is {moved['Status']}")
    if not _converge_instance_names(neptune, retired, {i["id"]: i["retired_id"] for i in plan["instances"]}):
        raise ResourceNotReady(f"the instances of {retired} are renaming")
    return {"moved_at": _iso(_utcnow()), "retired_cluster_id": retired}


def confirm_no_writes(step: Step) -> dict:
    """After the metrics have settled: every write since the snapshot, up to now."""
    return writes_until_now(step)


class WritesDetected(Exception):
    """Writes reached the original after its snapshot and on-call did not accept losing them."""


def _accepted_write_loss(step: Step) -> bool:
    return bool(step.state.get("approvals", {}).get("cutover", {}).get("accept_write_loss"))


def give_new_cluster_the_name(step: Step) -> dict:
    """Cutover, second half: the new cluster and its instances take the production names. Checks the writes
    once more first: a direct call can never skip the write check."""
    plan, neptune = step.plan, step.neptune
    original, new = plan["cluster_id"], plan["new_cluster_id"]
    new_resource_id = step.state["verified"]["resource_id"]
    holder = describe_cluster(neptune, original)
    if holder is None:
        if plan.get("path") == "streams":
            if not step.state.get("final_proof", {}).get("proven"):
                raise live_cutover.ProofFailed(f"no stream proof that {new} holds every change of {original}")
        else:
            writes = writes_until_now(step)
            if writes["writes_detected"] and not _accepted_write_loss(step):
                raise WritesDetected(f"writes reached {original} after its snapshot: {writes['metrics']}")
        candidate = describe_cluster(neptune, new)
        if candidate is None or candidate["DbClusterResourceId"] != new_resource_id:
            raise NotOurs(f"{new} is not the verified new cluster")
        require_ours(neptune, candidate, "DBClusterArn", step.execution)
        neptune.add_tags_to_resource(ResourceName=candidate["DBClusterArn"], Tags=[{"Key": SERVED, "Value": _iso(_utcnow())}])
        _rename_cluster(neptune, new, original)
        raise ResourceNotReady(f"renaming {new} to {original}")
    if holder["DbClusterResourceId"] != new_resource_id:
        raise NotOurs(f"{original} is held by {holder['DbClusterResourceId']}, neither the original nor the new cluster")
    if holder["Status"] != "available":
        raise ResourceNotReady(f"{original} is {holder['Status']}")
    if not _converge_instance_names(neptune, original, {i["new_id"]: i["id"] for i in plan["instances"]}):
        raise ResourceNotReady(f"the instances of {original} are renaming")
    now = _utcnow()
    return {"serving": original, "resource_id": new_resource_id, "cutover_at": _iso(now), **_pauses(step, now)}


def _pauses(step: Step, now: datetime) -> dict:
    """What the database owner saw. Nameless: from the first rename request (recorded before it) until the new cluster
    answers under the name. Write pause: streams, from on-call's answer (writes stopped before it), or the start of
    the drain if earlier, until now; freeze, from the start of the quiet window proven before the snapshot until now."""
    started = datetime.fromisoformat(step.state["cutover_clock"]["started_at"].replace("Z", "+00:00"))
    if step.plan.get("path") == "streams":
        paused = datetime.fromtimestamp(step.state["proof"]["started_at"], timezone.utc)
        answered = (step.state.get("approvals") or {}).get("cutover", {}).get("at")
        if isinstance(answered, str):
            paused = min(paused, datetime.fromisoformat(answered.replace("Z", "+00:00")))
    else:
        paused = datetime.fromisoformat(step.state["pre_snapshot_write_check"]["windows"][0]["from"])
    return {"path": step.plan.get("path", "freeze"), "nameless_seconds": round((now - started).total_seconds(), 3),
            "write_pause_seconds": round((now - paused).total_seconds(), 3)}


def retire_original(step: Step) -> dict:
    """The original, under its retired name: tagged with what replaced it and until when it is kept, stopped."""
    plan, neptune = step.plan, step.neptune
    retired = describe_cluster(neptune, plan["retired_cluster_id"])
    if retired is None:
        raise NotOurs(f"{plan['retired_cluster_id']} is gone")
    require_ours(neptune, retired, "DBClusterArn", step.execution, CUTOVER, RETIRED_BY)
    until = _utcnow() + timedelta(seconds=plan["soak_seconds"])
    retirement = [{"Key": RETIRED_BY, "Value": step.execution}, {"Key": REPLACED_BY, "Value": step.state["cutover"]["resource_id"]},
                  {"Key": RETAINED_UNTIL, "Value": _iso(until)}]
    neptune.add_tags_to_resource(ResourceName=retired["DBClusterArn"], Tags=retirement)
    for instance in instances_in(neptune, [plan["retired_cluster_id"]]).values():
        neptune.add_tags_to_resource(ResourceName=instance["DBInstanceArn"], Tags=retirement[:1])
    for backup in automated_backups_of(neptune, retired, (plan["cluster_id"], plan["retired_cluster_id"])):  # deleted with it at decommission: say so where they show
        neptune.add_tags_to_resource(ResourceName=backup["DBClusterSnapshotArn"], Tags=retirement)
    # Streams path: anything it took between the cutover proof and this stop (an open connection) shows now, while
    # its stream is fresh, not only at decommission a week on. It is stopped either way, and never deleted unproven.
    quiet = live_cutover.check_retired_quiet(step) if plan.get("path") == "streams" and retired["Status"] == "available" else None
    if retired["Status"] == "available":
        # Our security group off it while it can still be changed (a stopped cluster cannot): put back for a later read.
        live_cutover.detach_replicator(step, {plan["cluster_resource_id"]})
        neptune.stop_db_cluster(DBClusterIdentifier=plan["retired_cluster_id"])
    return {"retained": plan["retired_cluster_id"], "retained_until": _iso(until), "status": "stopping",
            **({"quiet_at_retire": quiet} if quiet is not None else {})}


def automated_backups_of(neptune, cluster: dict, names: tuple[str, ...]) -> list[dict]:
    """The cluster's automated snapshots: a snapshot names the cluster it came from by the identifier it had then
    (one of `names`), which after a rename is another cluster's, so the cluster's creation time must match too."""
    pages = neptune.get_paginator("describe_db_cluster_snapshots").paginate(SnapshotType="automated")
    return [s for page in pages for s in page["DBClusterSnapshots"]
            if s.get("Engine") == "neptune" and s.get("DBClusterIdentifier") in names
            and s.get("ClusterCreateTime") == cluster.get("ClusterCreateTime")]


def hand_over_new_cluster(step: Step) -> dict:
    """The new cluster is production now: it loses the created-by tag (the remediation role may no longer
    delete or rename it) and keeps a record of the remediation."""
    plan, neptune = step.plan, step.neptune
    serving = describe_cluster(neptune, plan["cluster_id"])
    if serving is None or serving["DbClusterResourceId"] != step.state["cutover"]["resource_id"]:
        raise NotOurs(f"{plan['cluster_id']} is not the cluster this execution cut over to")
    live_cutover.detach_replicator(step, {serving["DbClusterResourceId"]})
    resources = [serving["DBClusterArn"]] + [i["DBInstanceArn"] for i in instances_in(neptune, [plan["cluster_id"]]).values()]
    for endpoint in custom_endpoints(neptune, plan["cluster_id"]):
        neptune.add_tags_to_resource(ResourceName=endpoint["arn"], Tags=[{"Key": REMEDIATED_BY, "Value": step.execution}])
        neptune.remove_tags_from_resource(ResourceName=endpoint["arn"], TagKeys=[CUTOVER])
    for arn in resources:
        tags = tags_of(neptune, arn)
        if tags.get(CREATED_BY) not in (None, step.execution):
            raise NotOurs(f"{arn} was created by {tags[CREATED_BY]}")
        neptune.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": REMEDIATED_BY, "Value": step.execution}])
        neptune.remove_tags_from_resource(ResourceName=arn, TagKeys=[CREATED_BY, SERVED])
    return {"handed_over": plan["cluster_id"]}


def keep_retired_stopped(step: Step) -> dict:
    """During the soak: Neptune restarts a stopped cluster after 7 days; stop it again."""
    plan, neptune = step.plan, step.neptune
    retired = describe_cluster(neptune, plan["retired_cluster_id"])
    if retired is None:
        raise NotOurs(f"{plan['retired_cluster_id']} is gone: decommission has nothing to do")
    require_ours(neptune, retired, "DBClusterArn", step.execution, RETIRED_BY)
    restopped = retired["Status"] == "available"
    if restopped:
        live_cutover.detach_replicator(step, {plan["cluster_resource_id"]})  # attached if a decommission proof read it
        neptune.stop_db_cluster(DBClusterIdentifier=plan["retired_cluster_id"])
    until = datetime.fromisoformat(step.state["retired"]["retained_until"])
    return {"status": "stopping" if restopped else retired["Status"], "restopped": restopped, "soak_over": _utcnow() >= until}


def prove_no_writes_since_cutover(step: Step) -> dict:
    """Before anything of the original is deleted: the remediated cluster serves the production name, and the retired
    original took no write since the cutover began (streams: by position, replicating what it took; freeze: metrics)."""
    plan = step.plan
    serving = describe_cluster(step.neptune, plan["cluster_id"])
    if serving is None or serving["DbClusterResourceId"] != step.state["cutover"]["resource_id"]:
        raise NotOurs(f"{plan['cluster_id']} is not served by the remediated cluster: the original is kept")
    if plan.get("path") == "streams":
        return live_cutover.prove_retired_quiet(step)
    activity = write_activity(step.client("cloudwatch"), [(plan["retired_cluster_id"], _cutover_started(step), _utcnow())])
    if activity["writes_detected"]:
        raise WritesDetected(f"writes reached the retired {plan['retired_cluster_id']} after the cutover: {activity['metrics']}; "
                             "it is kept")
    return activity


def archive_retired(step: Step) -> dict:
    """An archive of the retired original, only ever under the CMK. No write reached the original after the
    workflow's snapshot (proved before the cutover and since), so that snapshot holds exactly its data: copied
    under the key when encrypted, or restored under the key and snapshotted when it is not."""
    plan, neptune = step.plan, step.neptune
    archive_tag = [{"Key": ARCHIVED_BY, "Value": step.execution}]
    archive = describe_snapshot(neptune, plan["archive_snapshot_id"])
    if archive is not None:
        require_ours(neptune, archive, "DBClusterSnapshotArn", step.execution, ARCHIVED_BY)
        if archive["Status"] != "available":
            raise ResourceNotReady(f"archive {plan['archive_snapshot_id']} is {archive['Status']}")
        if not archive.get("StorageEncrypted") or archive.get("KmsKeyId") != plan["target_key_arn"]:
            raise VerificationFailed(f"archive {plan['archive_snapshot_id']} is not under {plan['target_key_arn']}")
        temporary = describe_cluster(neptune, plan["archive_cluster_id"])
        if temporary is not None:
            require_ours(neptune, temporary, "DBClusterArn", step.execution)
            if temporary["Status"] != "deleting":
                neptune.delete_db_cluster(DBClusterIdentifier=plan["archive_cluster_id"], SkipFinalSnapshot=True)
            raise ResourceNotReady(f"deleting the temporary {plan['archive_cluster_id']}")
        return {"archive": plan["archive_snapshot_id"], "key": plan["target_key_arn"]}
    source_id = _archive_source(step)
    source = describe_snapshot(neptune, source_id)
    if source is None:
        raise NotOurs(f"the workflow's snapshot {source_id} is gone: nothing to archive from")
    require_ours(neptune, source, "DBClusterSnapshotArn", step.execution)
    tags = customer_tags(plan["restore"]["Tags"]) + archive_tag
    if plan["original_encrypted"]:
        neptune.copy_db_cluster_snapshot(SourceDBClusterSnapshotIdentifier=source_id,
                                         TargetDBClusterSnapshotIdentifier=plan["archive_snapshot_id"],
                                         KmsKeyId=plan["target_key_arn"], Tags=tags)
        raise ResourceNotReady(f"copying {plan['snapshot_id']} under the key")
    temporary = describe_cluster(neptune, plan["archive_cluster_id"])
    if temporary is None:
        neptune.restore_db_cluster_from_snapshot(DBClusterIdentifier=plan["archive_cluster_id"], SnapshotIdentifier=source_id,
                                                 Engine="neptune", KmsKeyId=plan["target_key_arn"], Tags=created_by(step.execution))
        raise ResourceNotReady(f"restoring {plan['snapshot_id']} under the key")
    require_ours(neptune, temporary, "DBClusterArn", step.execution)
    if temporary["Status"] != "available":
        raise ResourceNotReady(f"{plan['archive_cluster_id']} is {temporary['Status']}")
    neptune.create_db_cluster_snapshot(DBClusterSnapshotIdentifier=plan["archive_snapshot_id"],
                                       DBClusterIdentifier=plan["archive_cluster_id"], Tags=tags)
    raise ResourceNotReady(f"snapshotting {plan['archive_cluster_id']}")


def _archive_source(step: Step) -> str:
    """The snapshot the archive is made from. Freeze path: the workflow's snapshot (no write came after it). Streams
    path: the application wrote on after it, so a final snapshot of the retired original, taken once it is proven quiet."""
    plan, neptune = step.plan, step.neptune
    if plan.get("path") != "streams":
        return plan["snapshot_id"]
    final = describe_snapshot(neptune, plan["final_snapshot_id"])
    if final is None:
        retired = describe_cluster(neptune, plan["retired_cluster_id"])
        if retired is None:
            raise NotOurs(f"{plan['retired_cluster_id']} is gone: nothing to archive")
        require_ours(neptune, retired, "DBClusterArn", step.execution, RETIRED_BY)
        if retired["Status"] != "available":
            raise ResourceNotReady(f"{plan['retired_cluster_id']} is {retired['Status']}")
        neptune.create_db_cluster_snapshot(DBClusterSnapshotIdentifier=plan["final_snapshot_id"],
                                           DBClusterIdentifier=plan["retired_cluster_id"], Tags=created_by(step.execution))
        raise ResourceNotReady(f"snapshotting {plan['retired_cluster_id']} for its archive")
    require_ours(neptune, final, "DBClusterSnapshotArn", step.execution)
    if final["Status"] != "available":
        raise ResourceNotReady(f"{plan['final_snapshot_id']} is {final['Status']}")
    return plan["final_snapshot_id"]


def delete_retired(step: Step) -> dict:
    """The retired original (with its automated backups) and the workflow's own snapshot, once archived."""
    plan, neptune = step.plan, step.neptune
    retired = describe_cluster(neptune, plan["retired_cluster_id"])
    if retired is not None:
        require_ours(neptune, retired, "DBClusterArn", step.execution, DECOMMISSION_APPROVED_BY)
        if retired["Status"] == "deleting":
            raise ResourceNotReady(f"deleting {plan['retired_cluster_id']}")
        # The archive ran for hours since the proof, the original reachable all along: prove again, right before
        # deleting its instances, that it took no write since the cutover (a write parks it, kept). Once they are
        # going, nothing can write to it (and nothing answers to read its stream): the later calls only wait.
        members = instances_in(neptune, [plan["retired_cluster_id"]])
        if members and not any(i["DBInstanceStatus"] == "deleting" for i in members.values()):
            prove_no_writes_since_cutover(step)
        for instance in members.values():
            require_ours(neptune, instance, "DBInstanceArn", step.execution, DECOMMISSION_APPROVED_BY)
            if instance["DBInstanceStatus"] != "deleting":
                neptune.delete_db_instance(DBInstanceIdentifier=instance["DBInstanceIdentifier"], SkipFinalSnapshot=True)
        if members:
            raise ResourceNotReady(f"deleting the instances of {plan['retired_cluster_id']}")
        if retired.get("DeletionProtection"):
            neptune.modify_db_cluster(DBClusterIdentifier=plan["retired_cluster_id"], DeletionProtection=False, ApplyImmediately=True)
        neptune.delete_db_cluster(DBClusterIdentifier=plan["retired_cluster_id"], SkipFinalSnapshot=True)
        raise ResourceNotReady(f"deleting {plan['retired_cluster_id']}")
    workflow_snapshots = [plan["snapshot_id"]] + ([plan["final_snapshot_id"]] if plan.get("path") == "streams" else [])
    for snapshot_id in workflow_snapshots:
        snapshot = describe_snapshot(neptune, snapshot_id)
        if snapshot is not None:
            require_ours(neptune, snapshot, "DBClusterSnapshotArn", step.execution)
            neptune.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=snapshot_id)
    return {"deleted": [plan["retired_cluster_id"], *workflow_snapshots], "archive": plan["archive_snapshot_id"]}


def resolve_finding(step: Step) -> dict:
    finding = step.request.get("finding")
    if not finding:
        return {"finding": None}
    approvers = sorted({d.get("approver") for d in step.state.get("approvals", {}).values() if isinstance(d, dict) and d.get("approver")})
    writes = step.state.get("final_write_check", {})
    note = (f"{step.plan['summary']} Execution {step.execution}, approved by {', '.join(approvers) or 'unknown'}."
            + (" WRITE LOSS ACCEPTED by on-call." if writes.get("writes_detected") else ""))
    securityhub = step.client("securityhub")
    securityhub.batch_update_findings(
        FindingIdentifiers=[{"Id": finding["id"], "ProductArn": finding["product_arn"]}],
        Note={"Text": note[:512], "UpdatedBy": "neptune-guard"},
        Workflow={"Status": "RESOLVED"},
    )
    return {"finding": finding["id"], "note": note}


def roll_back(step: Step) -> dict:
    """Converge back to the original serving under its own name. A new cluster that held the production name
    (it served writes) is kept, renamed aside and stopped; only what this execution created and never served
    is deleted. Raises ResourceNotReady until every rename has settled."""
    plan = step.plan
    if not plan:
        return {"serving": step.request.get("cluster_id"), "changed": "nothing"}
    neptune = step.neptune
    original, new, retired = plan["cluster_id"], plan["new_cluster_id"], plan["retired_cluster_id"]
    holder = describe_cluster(neptune, original)
    if holder is not None and holder["DbClusterResourceId"] != plan["cluster_resource_id"]:
        require_ours(neptune, holder, "DBClusterArn", step.execution)  # the new cluster had taken the name
        if holder["Status"] != "available":
            raise ResourceNotReady(f"{original} is {holder['Status']}")
        if not _converge_instance_names(neptune, original, {i["id"]: i["new_id"] for i in plan["instances"]}):
            raise ResourceNotReady("renaming the new cluster's instances back to their own names")
        _rename_cluster(neptune, original, new)
        raise ResourceNotReady(f"moving the new cluster from {original} back to {new}")
    if holder is None:
        aside = describe_cluster(neptune, retired)
        if aside is None or aside["DbClusterResourceId"] != plan["cluster_resource_id"] or aside["Status"] != "available":
            raise ResourceNotReady(f"waiting for the original under {retired} to settle")
        if plan.get("path") == "streams" and "replicated_back" not in step.state and _served(step):
            return {"replicate_back_first": True, "serving": None}  # the ASL replicates, then comes back here
        _rename_cluster(neptune, retired, original)
        raise ResourceNotReady(f"renaming {retired} back to {original}")
    if holder["Status"] != "available":
        raise ResourceNotReady(f"{original} is {holder['Status']}")
    if not _converge_instance_names(neptune, original, {i["retired_id"]: i["id"] for i in plan["instances"]}):
        raise ResourceNotReady(f"renaming the instances of {original} back")
    if not _converge_endpoints(step):
        raise ResourceNotReady(f"moving the custom endpoints back to {original}")
    live_cutover.detach_replicator(step, {plan["cluster_resource_id"], (step.state.get("verified") or {}).get("resource_id")})
    served = _served(step)
    kept, removed = _remove_what_never_served(step)
    marked = ([holder["DBClusterArn"]] + [i["DBInstanceArn"] for i in instances_in(neptune, [original]).values()]
              + [e["arn"] for e in custom_endpoints(neptune, original)])
    for arn in marked:
        if tags_of(neptune, arn).get(CUTOVER) == step.execution:
            neptune.remove_tags_from_resource(ResourceName=arn, TagKeys=[CUTOVER])
    return {"serving": original, "serving_resource_id": plan["cluster_resource_id"], "kept": kept, "removed": removed,
            **({"served_writes": _served_writes(step, served)} if served else {})}


def _served(step: Step) -> str | None:
    """When the new cluster took the production name (its served-production tag), if it ever did."""
    cluster = describe_cluster(step.neptune, step.plan["new_cluster_id"])
    if cluster is None or cluster["DbClusterResourceId"] != (step.state.get("verified") or {}).get("resource_id"):
        return None
    return tags_of(step.neptune, cluster["DBClusterArn"]).get(SERVED)


def _served_writes(step: Step, served_from: str) -> dict:
    """What became of the writes the new cluster took while it held the production name: replicated back and
    proven (streams path), or where they are and when they were made, for a person to bring back (never discarded)."""
    plan, back = step.plan, step.state.get("replicated_back") or {}
    if back.get("proven"):
        return {"replicated_back": back["drained_records"], "since": back["since"], "to": back["positions"],
                "note": (f"the {back['drained_records']} changes {plan['new_cluster_id']} took while it served production were "
                         f"replicated back and proven up to its stream position {back['positions']}; anything written to it "
                         "after that (an open connection) is in it, kept and stopped")}
    return {"stranded_in": plan["new_cluster_id"], "from": served_from, "until": _iso(_utcnow()),
            **({"since_stream_position": (step.state.get("final_proof") or {}).get("target_positions"), "why": back.get("Cause")}
               if plan.get("path") == "streams" else {}),
            "note": (f"writes {plan['new_cluster_id']} took while it served production (from {served_from}) are in it, kept and "
                     f"stopped, and not in {plan['cluster_id']}: bring them back by hand before deleting it")}


def _remove_what_never_served(step: Step) -> tuple[list[str], list[str]]:
    """(kept, removed): deletes the new cluster and the workflow's snapshot only if this execution created them
    and the cluster never held the production name; ResourceNotReady while a deletion is under way."""
    plan, neptune = step.plan, step.neptune
    new = plan["new_cluster_id"]
    kept, removed = [], []
    cluster = describe_cluster(neptune, new)
    if cluster is not None:
        tags = tags_of(neptune, cluster["DBClusterArn"])
        if tags.get(CREATED_BY) != step.execution:
            kept.append(f"{new} (not created by this execution)")
        elif SERVED in tags:
            if cluster["Status"] == "available":
                neptune.stop_db_cluster(DBClusterIdentifier=new)
            kept.append(f"{new} (served production from {tags[SERVED]}: kept, stopped, for its owner)")
        else:
            members = instances_in(neptune, [new])
            for instance in members.values():
                require_ours(neptune, instance, "DBInstanceArn", step.execution)
                if instance["DBInstanceStatus"] != "deleting":
                    neptune.delete_db_instance(DBInstanceIdentifier=instance["DBInstanceIdentifier"], SkipFinalSnapshot=True)
            if members:
                raise ResourceNotReady(f"deleting the instances of {new}")
            if cluster["Status"] != "deleting":
                if cluster.get("DeletionProtection"):
                    neptune.modify_db_cluster(DBClusterIdentifier=new, DeletionProtection=False, ApplyImmediately=True)
                neptune.delete_db_cluster(DBClusterIdentifier=new, SkipFinalSnapshot=True)
            raise ResourceNotReady(f"deleting {new}")
    snapshot = describe_snapshot(neptune, plan["snapshot_id"])
    if snapshot is not None:
        if tags_of(neptune, snapshot["DBClusterSnapshotArn"]).get(CREATED_BY) == step.execution:
            neptune.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=plan["snapshot_id"])
            removed.append(plan["snapshot_id"])
        else:
            kept.append(f"{plan['snapshot_id']} (not created by this execution)")
    return kept, removed


def notify(step: Step, outcome: str) -> dict:
    from neptune_guard.remediate import notifications

    served = (step.state.get("rollback") or {}).get("served_writes") or {}
    quiet = (step.state.get("retired") or {}).get("quiet_at_retire") or {"proven": True}
    notes = ((served["note"],) if "note" in served else ()) + (() if quiet["proven"] else (
        f"WRITES AFTER THE CUTOVER reached the retired original {step.plan['retired_cluster_id']} (first commit: "
        f"{quiet['past_position']}): they are not in {step.plan['cluster_id']}. It is kept, and decommission will refuse to "
        "delete it until a person has reconciled them.",))
    send_notification(notifications.outcome(step.execution, step.request, outcome, step.state.get("error"), {
        "rollback": step.state.get("rollback"), "needs_attention": step.state.get("bookkeeping_error"), "plan": step.plan}, notes))
    return {"notified": outcome}


def send_notification(notification) -> None:
    """Publish a notifications.Notification to the on-call topic (email: the short text; chat and machines: the
    Chatbot JSON; the full detail as a message attribute)."""
    topic = os.environ.get("NOTIFICATION_TOPIC_ARN")
    if topic:
        boto3.client("sns", region_name=parse_arn(topic, "topic ARN")["region"], config=aws.CLIENT_CONFIG).publish(
            **notification.sns_arguments(topic))


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment) -> str:
    if isinstance(moment, str):
        return moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def _now() -> str:
    return _iso(_utcnow())


# Each step with the approval it needs to have been granted, in this execution's history, before it may run.
STEPS = {
    **live_cutover.STEPS,
    "plan": (plan_cluster, None),
    "request_approval": (request_approval, None),
    "writes_stopped": (writes_stopped, "snapshot"),
    "mark_original": (mark_original, "snapshot"),
    "unmark_original": (unmark_original, "snapshot"),
    "create_snapshot": (create_snapshot, "snapshot"),
    "snapshot_available": (snapshot_available, "snapshot"),
    "restore_cluster": (restore_cluster, "snapshot"),
    "new_cluster_available": (new_cluster_available, "snapshot"),
    "apply_settings": (apply_settings, "snapshot"),
    "create_instances": (create_instances, "snapshot"),
    "instances_available": (instances_available, "snapshot"),
    "verify": (verify, "snapshot"),
    "measure_writes": (measure_writes, "snapshot"),
    "move_original_aside": (move_original_aside, "cutover"),
    "confirm_no_writes": (confirm_no_writes, "cutover"),
    "give_new_cluster_the_name": (give_new_cluster_the_name, "cutover"),
    "move_custom_endpoints": (move_custom_endpoints, "cutover"),
    "retire_original": (retire_original, "cutover"),
    "hand_over_new_cluster": (hand_over_new_cluster, "cutover"),
    "resolve_finding": (resolve_finding, "cutover"),
    "keep_retired_stopped": (keep_retired_stopped, "cutover"),
    "prove_no_writes_since_cutover": (prove_no_writes_since_cutover, "decommission"),
    "archive_retired": (archive_retired, "decommission"),
    "delete_retired": (delete_retired, "decommission"),
    "roll_back": (roll_back, None),
    "notify": (notify, None),
}
