"""Re-encrypting a Neptune cluster snapshot under a customer-managed key.

On-call first approves re-encrypting it (the approval marks the original; nothing of it changes). An encrypted
snapshot is copied under the key. An unencrypted one cannot be encrypted by copying: it is restored under the key
to a temporary cluster, which is snapshotted and then deleted. The new snapshot keeps the original's audience (the
accounts it is shared with); the original is deleted only after the new one is verified and on-call approves that
too. Steps follow the same rules as the cluster
workflow's: idempotent, convergent, ResourceNotReady while AWS works, only resources tagged for this
execution touched.
"""

from __future__ import annotations

import fnmatch
import json

from neptune_guard.remediate import naming
from neptune_guard.remediate.resources import (
    InvalidRequest,
    NotOurs,
    ResourceNotReady,
    Step,
    VerificationFailed,
    adopt_or_create,
    describe_cluster,
    describe_snapshot,
    hand_over,
    is_planned_snapshot,
    iso,
    parse_arn,
    planned_snapshot,
    require_available_cluster,
    require_available_snapshot,
    require_ours,
    snapshot_identity,
    tags_of,
    take_off,
    utc,
)
from neptune_guard.tags import (
    ARCHIVED_BY,
    CREATED_BY,
    REENCRYPT_APPROVED_BY,
    REMEDIATED_BY,
    REPLACE_APPROVED_BY,
    TAG_PREFIX,
    TEMPORARY_FOR,
    created_by,
    customer_tags,
)
from neptune_guard.remediate.plan import (
    DEFAULT_APPROVAL_TIMEOUT_SECONDS,
    current_key_is_customer_managed,
    if_left_behind,
    validate_request,
    validated_key,
)


def shared_with(neptune, snapshot_id: str) -> list[str]:
    """The accounts (or "all") that may restore the snapshot: its `restore` attribute."""
    result = neptune.describe_db_cluster_snapshot_attributes(DBClusterSnapshotIdentifier=snapshot_id)["DBClusterSnapshotAttributesResult"]
    return sorted(v for a in result.get("DBClusterSnapshotAttributes", []) if a["AttributeName"] == "restore"
                  for v in a.get("AttributeValues", []))


# What another account needs of the key to restore a snapshot shared with it (RDS creates a grant for the restore).
# https://docs.aws.amazon.com/neptune/latest/userguide/backup-restore-share-snapshot.html
# https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-modifying-external-accounts.html
SHARED_KEY_ACTIONS = ("kms:Decrypt", "kms:DescribeKey", "kms:CreateGrant")


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _action_matches(pattern: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def key_policy_admits(policy: str, account: str, key_arn: str) -> bool:
    """Whether the key policy allows `account` (its root, or any principal of it) every action in SHARED_KEY_ACTIONS,
    and denies it none. Conditions are not evaluated: a conditional allow counts, a conditional deny refuses."""
    statements = _listed(json.loads(policy).get("Statement", []))

    def names(statement) -> bool:
        principal = statement.get("Principal", {})
        values = ["*"] if principal == "*" else _listed(principal.get("AWS", [])) if isinstance(principal, dict) else []
        return any(v in ("*", account) or f":{account}:" in v for v in values)

    def covers(statement, action) -> bool:
        return (any(_action_matches(a, action) for a in _listed(statement.get("Action", [])))
                and any(r in ("*", key_arn) for r in _listed(statement.get("Resource", "*"))))

    for action in SHARED_KEY_ACTIONS:
        relevant = [st for st in statements if names(st) and covers(st, action)]
        if any(st.get("Effect") == "Deny" for st in relevant) or not any(st.get("Effect") == "Allow" for st in relevant):
            return False
    return True


def key_policy_statement(accounts: list[str], key_arn: str) -> dict:
    partition = key_arn.split(":")[1]
    return {"Sid": "NeptuneGuardSharedSnapshotRestore", "Effect": "Allow",
            "Principal": {"AWS": [f"arn:{partition}:iam::{a}:root" for a in accounts]}, "Action": list(SHARED_KEY_ACTIONS), "Resource": "*"}


def plan_snapshot(step: Step) -> dict:
    request = step.request
    validate_request(request, "snapshot_id")
    neptune, kms = step.neptune, step.client("kms")
    snapshot = describe_snapshot(neptune, request["snapshot_id"])
    if snapshot is None or snapshot.get("Engine") != "neptune":
        raise InvalidRequest(f"no Neptune cluster snapshot {request['snapshot_id']} in {request['account_id']} {request['region']}")
    owner = parse_arn(snapshot["DBClusterSnapshotArn"])["account"]
    if snapshot.get("SnapshotType") == "shared" or owner != request["account_id"]:
        raise InvalidRequest(f"{request['snapshot_id']} is shared with this account by {owner}: only its owner can re-encrypt it")
    if snapshot.get("SnapshotType") != "manual":
        raise InvalidRequest(f"{request['snapshot_id']} is an automated snapshot: it follows its cluster's key and expires; "
                             "remediate the cluster instead")
    if snapshot["Status"] != "available":
        raise InvalidRequest(f"snapshot {request['snapshot_id']} is {snapshot['Status']}, not available")
    tags = tags_of(neptune, snapshot["DBClusterSnapshotArn"])
    ours = sorted(k for k in tags if k.startswith(TAG_PREFIX) and k != REMEDIATED_BY)
    if ours:
        raise InvalidRequest(f"{request['snapshot_id']} belongs to a Neptune Guard execution ({', '.join(f'{k}={tags[k]}' for k in ours)}): "
                             "while it runs, it keeps or removes the snapshot."
                             + if_left_behind(snapshot["DBClusterSnapshotArn"], tags, [k for k in ours if k != ARCHIVED_BY]))
    key = validated_key(kms, request)
    if snapshot.get("StorageEncrypted") and snapshot.get("KmsKeyId") == key["Arn"]:
        raise InvalidRequest(f"snapshot {request['snapshot_id']} is already encrypted with {key['Arn']}")
    if current_key_is_customer_managed(kms, snapshot) and not request.get("replace_key"):
        raise InvalidRequest(f"snapshot {request['snapshot_id']} is already on the customer-managed key {snapshot['KmsKeyId']}; "
                             "replacing one CMK with another must be asked for explicitly (replace_key)")
    audience = shared_with(neptune, request["snapshot_id"])
    if "all" in audience:
        raise InvalidRequest(f"{request['snapshot_id']} is public (shared with all): Neptune Guard does not re-create a public "
                             "snapshot; make it private first")
    snapshot_id = snapshot["DBClusterSnapshotIdentifier"]
    token = naming.execution_token(step.execution)
    new_snapshot_id = naming.derived(snapshot_id, "cmk", token, naming.MAX_SNAPSHOT_IDENTIFIER)
    path = "copy" if snapshot.get("StorageEncrypted") else "restore"
    refused = [a for a in audience if not key_policy_admits(kms.get_key_policy(KeyId=key["Arn"], PolicyName="default")["Policy"], a, key["Arn"])]
    if refused:
        raise InvalidRequest(f"{request['snapshot_id']} is shared with {', '.join(refused)}, which the key policy of {key['Arn']} does not "
                             f"let use the key: they could no longer restore the re-encrypted copy. Add to its key policy: "
                             + json.dumps(key_policy_statement(refused, key["Arn"])) + ", then plan again")
    grants = (f" The accounts it is shared with ({', '.join(audience)}) are allowed {', '.join(SHARED_KEY_ACTIONS)} by the key "
              f"policy of {key['Arn']}." if audience else "")
    return {
        "kind": "snapshot-plan",
        "execution": step.execution,
        "snapshot_id": snapshot_id,
        "snapshot_identity": snapshot_identity(snapshot),
        "new_snapshot_id": new_snapshot_id,
        "temporary_cluster_id": naming.derived(snapshot_id[:40], "tmp", token),
        "target_key_arn": key["Arn"],
        "path": path,
        "tags": customer_tags([{"Key": k, "Value": v} for k, v in tags.items()]),
        "shared_with": audience,
        "approval_timeout_seconds": request.get("approval_timeout_seconds", DEFAULT_APPROVAL_TIMEOUT_SECONDS),
        "summary": f"Re-encrypted under {key['Arn']} as {new_snapshot_id}, shared as before; the original {snapshot_id} deleted.",
        "questions": {
            "re-encrypt": (f"Re-encrypt {snapshot_id} in {request['account_id']} {request['region']} under {key['Arn']}? "
                           + ("It is copied under the key" if path == "copy" else
                              "It is unencrypted: it is restored under the key into a temporary cluster, which is snapshotted "
                              "and deleted")
                           + f", as {new_snapshot_id}. Nothing of {snapshot_id} changes; deleting it is asked separately, "
                           "once the copy is verified."),
            "delete-original": (f"The snapshot {new_snapshot_id} (encrypted with {key['Arn']}, verified, tags and sharing kept) "
                                f"replaces {snapshot_id} in {request['account_id']} {request['region']}. Approve deleting "
                                f"{snapshot_id}?{grants}"),
        },
    }


def _approved_original(step: Step) -> None:
    """The re-encrypt approval marked the original for this execution: what alone lets the remediation role copy or
    restore a customer's snapshot (said here, before AWS refuses it as a bare AccessDenied)."""
    original = planned_snapshot(step.neptune, step.plan)
    if original is None:
        raise NotOurs(f"{step.plan['snapshot_id']} is gone: nothing to re-encrypt")
    if tags_of(step.neptune, original["DBClusterSnapshotArn"]).get(REENCRYPT_APPROVED_BY) != step.execution:
        raise NotOurs(f"the re-encrypt approval's mark is missing on {step.plan['snapshot_id']}: approve through the approval endpoint")


def copy_snapshot(step: Step) -> dict:
    plan, neptune = step.plan, step.neptune
    _approved_original(step)
    adopt_or_create(neptune, describe_snapshot(neptune, plan["new_snapshot_id"]), "DBClusterSnapshotArn", step.execution,
                    lambda: neptune.copy_db_cluster_snapshot(
                        SourceDBClusterSnapshotIdentifier=plan["snapshot_id"], TargetDBClusterSnapshotIdentifier=plan["new_snapshot_id"],
                        KmsKeyId=plan["target_key_arn"], Tags=plan["tags"] + created_by(step.execution)))
    return {"snapshot_id": plan["new_snapshot_id"]}


def new_snapshot_available(step: Step) -> dict:
    snapshot = require_available_snapshot(step.neptune, step.plan["new_snapshot_id"])
    require_ours(step.neptune, snapshot, "DBClusterSnapshotArn", step.execution)
    return {"status": "available"}


def restore_temporary_cluster(step: Step) -> dict:
    """The original restored under the key into a temporary cluster; its creation time is recorded, so that the new
    snapshot is proven to be of this cluster (and not of another made under its name). A cluster already under the
    name is taken for this execution's (a retried step) only if it was made after the re-encrypt approval: one made
    before it is not of this execution's restore, whatever its tag says."""
    plan, neptune = step.plan, step.neptune
    _approved_original(step)
    temporary = describe_cluster(neptune, plan["temporary_cluster_id"])
    if temporary is None:
        temporary = neptune.restore_db_cluster_from_snapshot(
            DBClusterIdentifier=plan["temporary_cluster_id"], SnapshotIdentifier=plan["snapshot_id"], Engine="neptune",
            # Its own tag, not the creation tag: the role may restore a customer's snapshot only into a temporary
            # cluster, which it may snapshot and delete but never give an instance or change.
            KmsKeyId=plan["target_key_arn"], Tags=[{"Key": TEMPORARY_FOR, "Value": step.execution}])["DBCluster"]
        temporary = describe_cluster(neptune, plan["temporary_cluster_id"]) or temporary  # the time the snapshot will carry
    else:
        require_ours(neptune, temporary, "DBClusterArn", step.execution, TEMPORARY_FOR)
        if temporary.get("ClusterCreateTime") and utc(temporary["ClusterCreateTime"]) < utc(step.answered["re-encrypt"]):
            raise NotOurs(f"{plan['temporary_cluster_id']} was made before the re-encrypt approval: not this execution's restore")
    created = temporary.get("ClusterCreateTime")
    if created is None:
        raise ResourceNotReady(f"{plan['temporary_cluster_id']} has no creation time yet")
    return {"cluster_id": plan["temporary_cluster_id"], "created": iso(created)}


def temporary_cluster_available(step: Step) -> dict:
    require_available_cluster(step.neptune, step.plan["temporary_cluster_id"])
    return {"status": "available"}


def snapshot_temporary_cluster(step: Step) -> dict:
    plan, neptune = step.plan, step.neptune

    def snapshot():
        temporary = describe_cluster(neptune, plan["temporary_cluster_id"])
        if temporary is None:
            raise NotOurs(f"the temporary cluster {plan['temporary_cluster_id']} is gone")
        require_ours(neptune, temporary, "DBClusterArn", step.execution, TEMPORARY_FOR)
        neptune.create_db_cluster_snapshot(DBClusterSnapshotIdentifier=plan["new_snapshot_id"],
                                           DBClusterIdentifier=plan["temporary_cluster_id"], Tags=plan["tags"] + created_by(step.execution))

    adopt_or_create(neptune, describe_snapshot(neptune, plan["new_snapshot_id"]), "DBClusterSnapshotArn", step.execution, snapshot)
    return {"snapshot_id": plan["new_snapshot_id"]}


def _delete_temporary_cluster(step: Step) -> bool:
    """True once the temporary cluster (ours) is gone."""
    neptune, identifier = step.neptune, step.plan["temporary_cluster_id"]
    temporary = describe_cluster(neptune, identifier)
    if temporary is None:
        return True
    require_ours(neptune, temporary, "DBClusterArn", step.execution, TEMPORARY_FOR)
    if temporary["Status"] != "deleting":
        neptune.delete_db_cluster(DBClusterIdentifier=identifier, SkipFinalSnapshot=True)
    return False


def delete_temporary_cluster(step: Step) -> dict:
    if not _delete_temporary_cluster(step):
        raise ResourceNotReady(f"deleting {step.plan['temporary_cluster_id']}")
    return {"deleted": step.plan["temporary_cluster_id"]}


def share_new_snapshot(step: Step) -> dict:
    """After approval, the new snapshot gets the original's audience, and no one else: the same accounts may restore
    it. (The remediation role may share only a snapshot the approval marked, and IAM cannot see the account list.)"""
    plan, neptune = step.plan, step.neptune
    if plan["shared_with"]:
        # What is shared is what was verified: checked again, as the original's deletion is, since it waited.
        if mismatches := _mismatches(_replacement_checks(step)[2]):
            raise VerificationFailed(f"{plan['new_snapshot_id']} is not shared: it no longer holds ({'; '.join(mismatches)})")
        neptune.modify_db_cluster_snapshot_attribute(DBClusterSnapshotIdentifier=plan["new_snapshot_id"], AttributeName="restore",
                                                     ValuesToAdd=plan["shared_with"])
    audience = shared_with(neptune, plan["new_snapshot_id"])
    if audience != plan["shared_with"]:
        raise VerificationFailed(f"{plan['new_snapshot_id']} is shared with {audience}, not {plan['shared_with']}")
    return {"shared_with": plan["shared_with"]}


def _replacement_checks(step: Step) -> tuple[dict, dict, dict]:
    """(the new snapshot, its tags, what must hold of it before the original may go): this execution's, available, under the
    target key (still enabled), and made from the original: copied from it, or taken of the temporary cluster this
    execution restored from it (the remediation role could make another snapshot under the planned name)."""
    plan, neptune = step.plan, step.neptune
    snapshot = describe_snapshot(neptune, plan["new_snapshot_id"])
    if snapshot is None:
        raise VerificationFailed(f"{plan['new_snapshot_id']} is gone")
    if plan["path"] == "copy":
        source = ("copied from", snapshot.get("SourceDBClusterSnapshotArn"), plan["snapshot_identity"]["arn"])
    else:
        source = ("taken of", (snapshot.get("DBClusterIdentifier"), iso(snapshot["ClusterCreateTime"]) if snapshot.get("ClusterCreateTime") else None),
                  (plan["temporary_cluster_id"], (step.state.get("temporary") or {}).get("created")))
    key = step.client("kms").describe_key(KeyId=plan["target_key_arn"])["KeyMetadata"]
    tags = tags_of(neptune, snapshot["DBClusterSnapshotArn"])
    return snapshot, tags, {
        "created by": (tags.get(CREATED_BY), step.execution),
        "status": (snapshot.get("Status"), "available"),
        "encrypted": (snapshot.get("StorageEncrypted"), True),
        "key": (snapshot.get("KmsKeyId"), plan["target_key_arn"]),
        "key state": (key["KeyState"], "Enabled"),
        source[0]: source[1:],
    }


def _mismatches(checks: dict) -> list[str]:
    return [f"{name}: {have!r}, expected {want!r}" for name, (have, want) in checks.items() if have != want]


def verify_snapshot(step: Step) -> dict:
    plan, neptune = step.plan, step.neptune
    _, tags, checks = _replacement_checks(step)
    checks |= {
        "tags": (tags, {t["Key"]: t["Value"] for t in plan["tags"] + created_by(step.execution)}),
        "shared with": (shared_with(neptune, plan["new_snapshot_id"]), []),  # shared once the replacement is approved
    }
    if mismatches := _mismatches(checks):
        raise VerificationFailed("; ".join(mismatches))
    return {"snapshot_id": plan["new_snapshot_id"], "checked": sorted(checks)}


def delete_original_snapshot(step: Step) -> dict:
    """After approval: the original, which the approval marked for replacement by this execution (what the
    remediation role's delete permission requires), is deleted; the new snapshot becomes the customer's."""
    plan, neptune = step.plan, step.neptune
    original = planned_snapshot(neptune, plan)
    if original is not None:
        require_ours(neptune, original, "DBClusterSnapshotArn", step.execution, REPLACE_APPROVED_BY)
        # The approval may have waited for days: the replacement is checked again right before the original goes.
        if mismatches := _mismatches(_replacement_checks(step)[2]):
            raise VerificationFailed(f"{plan['snapshot_id']} is kept: its replacement no longer holds ({'; '.join(mismatches)})")
        neptune.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=plan["snapshot_id"])
    new = describe_snapshot(neptune, plan["new_snapshot_id"])
    tags = require_ours(neptune, new, "DBClusterSnapshotArn", step.execution, CREATED_BY, REMEDIATED_BY)
    # The customer's now: neither its creation tag nor the approval's mark (which lets the role share and delete) stays.
    hand_over(neptune, new["DBClusterSnapshotArn"], tags, step.execution, (CREATED_BY, REPLACE_APPROVED_BY))
    return {"deleted": plan["snapshot_id"], "replaced_by": plan["new_snapshot_id"]}


def roll_back_snapshot(step: Step) -> dict:
    """Remove what this execution created; the original snapshot is never touched before approval, and the new
    one is removed only while the original still exists. The approvals' marks for this execution come off the
    original, so that it is free for the next remediation."""
    plan = step.plan
    if not plan:
        return {"kept": step.request.get("snapshot_id"), "removed": []}
    neptune = step.neptune
    if not _delete_temporary_cluster(step):
        raise ResourceNotReady(f"deleting {plan['temporary_cluster_id']}")
    removed, kept = [], [plan["snapshot_id"]]
    original = describe_snapshot(neptune, plan["snapshot_id"])
    intact = is_planned_snapshot(original, plan)
    new = describe_snapshot(neptune, plan["new_snapshot_id"])
    new_tags = tags_of(neptune, new["DBClusterSnapshotArn"]) if new is not None else {}
    if new_tags.get(CREATED_BY) == step.execution:
        if intact:
            neptune.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=plan["new_snapshot_id"])
            removed.append(plan["new_snapshot_id"])
        else:  # the original is gone, or another snapshot holds its name: the copy may be all that is left of it
            hand_over(neptune, new["DBClusterSnapshotArn"], new_tags, step.execution, (CREATED_BY, REPLACE_APPROVED_BY))
            kept = [plan["new_snapshot_id"]]
    if intact:
        take_off(neptune, [original["DBClusterSnapshotArn"]], (REENCRYPT_APPROVED_BY, REPLACE_APPROVED_BY), step.execution)
    outcome = {"kept": kept, "removed": removed}
    if not intact:
        outcome["original"] = "replaced under its name" if original else "gone"
    return outcome


STEPS = {
    "plan_snapshot": (plan_snapshot, None),
    "copy_snapshot": (copy_snapshot, "re-encrypt"),
    "new_snapshot_available": (new_snapshot_available, None),
    "restore_temporary_cluster": (restore_temporary_cluster, "re-encrypt"),
    "temporary_cluster_available": (temporary_cluster_available, None),
    "snapshot_temporary_cluster": (snapshot_temporary_cluster, None),
    "delete_temporary_cluster": (delete_temporary_cluster, None),
    "share_new_snapshot": (share_new_snapshot, "delete-original"),
    "verify_snapshot": (verify_snapshot, None),
    "delete_original_snapshot": (delete_original_snapshot, "delete-original"),
    "roll_back_snapshot": (roll_back_snapshot, None),
}
