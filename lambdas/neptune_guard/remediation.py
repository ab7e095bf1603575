"""Re-encrypting a Neptune cluster under a customer-managed key: the plan and the workflow's steps.

The state machine (state_machines/cluster_remediation.asl.json) calls one step at a time. Every step
is idempotent and convergent: it looks at what is there, does the next thing, and raises
ResourceNotReady while AWS is still working, so that the waiting and the back-off live in the ASL.
All AWS calls go through the member account's remediation role.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone

import boto3
from botocore.exceptions import ClientError

from . import aws

DEFAULT_REMEDIATION_ROLE = "NeptuneGuardRemediation"
DEFAULT_APPROVAL_TIMEOUT_SECONDS = 24 * 3600
RETIRED_SUFFIX = "-pre-cmk"
NEW_SUFFIX = "-cmk"
IDENTIFIER = re.compile(r"^[a-zA-Z](?!.*--)[a-zA-Z0-9-]{0,62}(?<!-)$")
KEY_ARN = re.compile(r"^arn:aws[\w-]*:kms:([a-z0-9-]+):(\d{12}):key/[\w-]+$")
KEY_ALIAS = re.compile(r"^alias/[\w/+=,.@-]+$")


class InvalidRequest(Exception):
    """Refused before anything changed: bad input, wrong key, cluster in the wrong state."""


class ResourceNotReady(Exception):
    """AWS is still working; the state machine retries this step with back-off."""


class VerificationFailed(Exception):
    """The new cluster does not match the plan: roll back."""


def neptune_client(state: dict):
    return member_session(state).client("neptune", region_name=state["region"], config=aws.CLIENT_CONFIG)


def member_session(state: dict) -> boto3.Session:
    """The remediation role of the resource's account (the security account's own included), so that the
    workflow's own role needs nothing but sts:AssumeRole."""
    role = state.get("role_name") or DEFAULT_REMEDIATION_ROLE
    return aws.assume_role(boto3.Session(region_name=state["region"]), state["account_id"], role, state["region"],
                           "neptune-guard-remediation")


def _first_or_none(call, result_key: str, not_found: str, **arguments) -> dict | None:
    """The one resource a describe call names, or None where AWS says there is no such resource."""
    try:
        found = call(**arguments)[result_key]
    except ClientError as error:
        if error.response["Error"]["Code"] == not_found:
            return None
        raise
    return found[0] if found else None


def describe_cluster(neptune, identifier: str) -> dict | None:
    return _first_or_none(neptune.describe_db_clusters, "DBClusters", "DBClusterNotFoundFault", DBClusterIdentifier=identifier)


def describe_snapshot(neptune, identifier: str) -> dict | None:
    return _first_or_none(neptune.describe_db_cluster_snapshots, "DBClusterSnapshots", "DBClusterSnapshotNotFoundFault",
                          DBClusterSnapshotIdentifier=identifier)


def instances_in(neptune, cluster_ids: list[str]) -> dict[str, dict]:
    """The instances of these clusters, by identifier: one request (Neptune documents the db-cluster-id
    filter, which takes several clusters), not one per instance."""
    found: dict[str, dict] = {}
    pages = neptune.get_paginator("describe_db_instances").paginate(Filters=[{"Name": "db-cluster-id", "Values": cluster_ids}])
    for page in pages:
        found.update((instance["DBInstanceIdentifier"], instance) for instance in page["DBInstances"])
    return found


def workflow_instances(neptune, plan: dict) -> dict[str, dict]:
    """Every instance of the clusters the workflow works on, under whichever of their names they have now."""
    return instances_in(neptune, [plan["cluster_id"], plan["new_cluster_id"], plan["retired_cluster_id"]])


def validate_request(request: dict, resource_field: str = "cluster_id") -> None:
    for field in ("account_id", "region", resource_field, "target_key"):
        if not isinstance(request.get(field), str) or not request[field]:
            raise InvalidRequest(f"missing or malformed field {field!r}")
    if not aws.ACCOUNT_ID.match(request["account_id"]):
        raise InvalidRequest(f"account_id must be 12 digits, got {request['account_id']!r}")
    if not aws.REGION_NAME.match(request["region"]):
        raise InvalidRequest(f"not a region: {request['region']!r}")
    if resource_field == "cluster_id" and (not IDENTIFIER.match(request["cluster_id"]) or len(request["cluster_id"]) > 63 - len(RETIRED_SUFFIX)):
        raise InvalidRequest(f"not a Neptune cluster identifier (or too long to rename): {request['cluster_id']!r}")
    if resource_field == "snapshot_id" and not re.match(r"^(rds:)?[a-zA-Z][a-zA-Z0-9-]{0,250}$", request["snapshot_id"]):
        raise InvalidRequest(f"not a cluster snapshot identifier: {request['snapshot_id']!r}")
    key = request["target_key"]
    arn = KEY_ARN.match(key)
    if not arn and not KEY_ALIAS.match(key):
        raise InvalidRequest(f"target_key must be a KMS key ARN or an alias name, got {key!r}")
    if key.startswith("alias/aws/"):
        raise InvalidRequest(f"{key} is an AWS-managed key: the target must be a customer-managed key")
    if arn and arn.group(1) != request["region"]:
        raise InvalidRequest(f"the key {key} is in {arn.group(1)}, the cluster in {request['region']}")


def validated_key(kms, request: dict) -> dict:
    """The target key's metadata, if it is a customer-managed, Enabled key in the resource's region."""
    try:
        key = kms.describe_key(KeyId=request["target_key"])["KeyMetadata"]
    except ClientError as error:
        raise InvalidRequest(f"cannot use key {request['target_key']}: {error.response['Error']['Message']}") from error
    if key["KeyManager"] != "CUSTOMER":
        raise InvalidRequest(f"{request['target_key']} is an AWS-managed key: the target must be a customer-managed key")
    if key["KeyState"] != "Enabled":
        raise InvalidRequest(f"key {key['Arn']} is {key['KeyState']}, not Enabled")
    if key["Arn"].split(":")[3] != request["region"]:
        raise InvalidRequest(f"key {key['Arn']} is not in the resource's region {request['region']}")
    return key


def plan_cluster(event: dict) -> dict:
    """Read the cluster, its instances and the key; refuse what cannot be done; list what will be carried."""
    request = event["state"]
    validate_request(request)
    session = member_session(request)
    neptune = session.client("neptune", region_name=request["region"], config=aws.CLIENT_CONFIG)
    kms = session.client("kms", region_name=request["region"], config=aws.CLIENT_CONFIG)
    cluster = describe_cluster(neptune, request["cluster_id"])
    if cluster is None or cluster.get("Engine") != "neptune":
        raise InvalidRequest(f"no Neptune cluster {request['cluster_id']} in {request['account_id']} {request['region']}")
    if cluster["Status"] != "available":
        raise InvalidRequest(f"cluster {request['cluster_id']} is {cluster['Status']}, not available")
    key = validated_key(kms, request)
    if cluster.get("StorageEncrypted") and cluster.get("KmsKeyId") == key["Arn"]:
        raise InvalidRequest(f"cluster {request['cluster_id']} is already encrypted with {key['Arn']}")
    cluster_id = cluster["DBClusterIdentifier"]
    for taken in (cluster_id + RETIRED_SUFFIX, cluster_id + NEW_SUFFIX):
        if describe_cluster(neptune, taken) is not None:
            raise InvalidRequest(f"a cluster named {taken} already exists: an earlier remediation left it; resolve it first")

    members = sorted(cluster.get("DBClusterMembers", []), key=lambda m: not m.get("IsClusterWriter"))
    members_described = instances_in(neptune, [cluster_id])
    instances = []
    for member in members:
        described = members_described[member["DBInstanceIdentifier"]]
        instances.append({
            "id": described["DBInstanceIdentifier"],
            "new_id": described["DBInstanceIdentifier"] + NEW_SUFFIX,
            "retired_id": described["DBInstanceIdentifier"] + RETIRED_SUFFIX,
            "class": described["DBInstanceClass"],
            "promotion_tier": described.get("PromotionTier", 1),
            "availability_zone": described.get("AvailabilityZone"),
            "parameter_group": (described.get("DBParameterGroups") or [{}])[0].get("DBParameterGroupName"),
            "writer": bool(member.get("IsClusterWriter")),
        })
    tags = neptune.list_tags_for_resource(ResourceName=cluster["DBClusterArn"]).get("TagList", [])
    restore = {
        "VpcSecurityGroupIds": [g["VpcSecurityGroupId"] for g in cluster.get("VpcSecurityGroups", [])],
        "DBSubnetGroupName": cluster.get("DBSubnetGroup"),
        "DBClusterParameterGroupName": cluster.get("DBClusterParameterGroup"),
        "EnableIAMDatabaseAuthentication": bool(cluster.get("IAMDatabaseAuthenticationEnabled")),
        "EnableCloudwatchLogsExports": cluster.get("EnabledCloudwatchLogsExports", []),
        "DeletionProtection": bool(cluster.get("DeletionProtection")),
        "CopyTagsToSnapshot": bool(cluster.get("CopyTagsToSnapshot")),
        "Tags": tags,
        "Port": cluster.get("Port"),
        "EngineVersion": cluster.get("EngineVersion"),
    }
    if cluster.get("ServerlessV2ScalingConfiguration"):
        restore["ServerlessV2ScalingConfiguration"] = cluster["ServerlessV2ScalingConfiguration"]
    modify = {
        "BackupRetentionPeriod": cluster.get("BackupRetentionPeriod", 1),
        "PreferredBackupWindow": cluster.get("PreferredBackupWindow"),
        "PreferredMaintenanceWindow": cluster.get("PreferredMaintenanceWindow"),
    }
    suffix = re.sub("[^a-z0-9]", "", event["execution"].split(":")[-1][-12:].lower()) or "manual"
    return {
        "cluster_id": cluster_id,
        "cluster_arn": cluster["DBClusterArn"],
        "cluster_resource_id": cluster["DbClusterResourceId"],  # immutable; the ARN follows renames
        "original_key": cluster.get("KmsKeyId") if cluster.get("StorageEncrypted") else None,
        "target_key_arn": key["Arn"],
        "snapshot_id": f"{cluster_id}-pre-cmk-{suffix}"[:63],
        "new_cluster_id": cluster_id + NEW_SUFFIX,
        "retired_cluster_id": cluster_id + RETIRED_SUFFIX,
        "restore": {k: v for k, v in restore.items() if v not in (None, [])} | {"Tags": tags},
        "modify": {k: v for k, v in modify.items() if v is not None},
        "roles": [r["RoleArn"] for r in cluster.get("AssociatedRoles", [])],
        "instances": instances,
        "approval_timeout_seconds": approval_timeout(request),
        "questions": {
            "snapshot": (f"Approve snapshot and re-encryption of Neptune cluster {cluster_id} in {request['account_id']} "
                         f"{request['region']} under {key['Arn']}? Writes to the cluster after the snapshot is taken are "
                         "lost unless the application is stopped first."),
            "cutover": (f"Approve cutover: {cluster_id}{NEW_SUFFIX} (verified, encrypted with {key['Arn']}) takes the name "
                        f"{cluster_id}; the original becomes {cluster_id}{RETIRED_SUFFIX} and is stopped, not deleted."),
        },
        "summary": f"Cluster re-encrypted under {key['Arn']}; original retained, stopped, as {cluster_id}{RETIRED_SUFFIX}",
    }


def approval_timeout(request: dict) -> int:
    return int(request.get("approval_timeout_seconds") or DEFAULT_APPROVAL_TIMEOUT_SECONDS)


def request_approval(event: dict) -> dict:
    """Tell on-call what is asked of them; the execution waits for `approve` or `reject`."""
    state, stage = event["state"], event["stage"]
    plan = state["plan"]
    message = {
        "question": plan["questions"][stage],
        "execution": event["execution"],
        "stage": stage,
        "approve": f"python -m neptune_guard approve {event['execution']}",
        "reject": f"python -m neptune_guard reject {event['execution']} --reason '...'",
        "plan": plan,
        "verified": state.get("verified"),
    }
    send_notification(f"Neptune Guard: approval needed ({stage}) in {state['account_id']} {state['region']}", message)
    return {"requested_at": _now()}


def create_snapshot(event: dict) -> dict:
    state, plan = event["state"], event["state"]["plan"]
    neptune = neptune_client(state)
    try:
        neptune.create_db_cluster_snapshot(DBClusterSnapshotIdentifier=plan["snapshot_id"], DBClusterIdentifier=plan["cluster_id"],
                                           Tags=[{"Key": "neptune-guard:execution", "Value": event["execution"].split(":")[-1]}])
    except ClientError as error:
        if error.response["Error"]["Code"] != "DBClusterSnapshotAlreadyExistsFault":
            raise
    return {"snapshot_id": plan["snapshot_id"]}


def require_available_snapshot(state: dict, identifier: str) -> dict:
    """A waiting step's check: done when the snapshot is available, ResourceNotReady (retried by the ASL) until then."""
    snapshot = describe_snapshot(neptune_client(state), identifier)
    if snapshot is None or snapshot["Status"] != "available":
        raise ResourceNotReady(f"snapshot {identifier} is {snapshot['Status'] if snapshot else 'not there yet'}")
    return {"status": "available"}


def snapshot_available(event: dict) -> dict:
    return require_available_snapshot(event["state"], event["state"]["plan"]["snapshot_id"])


def restore_under_key(state: dict, cluster_id: str, snapshot_id: str, key_arn: str, **settings) -> dict:
    """Restore the snapshot as a new cluster encrypted with the key, unless an earlier try already did."""
    neptune = neptune_client(state)
    if describe_cluster(neptune, cluster_id) is None:
        neptune.restore_db_cluster_from_snapshot(DBClusterIdentifier=cluster_id, SnapshotIdentifier=snapshot_id,
                                                 Engine="neptune", KmsKeyId=key_arn, **settings)
    return {"cluster_id": cluster_id}


def restore_cluster(event: dict) -> dict:
    plan = event["state"]["plan"]
    return restore_under_key(event["state"], plan["new_cluster_id"], plan["snapshot_id"], plan["target_key_arn"], **plan["restore"])


def require_available_cluster(state: dict, identifier: str) -> dict:
    """A waiting step's check: done when the cluster is available, ResourceNotReady (retried by the ASL) until then."""
    cluster = describe_cluster(neptune_client(state), identifier)
    if cluster is None or cluster["Status"] != "available":
        raise ResourceNotReady(f"cluster {identifier} is {cluster['Status'] if cluster else 'not there yet'}")
    return {"status": "available"}


def new_cluster_available(event: dict) -> dict:
    return require_available_cluster(event["state"], event["state"]["plan"]["new_cluster_id"])


def apply_settings(event: dict) -> dict:
    """What the restore does not take: backup retention and windows, IAM roles."""
    state, plan = event["state"], event["state"]["plan"]
    neptune = neptune_client(state)
    neptune.modify_db_cluster(DBClusterIdentifier=plan["new_cluster_id"], ApplyImmediately=True, **plan["modify"])
    present = {r["RoleArn"] for r in describe_cluster(neptune, plan["new_cluster_id"]).get("AssociatedRoles", [])}
    for role_arn in plan["roles"]:
        if role_arn not in present:
            neptune.add_role_to_db_cluster(DBClusterIdentifier=plan["new_cluster_id"], RoleArn=role_arn)
    return {"applied": sorted(plan["modify"]) + (["roles"] if plan["roles"] else [])}


def create_instances(event: dict) -> dict:
    state, plan = event["state"], event["state"]["plan"]
    neptune = neptune_client(state)
    existing = instances_in(neptune, [plan["new_cluster_id"]])
    for instance in plan["instances"]:
        if instance["new_id"] in existing:
            continue
        arguments = {"DBInstanceIdentifier": instance["new_id"], "DBInstanceClass": instance["class"], "Engine": "neptune",
                     "DBClusterIdentifier": plan["new_cluster_id"], "PromotionTier": instance["promotion_tier"]}
        if instance.get("availability_zone"):
            arguments["AvailabilityZone"] = instance["availability_zone"]
        if instance.get("parameter_group"):
            arguments["DBParameterGroupName"] = instance["parameter_group"]
        neptune.create_db_instance(**arguments)
    return {"instances": [i["new_id"] for i in plan["instances"]]}


def instances_available(event: dict) -> dict:
    state, plan = event["state"], event["state"]["plan"]
    described_by_id = instances_in(neptune_client(state), [plan["new_cluster_id"]])
    for instance in plan["instances"]:
        described = described_by_id.get(instance["new_id"])
        if described is None or described["DBInstanceStatus"] != "available":
            raise ResourceNotReady(f"instance {instance['new_id']} is {described and described['DBInstanceStatus']}")
    return {"status": "available"}


def verify(event: dict) -> dict:
    """The new cluster against the plan: key, every carried setting, every instance."""
    state, plan = event["state"], event["state"]["plan"]
    neptune = neptune_client(state)
    cluster = describe_cluster(neptune, plan["new_cluster_id"])
    wanted = plan["restore"]
    checks = {
        "encrypted": (cluster.get("StorageEncrypted"), True),
        "key": (cluster.get("KmsKeyId"), plan["target_key_arn"]),
        "deletion protection": (cluster.get("DeletionProtection"), wanted.get("DeletionProtection", False)),
        "IAM authentication": (cluster.get("IAMDatabaseAuthenticationEnabled"), wanted.get("EnableIAMDatabaseAuthentication", False)),
        "log exports": (sorted(cluster.get("EnabledCloudwatchLogsExports", [])), sorted(wanted.get("EnableCloudwatchLogsExports", []))),
        "port": (cluster.get("Port"), wanted.get("Port", cluster.get("Port"))),
        "backup retention": (cluster.get("BackupRetentionPeriod"), plan["modify"].get("BackupRetentionPeriod")),
        "roles": (sorted(r["RoleArn"] for r in cluster.get("AssociatedRoles", [])), sorted(plan["roles"])),
        "tags": (_tag_map(neptune.list_tags_for_resource(ResourceName=cluster["DBClusterArn"]).get("TagList", [])), _tag_map(wanted["Tags"])),
    }
    if wanted.get("VpcSecurityGroupIds"):
        checks["security groups"] = (sorted(g["VpcSecurityGroupId"] for g in cluster.get("VpcSecurityGroups", [])), sorted(wanted["VpcSecurityGroupIds"]))
    if wanted.get("DBClusterParameterGroupName"):
        checks["parameter group"] = (cluster.get("DBClusterParameterGroup"), wanted["DBClusterParameterGroupName"])
    members = {m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", [])}
    checks["instances"] = (sorted(members), sorted(i["new_id"] for i in plan["instances"]))
    described_by_id = instances_in(neptune, [plan["new_cluster_id"]])
    for instance in plan["instances"]:
        described = described_by_id.get(instance["new_id"], {})
        checks[f"class of {instance['new_id']}"] = (described.get("DBInstanceClass"), instance["class"])
        checks[f"promotion tier of {instance['new_id']}"] = (described.get("PromotionTier"), instance["promotion_tier"])
    mismatches = [f"{name}: {have!r}, expected {want!r}" for name, (have, want) in checks.items() if have != want]
    if mismatches:
        raise VerificationFailed("; ".join(mismatches))
    return {"cluster_id": plan["new_cluster_id"], "endpoint": cluster.get("Endpoint"), "checked": sorted(checks)}


def _tag_map(tags: list[dict]) -> dict:
    return {t["Key"]: t["Value"] for t in tags}


def _rename_cluster(neptune, old: str, new: str) -> None:
    neptune.modify_db_cluster(DBClusterIdentifier=old, NewDBClusterIdentifier=new, ApplyImmediately=True)


def _rename_instance(neptune, old: str, new: str) -> None:
    neptune.modify_db_instance(DBInstanceIdentifier=old, NewDBInstanceIdentifier=new, ApplyImmediately=True)


def _settled(neptune, cluster_id: str) -> bool:
    cluster = describe_cluster(neptune, cluster_id)
    return cluster is not None and cluster["Status"] == "available"


def cut_over(event: dict) -> dict:
    """Original away to <id>-pre-cmk, then the new cluster to <id>: the application's endpoint name stays."""
    state, plan = event["state"], event["state"]["plan"]
    neptune = neptune_client(state)
    original, new, retired = plan["cluster_id"], plan["new_cluster_id"], plan["retired_cluster_id"]
    if describe_cluster(neptune, retired) is None:
        present = workflow_instances(neptune, plan)
        for instance in plan["instances"]:
            if instance["id"] in present:
                _rename_instance(neptune, instance["id"], instance["retired_id"])
        _rename_cluster(neptune, original, retired)
        raise ResourceNotReady(f"renaming {original} to {retired}")
    if not _settled(neptune, retired):
        raise ResourceNotReady(f"{retired} is still renaming")
    if describe_cluster(neptune, new) is not None:
        _rename_cluster(neptune, new, original)
        for instance in plan["instances"]:
            _rename_instance(neptune, instance["new_id"], instance["id"])
        raise ResourceNotReady(f"renaming {new} to {original}")
    if not _settled(neptune, original):
        raise ResourceNotReady(f"{original} is still renaming")
    present = workflow_instances(neptune, plan)
    if any(instance["id"] not in present for instance in plan["instances"]):
        raise ResourceNotReady(f"the instances of {original} are still renaming")
    return {"serving": original, "retired": retired}


def retain_original(event: dict) -> dict:
    """Stop the retired original: kept as the way back, for on-call to delete later with a final snapshot."""
    state, plan = event["state"], event["state"]["plan"]
    neptune = neptune_client(state)
    retired = describe_cluster(neptune, plan["retired_cluster_id"])
    if retired and retired["Status"] == "available":
        neptune.stop_db_cluster(DBClusterIdentifier=plan["retired_cluster_id"])
    return {"retained": plan["retired_cluster_id"], "status": "stopped"}


def resolve_finding(event: dict) -> dict:
    state = event["state"]
    finding = state.get("finding")
    if not finding:
        return {"finding": None}
    approvers = sorted({decision.get("approver") for decision in state.get("approvals", {}).values() if decision.get("approver")})
    note = f"{state['plan']['summary']}. Neptune Guard execution {event['execution']}, approved by {', '.join(approvers)}."
    securityhub = member_session(state).client("securityhub", region_name=state["region"], config=aws.CLIENT_CONFIG)
    securityhub.batch_update_findings(
        FindingIdentifiers=[{"Id": finding["id"], "ProductArn": finding["product_arn"]}],
        Note={"Text": note[:512], "UpdatedBy": "neptune-guard"},
        Workflow={"Status": "RESOLVED"},
    )
    return {"finding": finding["id"], "note": note}


def roll_back(event: dict) -> dict:
    """Converge back to the original serving under its own name, and remove what the workflow created."""
    state = event["state"]
    plan = state.get("plan")
    if not plan:
        return {"rolled_back": "nothing had changed"}
    neptune = neptune_client(state)
    original, new, retired = plan["cluster_id"], plan["new_cluster_id"], plan["retired_cluster_id"]
    holder = describe_cluster(neptune, original)
    if describe_cluster(neptune, retired) is not None:
        if holder is not None and holder["DbClusterResourceId"] != plan["cluster_resource_id"]:
            _rename_cluster(neptune, original, new)  # the new cluster had taken the name: give it back
            present = workflow_instances(neptune, plan)
            for instance in plan["instances"]:
                if instance["id"] in present:
                    _rename_instance(neptune, instance["id"], instance["new_id"])
            raise ResourceNotReady(f"moving {original} back to {new}")
        if holder is None:
            _rename_cluster(neptune, retired, original)
            present = workflow_instances(neptune, plan)
            for instance in plan["instances"]:
                if instance["retired_id"] in present:
                    _rename_instance(neptune, instance["retired_id"], instance["id"])
            raise ResourceNotReady(f"renaming {retired} back to {original}")
    if not _settled(neptune, original):
        raise ResourceNotReady(f"{original} is not yet available")
    present = workflow_instances(neptune, plan)
    remaining = [i["new_id"] for i in plan["instances"] if i["new_id"] in present]
    for instance_id in remaining:
        neptune.delete_db_instance(DBInstanceIdentifier=instance_id, SkipFinalSnapshot=True)
    new_cluster = describe_cluster(neptune, new)
    if new_cluster is not None:
        if remaining or new_cluster.get("DBClusterMembers"):
            raise ResourceNotReady(f"instances of {new} are being deleted")
        if new_cluster.get("DeletionProtection"):
            neptune.modify_db_cluster(DBClusterIdentifier=new, DeletionProtection=False, ApplyImmediately=True)
        neptune.delete_db_cluster(DBClusterIdentifier=new, SkipFinalSnapshot=True)
    try:
        neptune.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=plan["snapshot_id"])
    except ClientError as error:
        if error.response["Error"]["Code"] != "DBClusterSnapshotNotFoundFault":
            raise
    return {"serving": original, "removed": [new, plan["snapshot_id"], *remaining]}


def notify(event: dict) -> dict:
    state, outcome = event["state"], event["outcome"]
    subject = f"Neptune Guard: remediation of {state.get('cluster_id') or state.get('snapshot_id')} {outcome}"
    send_notification(subject, {"outcome": outcome, "execution": event["execution"], "error": state.get("error"),
                                "needs_attention": state.get("bookkeeping_error"), "plan": state.get("plan")})
    return {"notified": outcome}


def send_notification(subject: str, message: dict) -> None:
    topic = os.environ.get("NOTIFICATION_TOPIC_ARN")
    if topic:
        region = topic.split(":")[3]
        boto3.client("sns", region_name=region, config=aws.CLIENT_CONFIG).publish(
            TopicArn=topic, Subject=subject[:100], Message=json.dumps(message, indent=2, default=str)
        )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


STEPS = {
    "plan": plan_cluster,
    "request_approval": request_approval,
    "create_snapshot": create_snapshot,
    "snapshot_available": snapshot_available,
    "restore_cluster": restore_cluster,
    "new_cluster_available": new_cluster_available,
    "apply_settings": apply_settings,
    "create_instances": create_instances,
    "instances_available": instances_available,
    "verify": verify,
    "cut_over": cut_over,
    "retain_original": retain_original,
    "resolve_finding": resolve_finding,
    "roll_back": roll_back,
    "notify": notify,
}
