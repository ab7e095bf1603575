"""Re-encrypting a Neptune cluster snapshot under a customer-managed key.

An encrypted snapshot is copied under the key. An unencrypted one cannot be encrypted by copying: it
is restored under the key to a temporary cluster, which is snapshotted and then deleted. The original
snapshot is deleted only after the new one is verified and on-call approves. Steps follow the same
rules as the cluster workflow's: idempotent, convergent, ResourceNotReady while AWS works.
"""

from __future__ import annotations

import hashlib

from . import aws
from .remediation import (
    InvalidRequest,
    VerificationFailed,
    approval_timeout,
    describe_cluster,
    describe_snapshot,
    member_session,
    neptune_client,
    require_available_cluster,
    require_available_snapshot,
    restore_under_key,
    validate_request,
    validated_key,
)

NEW_SNAPSHOT_SUFFIX = "-cmk"


def plan_snapshot(event: dict) -> dict:
    request = event["state"]
    validate_request(request, "snapshot_id")
    session = member_session(request)
    neptune = session.client("neptune", region_name=request["region"], config=aws.CLIENT_CONFIG)
    snapshot = describe_snapshot(neptune, request["snapshot_id"])
    if snapshot is None or snapshot.get("Engine") != "neptune":
        raise InvalidRequest(f"no Neptune cluster snapshot {request['snapshot_id']} in {request['account_id']} {request['region']}")
    if snapshot.get("SnapshotType") != "manual":
        raise InvalidRequest(f"{request['snapshot_id']} is an automated snapshot: it follows its cluster's key and expires; "
                             "remediate the cluster instead")
    if snapshot["Status"] != "available":
        raise InvalidRequest(f"snapshot {request['snapshot_id']} is {snapshot['Status']}, not available")
    key = validated_key(session.client("kms", region_name=request["region"], config=aws.CLIENT_CONFIG), request)
    if snapshot.get("StorageEncrypted") and snapshot.get("KmsKeyId") == key["Arn"]:
        raise InvalidRequest(f"snapshot {request['snapshot_id']} is already encrypted with {key['Arn']}")
    snapshot_id = snapshot["DBClusterSnapshotIdentifier"]
    new_snapshot_id = snapshot_id + NEW_SNAPSHOT_SUFFIX
    if describe_snapshot(neptune, new_snapshot_id) is not None:
        raise InvalidRequest(f"a snapshot named {new_snapshot_id} already exists: an earlier remediation left it; resolve it first")
    tags = neptune.list_tags_for_resource(ResourceName=snapshot["DBClusterSnapshotArn"]).get("TagList", [])
    path = "copy" if snapshot.get("StorageEncrypted") else "restore"
    return {
        "snapshot_id": snapshot_id,
        "snapshot_arn": snapshot["DBClusterSnapshotArn"],
        "new_snapshot_id": new_snapshot_id,
        "temporary_cluster_id": "neptune-guard-tmp-" + hashlib.sha256(snapshot["DBClusterSnapshotArn"].encode()).hexdigest()[:12],
        "target_key_arn": key["Arn"],
        "path": path,
        "tags": tags,
        "approval_timeout_seconds": approval_timeout(request),
        "questions": {
            "delete-original": (f"The snapshot {new_snapshot_id} (encrypted with {key['Arn']}, verified, tags kept) replaces "
                                f"{snapshot_id} in {request['account_id']} {request['region']}. Approve deleting {snapshot_id}?"),
        },
        "summary": f"Snapshot re-encrypted under {key['Arn']} as {new_snapshot_id}; original {snapshot_id} deleted",
    }


def copy_snapshot(event: dict) -> dict:
    state, plan = event["state"], event["state"]["plan"]
    neptune = neptune_client(state)
    if describe_snapshot(neptune, plan["new_snapshot_id"]) is None:
        neptune.copy_db_cluster_snapshot(
            SourceDBClusterSnapshotIdentifier=plan["snapshot_id"], TargetDBClusterSnapshotIdentifier=plan["new_snapshot_id"],
            KmsKeyId=plan["target_key_arn"], Tags=plan["tags"],
        )
    return {"snapshot_id": plan["new_snapshot_id"]}


def new_snapshot_available(event: dict) -> dict:
    return require_available_snapshot(event["state"], event["state"]["plan"]["new_snapshot_id"])


def restore_temporary_cluster(event: dict) -> dict:
    plan = event["state"]["plan"]
    return restore_under_key(event["state"], plan["temporary_cluster_id"], plan["snapshot_id"], plan["target_key_arn"],
                             Tags=[{"Key": "neptune-guard:temporary", "Value": plan["snapshot_id"]}])


def temporary_cluster_available(event: dict) -> dict:
    return require_available_cluster(event["state"], event["state"]["plan"]["temporary_cluster_id"])


def snapshot_temporary_cluster(event: dict) -> dict:
    state, plan = event["state"], event["state"]["plan"]
    neptune = neptune_client(state)
    if describe_snapshot(neptune, plan["new_snapshot_id"]) is None:
        neptune.create_db_cluster_snapshot(
            DBClusterSnapshotIdentifier=plan["new_snapshot_id"], DBClusterIdentifier=plan["temporary_cluster_id"], Tags=plan["tags"]
        )
    return {"snapshot_id": plan["new_snapshot_id"]}


def delete_temporary_cluster(event: dict) -> dict:
    state, plan = event["state"], event["state"]["plan"]
    neptune = neptune_client(state)
    if describe_cluster(neptune, plan["temporary_cluster_id"]) is not None:
        neptune.delete_db_cluster(DBClusterIdentifier=plan["temporary_cluster_id"], SkipFinalSnapshot=True)
    return {"deleted": plan["temporary_cluster_id"]}


def verify_snapshot(event: dict) -> dict:
    state, plan = event["state"], event["state"]["plan"]
    neptune = neptune_client(state)
    snapshot = describe_snapshot(neptune, plan["new_snapshot_id"]) or {}
    tags = neptune.list_tags_for_resource(ResourceName=snapshot.get("DBClusterSnapshotArn", "")).get("TagList", []) if snapshot else []
    checks = {
        "encrypted": (snapshot.get("StorageEncrypted"), True),
        "key": (snapshot.get("KmsKeyId"), plan["target_key_arn"]),
        "tags": ({t["Key"]: t["Value"] for t in tags}, {t["Key"]: t["Value"] for t in plan["tags"]}),
    }
    mismatches = [f"{name}: {have!r}, expected {want!r}" for name, (have, want) in checks.items() if have != want]
    if mismatches:
        raise VerificationFailed("; ".join(mismatches))
    return {"snapshot_id": plan["new_snapshot_id"], "checked": sorted(checks)}


def delete_original_snapshot(event: dict) -> dict:
    state, plan = event["state"], event["state"]["plan"]
    neptune = neptune_client(state)
    if describe_snapshot(neptune, plan["snapshot_id"]) is not None:
        neptune.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=plan["snapshot_id"])
    return {"deleted": plan["snapshot_id"]}


def roll_back_snapshot(event: dict) -> dict:
    """Remove what the workflow created; the original snapshot is never touched before approval."""
    state = event["state"]
    plan = state.get("plan")
    if not plan:
        return {"rolled_back": "nothing had changed"}
    neptune = neptune_client(state)
    removed = []
    if describe_cluster(neptune, plan["temporary_cluster_id"]) is not None:
        neptune.delete_db_cluster(DBClusterIdentifier=plan["temporary_cluster_id"], SkipFinalSnapshot=True)
        removed.append(plan["temporary_cluster_id"])
    if describe_snapshot(neptune, plan["new_snapshot_id"]) is not None and describe_snapshot(neptune, plan["snapshot_id"]) is not None:
        neptune.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=plan["new_snapshot_id"])
        removed.append(plan["new_snapshot_id"])
    return {"kept": plan["snapshot_id"], "removed": removed}


STEPS = {
    "plan_snapshot": plan_snapshot,
    "copy_snapshot": copy_snapshot,
    "new_snapshot_available": new_snapshot_available,
    "restore_temporary_cluster": restore_temporary_cluster,
    "temporary_cluster_available": temporary_cluster_available,
    "snapshot_temporary_cluster": snapshot_temporary_cluster,
    "delete_temporary_cluster": delete_temporary_cluster,
    "verify_snapshot": verify_snapshot,
    "delete_original_snapshot": delete_original_snapshot,
    "roll_back_snapshot": roll_back_snapshot,
}
