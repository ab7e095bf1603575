"""The snapshot remediation state machine: copy under the key, or restore-and-snapshot when unencrypted."""

import pytest

from neptune_guard import workflow
from tests.conftest import member_session
from tests.test_remediation import awaiting, finish

ACCOUNT, REGION = "111111111111", "us-east-1"
SCENARIO = {
    "accounts": {
        ACCOUNT: {
            REGION: {
                "keys": {"neptune-cmk": {"state": "Enabled"}},
                "clusters": {"plain": {"encryption": "none"}, "default": {"encryption": "aws-managed"},
                             "good": {"encryption": "neptune-cmk"}},
                "snapshots": {"plain-snap": "plain", "default-snap": "default", "good-snap": "good"},
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


def key_arn(session):
    return member_session(session, ACCOUNT).client("kms", region_name=REGION).describe_key(KeyId="alias/neptune-cmk")["KeyMetadata"]["Arn"]


def request(snapshot_id):
    return {"account_id": ACCOUNT, "region": REGION, "snapshot_id": snapshot_id, "target_key": "alias/neptune-cmk"}


@pytest.mark.parametrize("snapshot_id", ["default-snap", "plain-snap"])
def test_snapshot_is_replaced_by_one_under_the_cmk_with_its_tags_after_approval(deployed, on_call, snapshot_id):
    session, sfn, arns = deployed
    alice, bob = on_call
    original = snapshots(session)[snapshot_id]
    neptune(session).add_tags_to_resource(ResourceName=original["DBClusterSnapshotArn"], Tags=[{"Key": "retention", "Value": "7y"}])
    execution = alice.start(arns["snapshot"], request(snapshot_id))
    awaiting(sfn, execution, "delete-original")
    assert snapshot_id in snapshots(session)  # the original stays until on-call approves
    bob.approve(execution)
    result = finish(sfn, execution)

    assert result["status"] == "SUCCEEDED", result.get("cause")
    after = snapshots(session)
    assert snapshot_id not in after
    new = after[f"{snapshot_id}-cmk"]
    assert new["StorageEncrypted"] and new["KmsKeyId"] == key_arn(session)
    tags = neptune(session).list_tags_for_resource(ResourceName=new["DBClusterSnapshotArn"])["TagList"]
    assert {"Key": "retention", "Value": "7y"} in tags
    temporary = [c for c in neptune(session).describe_db_clusters()["DBClusters"] if c["DBClusterIdentifier"].startswith("neptune-guard-tmp")]
    assert temporary == []


def test_rejection_keeps_the_original_and_removes_the_new_snapshot(deployed, on_call):
    session, sfn, arns = deployed
    alice, bob = on_call
    execution = alice.start(arns["snapshot"], request("plain-snap"))
    awaiting(sfn, execution, "delete-original")
    bob.reject(execution, "legal hold")
    result = finish(sfn, execution)
    assert (result["status"], result["error"]) == ("FAILED", "RemediationRolledBack")
    after = snapshots(session)
    assert "plain-snap" in after and "plain-snap-cmk" not in after


@pytest.mark.parametrize("snapshot_id, complaint", [("good-snap", "already encrypted"), ("no-such-snap", "no Neptune cluster snapshot")])
def test_bad_snapshot_requests_are_refused(deployed, snapshot_id, complaint):
    session, sfn, arns = deployed
    before = snapshots(session)
    result = finish(sfn, workflow.start(sfn, arns["snapshot"], request(snapshot_id)))
    assert (result["error"], complaint in result["cause"]) == ("Refused", True)
    assert snapshots(session).keys() == before.keys()


def test_automated_snapshots_are_refused(deployed):
    session, sfn, arns = deployed
    automated = neptune(session).describe_db_cluster_snapshots(SnapshotType="automated")["DBClusterSnapshots"][0]
    result = finish(sfn, workflow.start(sfn, arns["snapshot"], request(automated["DBClusterSnapshotIdentifier"])))
    assert result["error"] == "Refused" and "automated snapshot" in result["cause"]
