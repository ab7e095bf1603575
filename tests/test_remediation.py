"""The cluster remediation state machine: the real ASL in moto's interpreter, steps run in-process."""

import json

import pytest

from neptune_guard import approvals, workflow
from sandbox import workflows
from tests.conftest import member_session

ACCOUNT, REGION = "111111111111", "us-east-1"
SCENARIO = {
    "accounts": {
        ACCOUNT: {
            REGION: {
                "keys": {"neptune-cmk": {"state": "Enabled"}, "off": {"state": "Disabled"}},
                "clusters": {
                    "orders": {
                        "encryption": "none",
                        "instances": {"orders-1": "db.r6g.large", "orders-2": "db.r6g.xlarge"},
                        "deletion_protection": True, "iam_auth": True, "port": 8183, "backup_retention": 7,
                        "log_exports": ["audit"], "tags": {"team": "orders"},
                    },
                    "done": {"encryption": "neptune-cmk", "instances": {"done-1": "db.r6g.large"}},
                },
            }
        }
    }
}


@pytest.fixture
def deployed(deploy_workflows):
    return deploy_workflows(SCENARIO)


TRIGGER = "arn:aws:sts::123456789012:assumed-role/NeptuneGuardTrigger/neptune-guard-trigger"


def request(**overrides):
    return {"account_id": ACCOUNT, "region": REGION, "cluster_id": "orders", "target_key": "alias/neptune-cmk", **overrides}


def clusters(session):
    neptune = member_session(session, ACCOUNT).client("neptune", region_name=REGION)
    return {c["DBClusterIdentifier"]: c for c in neptune.describe_db_clusters()["DBClusters"]}


def awaiting(sfn, execution_arn, stage="snapshot"):
    def until(description, history):
        try:
            return approvals.pending_approval(sfn, execution_arn)["stage"] == stage
        except approvals.NoPendingApproval:
            return False
    return workflows.wait_for(sfn, execution_arn, until)


def finish(sfn, execution_arn):
    return workflows.wait_for(sfn, execution_arn, lambda d, h: False)


def test_approved_remediation_keeps_every_setting_under_the_original_names(deployed, on_call):
    session, sfn, arns = deployed
    alice, bob = on_call
    before = clusters(session)["orders"]
    execution = alice.start(arns["cluster"], request())

    assert awaiting(sfn, execution)["status"] == "RUNNING"
    assert approvals.pending_approval(sfn, execution)["stage"] == "snapshot"
    assert "orders-cmk" not in clusters(session)  # nothing happens before the first approval
    first = bob.approve(execution)
    awaiting(sfn, execution, "cutover")
    assert approvals.pending_approval(sfn, execution)["stage"] == "cutover"
    bob.approve(execution)
    result = finish(sfn, execution)

    assert result["status"] == "SUCCEEDED", result.get("cause")
    after = clusters(session)
    key_arn = member_session(session, ACCOUNT).client("kms", region_name=REGION).describe_key(KeyId="alias/neptune-cmk")["KeyMetadata"]["Arn"]
    serving = after["orders"]
    assert serving["StorageEncrypted"] and serving["KmsKeyId"] == key_arn
    assert serving["DbClusterResourceId"] != before["DbClusterResourceId"]
    for setting in ("DeletionProtection", "IAMDatabaseAuthenticationEnabled", "Port", "BackupRetentionPeriod", "EnabledCloudwatchLogsExports"):
        assert serving[setting] == before[setting], setting
    assert sorted(m["DBInstanceIdentifier"] for m in serving["DBClusterMembers"]) == ["orders-1", "orders-2"]
    retired = after["orders-pre-cmk"]
    assert retired["Status"] == "stopped" and retired["DbClusterResourceId"] == before["DbClusterResourceId"]
    assert "orders-cmk" not in after
    output = json.loads(result["output"])
    assert output["approvals"]["snapshot"]["approver"] == first["approver"] == bob.arn
    assert output["requested_by"] == alice.arn
    assert output["approvals"]["cutover"]["approved"] is True


def test_rejection_before_the_snapshot_changes_nothing(deployed, on_call):
    session, sfn, arns = deployed
    alice, bob = on_call
    before = clusters(session)
    execution = alice.start(arns["cluster"], request())
    awaiting(sfn, execution)
    bob.reject(execution, "not during the sale")
    result = finish(sfn, execution)
    assert (result["status"], result["error"]) == ("FAILED", "NotApproved")
    assert set(clusters(session)) == set(before)


def test_rejection_at_cutover_removes_the_new_cluster_and_leaves_the_original(deployed, on_call):
    session, sfn, arns = deployed
    alice, bob = on_call
    before = clusters(session)["orders"]
    execution = alice.start(arns["cluster"], request())
    awaiting(sfn, execution)
    bob.approve(execution)
    awaiting(sfn, execution, "cutover")
    assert "orders-cmk" in clusters(session)
    bob.reject(execution, "endpoint check failed")
    result = finish(sfn, execution)
    assert (result["status"], result["error"]) == ("FAILED", "RemediationRolledBack")
    after = clusters(session)
    assert "orders-cmk" not in after and "orders-pre-cmk" not in after
    assert after["orders"]["DbClusterResourceId"] == before["DbClusterResourceId"] and after["orders"]["Status"] == "available"
    snapshots = member_session(session, ACCOUNT).client("neptune", region_name=REGION).describe_db_cluster_snapshots(SnapshotType="manual")
    assert not [s for s in snapshots["DBClusterSnapshots"] if s["DBClusterSnapshotIdentifier"].startswith("orders-pre-cmk")]


def test_approval_timeout_changes_nothing(deployed):
    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["cluster"], request(approval_timeout_seconds=1))
    result = finish(sfn, execution)
    assert (result["status"], result["error"]) == ("FAILED", "NotApproved")
    assert "orders-cmk" not in clusters(session)


@pytest.mark.parametrize(
    "overrides, complaint",
    [
        ({"target_key": "alias/aws/rds"}, "AWS-managed"),
        ({"target_key": "arn:aws:kms:us-east-1:111111111111:key"}, "KMS key ARN or an alias"),
        ({"target_key": "arn:aws:kms:eu-west-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab"}, "is in eu-west-1"),
        ({"target_key": "alias/off"}, "Disabled"),
        ({"cluster_id": "done", "target_key": "alias/neptune-cmk"}, "already encrypted"),
        ({"cluster_id": "no-such-cluster"}, "no Neptune cluster"),
        ({"account_id": "1234"}, "12 digits"),
    ],
)
def test_bad_requests_are_refused_before_anything_changes(deployed, overrides, complaint):
    session, sfn, arns = deployed
    before = clusters(session)
    execution = workflow.start(sfn, arns["cluster"], request(**overrides))
    result = finish(sfn, execution)
    assert (result["status"], result["error"]) == ("FAILED", "Refused")
    assert complaint in result["cause"]
    assert set(clusters(session)) == set(before)


def test_a_cluster_that_is_not_available_is_refused(deployed):
    session, sfn, arns = deployed
    member_session(session, ACCOUNT).client("neptune", region_name=REGION).stop_db_cluster(DBClusterIdentifier="orders")
    execution = workflow.start(sfn, arns["cluster"], request())
    result = finish(sfn, execution)
    assert result["error"] == "Refused" and "stopped, not available" in result["cause"]


def test_a_double_trigger_starts_one_execution_and_a_retry_after_it_ended_starts_anew(deployed, on_call):
    session, sfn, arns = deployed
    _, bob = on_call
    first = workflow.start(sfn, arns["cluster"], request())
    assert workflow.start(sfn, arns["cluster"], request()) == first
    assert workflow.start(sfn, arns["cluster"], request(approval_timeout_seconds=600)) == first  # still running
    assert len(sfn.list_executions(stateMachineArn=arns["cluster"])["executions"]) == 1
    awaiting(sfn, first)
    bob.reject(first, "not now")
    finish(sfn, first)
    retry = workflow.start(sfn, arns["cluster"], request())
    assert retry != first and retry.endswith("-2")
    assert sfn.describe_execution(executionArn=retry)["status"] == "RUNNING"


def test_cli_starts_and_approves_and_refuses_an_execution_not_waiting(deployed, on_call, capsys, monkeypatch):
    from neptune_guard.cli import main

    session, sfn, arns = deployed
    alice, bob = on_call
    before = clusters(session)
    assert main(["plan", "--account", ACCOUNT, "--region", REGION, "--cluster", "orders", "--target-key", "alias/neptune-cmk"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["restore"]["Port"] == 8183 and plan["modify"]["BackupRetentionPeriod"] == 7
    assert [i["class"] for i in plan["instances"]] == ["db.r6g.large", "db.r6g.xlarge"]
    assert set(clusters(session)) == set(before)  # planning changes nothing
    assert main(["plan", "--account", ACCOUNT, "--region", REGION, "--cluster", "orders", "--target-key", "alias/aws/rds"]) == 2
    assert "AWS-managed" in capsys.readouterr().err
    monkeypatch.setenv("NEPTUNE_GUARD_APPROVAL_URL", arns["approval_url"])
    as_person(monkeypatch, alice)
    assert main(["remediate", "--state-machine-arn", arns["cluster"], "--account", ACCOUNT, "--region", REGION,
                 "--cluster", "orders", "--target-key", "alias/neptune-cmk"]) == 0
    execution = json.loads(capsys.readouterr().out)["execution_arn"]
    awaiting(sfn, execution)
    assert main(["approve", execution]) == 2  # alice started it: someone else must approve
    assert "cannot approve it" in capsys.readouterr().err
    as_person(monkeypatch, bob)
    assert main(["approve", execution]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["stage"], answer["approver"], answer["requested_by"]) == ("snapshot", bob.arn, alice.arn)
    awaiting(sfn, execution, "cutover")
    assert main(["reject", execution, "--reason", "not today"]) == 0
    finish(sfn, execution)
    assert main(["approve", execution]) == 2
    assert "not waiting for an approval" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:  # never plain HTTP off loopback
        main(["approve", execution, "--approval-url", "http://approvals.example.com/"])
    assert usage.value.code == 2 and "must be https" in capsys.readouterr().err
    monkeypatch.delenv("NEPTUNE_GUARD_APPROVAL_URL")
    assert main(["approve", execution]) == 2
    assert "give --approval-url or set NEPTUNE_GUARD_APPROVAL_URL" in capsys.readouterr().err


def as_person(monkeypatch, engineer):
    """The CLI finds its credentials as boto3 does: here, the engineer's own, in the environment."""
    credentials = engineer.session.get_credentials()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials.secret_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", credentials.token)


def _fail(monkeypatch, method: str, when=lambda *args, **kwargs: True):
    """Make one local AWS operation fail, as AWS can at any step."""
    from moto.rds import exceptions as rds_exceptions
    from moto.rds import models as rds_models

    original = getattr(rds_models.RDSBackend, method)

    def failing(self, *args, **kwargs):
        if when(*args, **kwargs):
            raise rds_exceptions.RDSClientError("InternalFailure", f"injected fault in {method}")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(rds_models.RDSBackend, method, failing)


def _drop_tags_on_restore(monkeypatch):
    from moto.rds import models as rds_models

    original = rds_models.RDSBackend.restore_db_cluster_from_snapshot

    def restore_without_tags(self, snapshot_id, overrides):
        return original(self, snapshot_id, {**overrides, "Tags": []})

    monkeypatch.setattr(rds_models.RDSBackend, "restore_db_cluster_from_snapshot", restore_without_tags)


FAILURE_POINTS = {
    "snapshot": lambda mp: _fail(mp, "create_db_cluster_snapshot"),
    "restore": lambda mp: _fail(mp, "restore_db_cluster_from_snapshot"),
    "settings": lambda mp: _fail(mp, "modify_db_cluster", lambda kwargs: kwargs.get("backup_retention_period") is not None),
    "instances": lambda mp: _fail(mp, "create_db_instance", lambda kwargs: kwargs["db_instance_identifier"].endswith("-cmk")),
    "verify": _drop_tags_on_restore,
    "cutover": lambda mp: _fail(mp, "modify_db_cluster", lambda kwargs: kwargs.get("new_db_cluster_identifier") == "orders"
                                and kwargs["db_cluster_identifier"] == "orders-cmk"),
}


@pytest.mark.parametrize("failure_point", FAILURE_POINTS)
def test_every_failure_point_rolls_back_to_the_original_under_its_own_name(deployed, on_call, monkeypatch, failure_point):
    session, sfn, arns = deployed
    alice, bob = on_call
    before = clusters(session)
    FAILURE_POINTS[failure_point](monkeypatch)
    execution = alice.start(arns["cluster"], request())
    awaiting(sfn, execution)
    bob.approve(execution)
    if failure_point == "cutover":
        awaiting(sfn, execution, "cutover")
        bob.approve(execution)
    result = finish(sfn, execution)

    assert (result["status"], result["error"]) == ("FAILED", "RemediationRolledBack"), result.get("cause")
    after = clusters(session)
    assert set(after) == set(before)
    original = after["orders"]
    assert original["DbClusterResourceId"] == before["orders"]["DbClusterResourceId"]
    assert original["Status"] == "available" and not original["StorageEncrypted"]
    assert sorted(m["DBInstanceIdentifier"] for m in original["DBClusterMembers"]) == ["orders-1", "orders-2"]
    neptune = member_session(session, ACCOUNT).client("neptune", region_name=REGION)
    leftovers = [i["DBInstanceIdentifier"] for i in neptune.describe_db_instances()["DBInstances"]
                 if i["DBInstanceIdentifier"].endswith(("-cmk", "-pre-cmk"))]
    assert leftovers == []
    manual = neptune.describe_db_cluster_snapshots(SnapshotType="manual")["DBClusterSnapshots"]
    assert not [s for s in manual if s["DBClusterSnapshotIdentifier"].startswith("orders-pre-cmk")]


def test_success_resolves_the_finding_with_a_note_naming_execution_and_approvers(deployed, on_call):
    from neptune_guard import asff
    from neptune_guard.scanner import ScanOptions, scan

    session, sfn, arns = deployed
    alice, bob = on_call
    scan(ScanOptions(accounts=ACCOUNT, regions=(REGION,), publish=True))
    securityhub = member_session(session, ACCOUNT).client("securityhub", region_name=REGION)
    orders_arn = clusters(session)["orders"]["DBClusterArn"]
    finding = {"id": asff.finding_id(orders_arn, "neptune_cluster_uses_cmk"),
               "product_arn": asff.product_arn("aws", REGION, ACCOUNT)}
    execution = workflow.start(sfn, arns["cluster"], request(finding=finding, requested_by=TRIGGER))  # as the trigger starts it
    awaiting(sfn, execution)
    approver = bob.approve(execution)["approver"]
    awaiting(sfn, execution, "cutover")
    bob.approve(execution)
    assert finish(sfn, execution)["status"] == "SUCCEEDED"

    stored = securityhub.get_findings(Filters={"Id": [{"Value": finding["id"], "Comparison": "EQUALS"}]})["Findings"][0]
    assert stored["Workflow"]["Status"] == "RESOLVED"
    assert execution in stored["Note"]["Text"] and approver in stored["Note"]["Text"]


def test_a_failure_after_cutover_is_reported_not_rolled_back(deployed, on_call, monkeypatch):
    session, sfn, arns = deployed
    alice, bob = on_call
    _fail(monkeypatch, "stop_db_cluster")
    execution = alice.start(arns["cluster"], request())
    awaiting(sfn, execution)
    bob.approve(execution)
    awaiting(sfn, execution, "cutover")
    bob.approve(execution)
    result = finish(sfn, execution)
    assert result["status"] == "SUCCEEDED"
    assert "injected fault" in json.loads(result["output"])["bookkeeping_error"]["Cause"]
    after = clusters(session)
    assert after["orders"]["StorageEncrypted"] and after["orders-pre-cmk"]["Status"] == "available"


def test_on_call_is_told_the_plan_the_risk_and_how_to_answer(deployed):
    session, sfn, arns = deployed
    sqs = session.client("sqs", region_name=REGION)
    queue = sqs.create_queue(QueueName="on-call")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    session.client("sns", region_name=REGION).subscribe(TopicArn=arns["topic"], Protocol="sqs", Endpoint=queue_arn,
                                                         Attributes={"RawMessageDelivery": "true"})
    execution = workflow.start(sfn, arns["cluster"], request())
    awaiting(sfn, execution)

    message = json.loads(sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"][0]["Body"])
    assert message["stage"] == "snapshot" and message["execution"] == execution
    assert "lost unless the application is stopped" in message["question"]
    assert message["approve"] == f"python -m neptune_guard approve {execution}"
    plan = message["plan"]
    assert plan["restore"]["DeletionProtection"] is True and plan["restore"]["EnableCloudwatchLogsExports"] == ["audit"]
    assert [i["id"] for i in plan["instances"]] == ["orders-1", "orders-2"]


def test_teardown_leaves_no_execution_running(deployed):
    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["cluster"], request())
    awaiting(sfn, execution)
    before = clusters(session)
    workflows.stop_running(sfn, [arns["cluster"]])
    assert sfn.describe_execution(executionArn=execution)["status"] != "RUNNING"
    assert set(clusters(session)) == set(before)
