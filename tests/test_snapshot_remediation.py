"""The snapshot remediation state machine: copy under the key, or restore-and-snapshot when unencrypted."""

import json

import pytest

from neptune_guard.approve import approvals, executions, workflow
from tests.conftest import awaiting, decide, final_state, finish, member_session

ACCOUNT, REGION, PARTNER = "111111111111", "us-east-1", "444444444444"
SCENARIO = {
    "accounts": {
        ACCOUNT: {
            REGION: {
                "keys": {"neptune-cmk": {"state": "Enabled", "shared_with": [PARTNER]}, "closed": {"state": "Enabled"}},
                "clusters": {"plain": {"encryption": "none"}, "default": {"encryption": "aws-managed"},
                             "good": {"encryption": "neptune-cmk"}},
                "snapshots": {"plain-snap": "plain", "default-snap": {"cluster": "default", "shared_with": [PARTNER]},
                              "good-snap": "good", "public-snap": "plain"},
            }
        }
    }
}


@pytest.fixture
def deployed(deploy_workflows):
    return deploy_workflows(SCENARIO)


def neptune(session):
    return member_session(session, ACCOUNT).client("neptune", region_name=REGION)


def snapshots(session):
    return {s["DBClusterSnapshotIdentifier"]: s for s in neptune(session).describe_db_cluster_snapshots(SnapshotType="manual")["DBClusterSnapshots"]}


def shared_with(session, snapshot_id):
    attributes = neptune(session).describe_db_cluster_snapshot_attributes(DBClusterSnapshotIdentifier=snapshot_id)
    return sorted(v for a in attributes["DBClusterSnapshotAttributesResult"]["DBClusterSnapshotAttributes"]
                  if a["AttributeName"] == "restore" for v in a["AttributeValues"])


def key_arn(session):
    return member_session(session, ACCOUNT).client("kms", region_name=REGION).describe_key(KeyId="alias/neptune-cmk")["KeyMetadata"]["Arn"]


def request(snapshot_id):
    return {"account_id": ACCOUNT, "region": REGION, "snapshot_id": snapshot_id, "target_key": "alias/neptune-cmk",
            "approval_timeout_seconds": 600}


@pytest.mark.parametrize("snapshot_id", ["default-snap", "plain-snap"])
def test_snapshot_is_replaced_by_one_under_the_cmk_with_its_tags_and_audience_after_approval(deployed, snapshot_id):
    session, sfn, arns = deployed
    original = snapshots(session)[snapshot_id]
    audience = shared_with(session, snapshot_id)
    neptune(session).add_tags_to_resource(ResourceName=original["DBClusterSnapshotArn"], Tags=[{"Key": "retention", "Value": "7y"}])
    execution = workflow.start(sfn, arns["snapshot"], request(snapshot_id))
    plan = awaiting(sfn, execution, "re-encrypt") and approvals.pending_approval(sfn, execution)["plan"]
    assert plan["new_snapshot_id"] not in snapshots(session)  # nothing is copied before on-call approves it
    assert snapshot_id in plan["questions"]["re-encrypt"] and "Nothing of" in plan["questions"]["re-encrypt"]
    decide(sfn, execution, "re-encrypt")
    awaiting(sfn, execution, "delete-original")
    assert snapshot_id in snapshots(session)  # the original stays until on-call approves
    if audience:
        assert PARTNER in plan["questions"]["delete-original"] and "kms:CreateGrant" in plan["questions"]["delete-original"]
    decide(sfn, execution, "delete-original")
    result = finish(sfn, execution)

    assert result["status"] == "SUCCEEDED", final_state(sfn, execution).get("error")
    after = snapshots(session)
    assert snapshot_id not in after
    new = after[plan["new_snapshot_id"]]
    assert new["StorageEncrypted"] and new["KmsKeyId"] == key_arn(session)
    tags = {t["Key"]: t["Value"] for t in neptune(session).list_tags_for_resource(ResourceName=new["DBClusterSnapshotArn"])["TagList"]}
    # The customer's now: no tag left that lets the remediation role share or delete it.
    assert tags["retention"] == "7y" and {k for k in tags if k.startswith("neptune-guard:")} == {"neptune-guard:remediated-by"}
    assert shared_with(session, plan["new_snapshot_id"]) == audience
    temporary = [c for c in neptune(session).describe_db_clusters()["DBClusters"] if c["DBClusterIdentifier"] == plan["temporary_cluster_id"]]
    assert temporary == []


def neptune_guard_tags(session, snapshot_id):
    arn = snapshots(session)[snapshot_id]["DBClusterSnapshotArn"]
    return {t["Key"] for t in neptune(session).list_tags_for_resource(ResourceName=arn)["TagList"] if t["Key"].startswith("neptune-guard:")}


@pytest.mark.parametrize("stage", ["re-encrypt", "delete-original"])
def test_rejection_keeps_the_original_free_of_marks_and_removes_the_new_snapshot(deployed, on_call, stage):
    """Rejected before the copy: nothing was made. Rejected after it: the copy is removed, and the re-encrypt
    approval's mark comes off the original, which a later remediation may take up again."""
    session, sfn, arns = deployed
    _, bob = on_call
    execution = workflow.start(sfn, arns["snapshot"], request("plain-snap"))
    plan = awaiting(sfn, execution, "re-encrypt") and approvals.pending_approval(sfn, execution)["plan"]
    if stage == "delete-original":
        decide(sfn, execution, "re-encrypt")
        awaiting(sfn, execution, "delete-original")
        assert neptune_guard_tags(session, "plain-snap") == {"neptune-guard:re-encrypt-approved-by"}
    bob.reject(execution, "legal hold")
    result = finish(sfn, execution)
    assert (result["status"], result["error"]) == ("FAILED", "NotApproved")
    after = snapshots(session)
    assert "plain-snap" in after and plan["new_snapshot_id"] not in after
    assert neptune_guard_tags(session, "plain-snap") == set()


def test_a_snapshot_is_not_copied_without_the_re_encrypt_approvals_mark(deployed):
    """An approval answered straight through Step Functions, past the approval endpoint, marks nothing: the copy step
    says so, and the remediation role could not have copied the customer's snapshot anyway."""
    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["snapshot"], request("default-snap"))
    plan = awaiting(sfn, execution, "re-encrypt") and approvals.pending_approval(sfn, execution)["plan"]
    pending = approvals.pending_approval(sfn, execution)
    sfn.send_task_success(taskToken=pending["token"], output=json.dumps({"approved": True, "stage": "re-encrypt", "approver": "x"}))
    result = finish(sfn, execution)
    assert result["status"] == "FAILED" and "re-encrypt approval's mark is missing" in json.dumps(final_state(sfn, execution))
    assert plan["new_snapshot_id"] not in snapshots(session)


def test_a_public_snapshot_is_refused(deployed):
    session, sfn, arns = deployed
    neptune(session).modify_db_cluster_snapshot_attribute(DBClusterSnapshotIdentifier="public-snap", AttributeName="restore",
                                                          ValuesToAdd=["all"])
    execution = workflow.start(sfn, arns["snapshot"], request("public-snap"))
    result = finish(sfn, execution)
    assert result["error"] == "Refused" and "public" in final_state(sfn, execution)["error"]["Cause"]


@pytest.mark.parametrize("snapshot_id, complaint", [("good-snap", "already encrypted"), ("no-such-snap", "no Neptune cluster snapshot")])
def test_bad_snapshot_requests_are_refused(deployed, snapshot_id, complaint):
    session, sfn, arns = deployed
    before = snapshots(session)
    execution = workflow.start(sfn, arns["snapshot"], request(snapshot_id))
    result = finish(sfn, execution)
    assert result["error"] == "Refused" and complaint in final_state(sfn, execution)["error"]["Cause"]
    assert snapshots(session).keys() == before.keys()
    # What on-call reads is the plan's reason, one line, not the Lambda error's JSON around it.
    cause = executions.status(sfn, execution)["cause"]
    assert complaint in cause and not cause.startswith("{") and "\n" not in cause, cause


def test_automated_snapshots_are_refused(deployed):
    session, sfn, arns = deployed
    automated = neptune(session).describe_db_cluster_snapshots(SnapshotType="automated")["DBClusterSnapshots"][0]
    execution = workflow.start(sfn, arns["snapshot"], request(automated["DBClusterSnapshotIdentifier"]))
    result = finish(sfn, execution)
    assert result["error"] == "Refused" and "automated snapshot" in final_state(sfn, execution)["error"]["Cause"]


def test_a_key_the_shared_accounts_could_not_use_is_refused_with_the_grant_to_add(deployed):
    session, sfn, arns = deployed
    before = snapshots(session)
    execution = workflow.start(sfn, arns["snapshot"], {**request("default-snap"), "target_key": "alias/closed"})
    result = finish(sfn, execution)
    cause = final_state(sfn, execution)["error"]["Cause"]
    assert result["error"] == "Refused" and PARTNER in cause and "kms:CreateGrant" in cause and "NeptuneGuardSharedSnapshotRestore" in cause
    assert snapshots(session).keys() == before.keys()


@pytest.mark.parametrize("statement, admitted", [
    ({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{PARTNER}:root"}, "Action": "kms:*", "Resource": "*"}, True),
    ({"Effect": "Allow", "Principal": {"AWS": PARTNER}, "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:CreateGrant"], "Resource": "*"}, True),
    ({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{PARTNER}:root"}, "Action": ["kms:Decrypt", "kms:DescribeKey"], "Resource": "*"}, False),
    ({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"}, "Action": "kms:*", "Resource": "*"}, False),
])
def test_the_key_policy_check_needs_every_action_for_the_account(statement, admitted):
    from neptune_guard.remediate.snapshot import key_policy_admits

    policy = json.dumps({"Statement": [statement]})
    assert key_policy_admits(policy, PARTNER, "arn:aws:kms:us-east-1:111111111111:key/k") is admitted
    denied = json.dumps({"Statement": [statement, {"Effect": "Deny", "Principal": "*", "Action": "kms:CreateGrant", "Resource": "*"}]})
    assert key_policy_admits(denied, PARTNER, "arn:aws:kms:us-east-1:111111111111:key/k") is False


def test_a_snapshot_made_again_under_the_planned_name_is_not_approved_for_re_encryption(deployed):
    """A snapshot's ARN is its name: deleted and made again between the plan and the approval, it is another snapshot,
    and the approval endpoint marks nothing."""
    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["snapshot"], request("plain-snap"))
    awaiting(sfn, execution, "re-encrypt")
    neptune(session).delete_db_cluster_snapshot(DBClusterSnapshotIdentifier="plain-snap")
    neptune(session).create_db_cluster_snapshot(DBClusterSnapshotIdentifier="plain-snap", DBClusterIdentifier="plain")
    with pytest.raises(approvals.NotApprovable, match="not the snapshot that was planned"):
        decide(sfn, execution, "re-encrypt")
    assert neptune_guard_tags(session, "plain-snap") == set()


def test_a_mark_an_ended_execution_left_behind_is_refused_with_the_command_that_frees_the_snapshot(deployed):
    """Stopped by hand before its rollback ran, an execution leaves its mark: the next plan says how to take it off."""
    session, sfn, arns = deployed
    stopped = workflow.start(sfn, arns["snapshot"], request("plain-snap"))
    awaiting(sfn, stopped, "re-encrypt")
    decide(sfn, stopped, "re-encrypt")
    awaiting(sfn, stopped, "delete-original")
    sfn.stop_execution(executionArn=stopped, error="Stopped", cause="stopped by an administrator")
    assert neptune_guard_tags(session, "plain-snap") == {"neptune-guard:re-encrypt-approved-by"}

    refused = workflow.start(sfn, arns["snapshot"], request("plain-snap"))
    cause = final_state(sfn, refused)["error"]["Cause"] if finish(sfn, refused)["error"] == "Refused" else ""
    arn = snapshots(session)["plain-snap"]["DBClusterSnapshotArn"]
    assert f"remove-tags-from-resource --region {REGION} --resource-name {arn} --tag-keys neptune-guard:re-encrypt-approved-by" in cause
    assert stopped in cause
    neptune(session).remove_tags_from_resource(ResourceName=arn, TagKeys=["neptune-guard:re-encrypt-approved-by"])
    assert awaiting(sfn, workflow.start(sfn, arns["snapshot"], request("plain-snap")), "re-encrypt")["status"] == "RUNNING"


@pytest.mark.parametrize("snapshot_id", ["default-snap", "plain-snap"])
def test_a_replacement_made_of_other_data_under_the_planned_name_never_costs_the_original(deployed, snapshot_id):
    """A holder of the remediation role copies another snapshot under the planned name, with the execution's tag,
    before the copy is made: the workflow takes it for its own, but the check before the original may go asks what
    it was made from (copied from the original, or taken of the temporary cluster this execution restored)."""
    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["snapshot"], request(snapshot_id))
    plan = awaiting(sfn, execution, "re-encrypt") and approvals.pending_approval(sfn, execution)["plan"]
    neptune(session).copy_db_cluster_snapshot(SourceDBClusterSnapshotIdentifier="good-snap", TargetDBClusterSnapshotIdentifier=plan["new_snapshot_id"],
                                              KmsKeyId=plan["target_key_arn"], Tags=plan["tags"] + [{"Key": "neptune-guard:created-by", "Value": execution}])
    decide(sfn, execution, "re-encrypt")
    result = finish(sfn, execution)
    assert (result["status"], result["error"]) == ("FAILED", "RolledBack")
    assert ("copied from" if plan["path"] == "copy" else "taken of") in final_state(sfn, execution)["error"]["Cause"]
    assert snapshot_id in snapshots(session) and plan["new_snapshot_id"] not in snapshots(session)


def test_the_original_stays_when_the_key_is_no_longer_usable_by_the_time_its_deletion_is_approved(deployed):
    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["snapshot"], request("default-snap"))
    plan = awaiting(sfn, execution, "re-encrypt") and approvals.pending_approval(sfn, execution)["plan"]
    decide(sfn, execution, "re-encrypt")
    awaiting(sfn, execution, "delete-original")
    member_session(session, ACCOUNT).client("kms", region_name=REGION).schedule_key_deletion(KeyId=plan["target_key_arn"].split("/")[-1], PendingWindowInDays=7)
    decide(sfn, execution, "delete-original")
    result = finish(sfn, execution)
    assert (result["status"], result["error"]) == ("FAILED", "RolledBack")
    assert "key state: 'PendingDeletion'" in final_state(sfn, execution)["error"]["Cause"]
    assert "default-snap" in snapshots(session)


@pytest.mark.parametrize("meanwhile", ["deleted", "made again under its name"])
def test_a_copy_that_may_be_all_that_is_left_of_the_original_is_kept_and_handed_over(deployed, on_call, meanwhile):
    """The owner deletes the original (or makes another under its name) while the delete-original question waits, and
    the question is rejected: the rollback keeps the copy, no longer the role's to delete or share."""
    session, sfn, arns = deployed
    _, bob = on_call
    execution = workflow.start(sfn, arns["snapshot"], request("default-snap"))
    plan = awaiting(sfn, execution, "re-encrypt") and approvals.pending_approval(sfn, execution)["plan"]
    decide(sfn, execution, "re-encrypt")
    awaiting(sfn, execution, "delete-original")
    neptune(session).delete_db_cluster_snapshot(DBClusterSnapshotIdentifier="default-snap")
    if meanwhile == "made again under its name":
        neptune(session).create_db_cluster_snapshot(DBClusterSnapshotIdentifier="default-snap", DBClusterIdentifier="good")
    bob.reject(execution, "the owner changed the snapshot")
    result = finish(sfn, execution)
    assert (result["status"], result["error"]) == ("FAILED", "OriginalGone")
    assert final_state(sfn, execution)["rollback"]["kept"] == [plan["new_snapshot_id"]]
    assert neptune_guard_tags(session, plan["new_snapshot_id"]) == {"neptune-guard:remediated-by"}


def test_a_temporary_cluster_made_before_the_approval_under_the_planned_name_is_not_taken_for_the_restore(deployed):
    """A holder of the remediation role restores other data under the planned temporary name, with the execution's
    tag, before on-call approves: the restore step does not take it for its own."""
    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["snapshot"], request("plain-snap"))
    plan = awaiting(sfn, execution, "re-encrypt") and approvals.pending_approval(sfn, execution)["plan"]
    neptune(session).restore_db_cluster_from_snapshot(DBClusterIdentifier=plan["temporary_cluster_id"], SnapshotIdentifier="good-snap",
                                                      Engine="neptune", Tags=[{"Key": "neptune-guard:temporary-for", "Value": execution}])
    decide(sfn, execution, "re-encrypt")
    result = finish(sfn, execution)
    assert (result["status"], result["error"]) == ("FAILED", "RolledBack")
    assert "made before the re-encrypt approval" in final_state(sfn, execution)["error"]["Cause"]
    assert "plain-snap" in snapshots(session) and plan["new_snapshot_id"] not in snapshots(session)


def test_a_replacement_swapped_after_its_verification_is_never_shared(deployed, monkeypatch):
    """Verified, then replaced under its name (with the execution's tag) while the delete-original question waits:
    the share checks again what it shares, so the partner account never gets other data."""
    from moto.rds import models as rds_models

    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["snapshot"], request("default-snap"))
    plan = awaiting(sfn, execution, "re-encrypt") and approvals.pending_approval(sfn, execution)["plan"]
    decide(sfn, execution, "re-encrypt")
    awaiting(sfn, execution, "delete-original")
    neptune(session).delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=plan["new_snapshot_id"])
    neptune(session).copy_db_cluster_snapshot(SourceDBClusterSnapshotIdentifier="good-snap", TargetDBClusterSnapshotIdentifier=plan["new_snapshot_id"],
                                              KmsKeyId=plan["target_key_arn"], Tags=plan["tags"] + [{"Key": "neptune-guard:created-by", "Value": execution}])
    shares, modify = [], rds_models.RDSBackend.modify_db_cluster_snapshot_attribute

    def observed(self, db_cluster_snapshot_identifier, *args, **kwargs):
        shares.append(db_cluster_snapshot_identifier)
        return modify(self, db_cluster_snapshot_identifier, *args, **kwargs)

    monkeypatch.setattr(rds_models.RDSBackend, "modify_db_cluster_snapshot_attribute", observed)
    decide(sfn, execution, "delete-original")
    result = finish(sfn, execution)
    assert (result["status"], result["error"]) == ("FAILED", "RolledBack")
    assert "is not shared" in final_state(sfn, execution)["error"]["Cause"] and shares == []
    assert "default-snap" in snapshots(session)
