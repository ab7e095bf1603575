"""The cluster remediation state machine: the real ASL in moto's interpreter, steps run in-process.

Every test drives a real execution and looks at the local AWS afterwards, as a database owner would."""

import json

import pytest

from neptune_guard.approve import approvals, workflow
from neptune_guard.remediate import naming
from sandbox.demo import workflows
from tests.conftest import awaiting, decide, final_state, finish, member_session

ACCOUNT, REGION = "111111111111", "us-east-1"
LONG_ID = "g" + "x" * 62
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
                        "log_exports": ["audit"], "tags": {"team": "orders"}, "storage_type": "iopt1",
                        "instance_tags": {"orders-1": {"role": "writer"}},
                        "custom_endpoints": {"orders-analytics": {"type": "READER", "members": ["orders-2"]}},
                    },
                    "busy": {"encryption": "aws-managed", "instances": {"busy-1": "db.r6g.large"}, "writes_during_remediation": True},
                    "done": {"encryption": "neptune-cmk", "instances": {"done-1": "db.r6g.large"}},
                    "billing-cmk": {"encryption": "none", "instances": {"billing-cmk-1": "db.r6g.large"}},
                    "ledger-pre-cmk": {"encryption": "none", "instances": {}},
                    "member-of-global": {"encryption": "aws-managed", "instances": {}, "global_cluster": "worldwide"},
                    LONG_ID: {"encryption": "none", "instances": {LONG_ID[:60] + "-01": "db.r6g.large"}},
                },
            }
        }
    }
}
FAST = {"approval_timeout_seconds": 600, "soak_seconds": 0, "metrics_settle_seconds": 0}


@pytest.fixture
def deployed(deploy_workflows):
    return deploy_workflows(SCENARIO)


TRIGGER = "arn:aws:sts::123456789012:assumed-role/NeptuneGuardTrigger/neptune-guard-trigger"


def request(**overrides):
    return {"account_id": ACCOUNT, "region": REGION, "cluster_id": "orders", "target_key": "alias/neptune-cmk", **FAST, **overrides}


def neptune(session):
    return member_session(session, ACCOUNT).client("neptune", region_name=REGION)


def clusters(session):
    return {c["DBClusterIdentifier"]: c for c in neptune(session).describe_db_clusters()["DBClusters"]}


def tags(session, arn):
    return {t["Key"]: t["Value"] for t in neptune(session).list_tags_for_resource(ResourceName=arn)["TagList"]}


def run_to_end(sfn, execution_arn, stages=("snapshot", "cutover", "decommission"), **cutover_decision):
    for stage in stages:
        decide(sfn, execution_arn, stage, **(cutover_decision if stage == "cutover" else {}))
    return finish(sfn, execution_arn)


def custom_endpoint(session, identifier="orders-analytics"):
    return neptune(session).describe_db_cluster_endpoints(DBClusterEndpointIdentifier=identifier)["DBClusterEndpoints"][0]


def manual_snapshots(session):
    return {s["DBClusterSnapshotIdentifier"]: s for s in neptune(session).describe_db_cluster_snapshots()["DBClusterSnapshots"]}


def test_the_whole_lifecycle_keeps_every_setting_and_ends_with_nothing_left_unencrypted(deployed):
    session, sfn, arns = deployed
    before = clusters(session)
    endpoint_before = custom_endpoint(session)
    execution = workflow.start(sfn, arns["cluster"], request())
    awaiting(sfn, execution)
    assert [c for c in clusters(session) if c not in before] == []  # nothing happens before the first approval
    result = run_to_end(sfn, execution)

    assert (result["status"], result.get("cause")) == ("SUCCEEDED", None)
    after = clusters(session)
    key_arn = member_session(session, ACCOUNT).client("kms", region_name=REGION).describe_key(KeyId="alias/neptune-cmk")["KeyMetadata"]["Arn"]
    serving = after["orders"]
    assert serving["StorageEncrypted"] and serving["KmsKeyId"] == key_arn
    assert serving["DbClusterResourceId"] != before["orders"]["DbClusterResourceId"]
    for setting in ("DeletionProtection", "IAMDatabaseAuthenticationEnabled", "Port", "BackupRetentionPeriod",
                    "EnabledCloudwatchLogsExports", "StorageType", "PreferredBackupWindow", "PreferredMaintenanceWindow"):
        assert serving[setting] == before["orders"][setting], setting
    assert sorted(m["DBInstanceIdentifier"] for m in serving["DBClusterMembers"]) == ["orders-1", "orders-2"]
    endpoint = custom_endpoint(session)  # recreated on the serving cluster: same name, type and members
    assert (endpoint["DBClusterIdentifier"], endpoint["Endpoint"], endpoint["CustomEndpointType"], endpoint["StaticMembers"]) == (
        "orders", endpoint_before["Endpoint"], "READER", ["orders-2"])
    writer = neptune(session).describe_db_instances(DBInstanceIdentifier="orders-1")["DBInstances"][0]
    assert tags(session, writer["DBInstanceArn"])["role"] == "writer"
    serving_tags = tags(session, serving["DBClusterArn"])
    assert serving_tags["team"] == "orders" and serving_tags["neptune-guard:remediated-by"] == execution
    assert "neptune-guard:created-by" not in serving_tags  # production now: our role may no longer delete it
    # decommissioned: the original, its automated backups and the workflow's snapshot are gone; the archive is under the CMK
    assert set(after) == set(before)
    output = final_state(sfn, execution)
    snapshots = manual_snapshots(session)
    archive = snapshots[output["archive"]["archive"]]
    assert archive["StorageEncrypted"] and archive["KmsKeyId"] == key_arn
    assert [s for s, d in snapshots.items() if not d["StorageEncrypted"] and "orders" in s] == []
    for untouched in ("billing-cmk", "ledger-pre-cmk", "done"):  # customer clusters, whatever their names
        assert after[untouched]["DbClusterResourceId"] == before[untouched]["DbClusterResourceId"]
        assert after[untouched]["Status"] == "available"
    assert output["write_check"]["writes_detected"] is False and output["final_write_check"]["writes_detected"] is False


def test_writes_after_the_snapshot_stop_the_cutover_and_nothing_is_lost(deployed):
    session, sfn, arns = deployed
    before = clusters(session)["busy"]
    execution = workflow.start(sfn, arns["cluster"], request(cluster_id="busy"))
    decide(sfn, execution, "snapshot")
    pending = awaiting(sfn, execution, "cutover") and approvals.pending_approval(sfn, execution)
    history = sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
    asked = [json.loads(e["taskScheduledEventDetails"]["parameters"])["Payload"]["state"] for e in history if e["type"] == "TaskScheduled"][-1]
    assert asked["write_check"]["writes_detected"] is True and asked["write_check"]["metrics"]["NumIndexInsertsPerSec"] > 0
    assert pending["stage"] == "cutover"
    decide(sfn, execution, "cutover")  # a plain approval cannot override detected writes
    result = finish(sfn, execution)

    assert (result["status"], result["error"]) == ("FAILED", "WritesDetected")
    after = clusters(session)
    assert after["busy"]["DbClusterResourceId"] == before["DbClusterResourceId"] and after["busy"]["Status"] == "available"
    assert [c for c in after if c.startswith("busy-")] == []
    assert [s for s in manual_snapshots(session) if s.startswith("busy-")] == []
    assert "neptune-guard:cutover" not in tags(session, after["busy"]["DBClusterArn"])


def test_accepting_write_loss_is_explicit_and_recorded(deployed):
    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["cluster"], request(cluster_id="busy"))
    result = run_to_end(sfn, execution, accept_write_loss=True)

    assert result["status"] == "SUCCEEDED", result.get("cause")
    output = final_state(sfn, execution)
    assert output["approvals"]["cutover"]["accept_write_loss"] is True
    assert output["final_write_check"]["writes_detected"] is True
    assert clusters(session)["busy"]["KmsKeyId"].endswith(output["plan"]["target_key_arn"].split("/")[-1])


def test_a_resource_already_bearing_the_workflows_name_is_never_adopted(deployed):
    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["cluster"], request())
    plan = awaiting(sfn, execution) and approvals.pending_approval(sfn, execution)["plan"]
    # someone else's snapshot under exactly the name this execution derived (an earlier run's, or planted)
    neptune(session).create_db_cluster_snapshot(DBClusterSnapshotIdentifier=plan["snapshot_id"], DBClusterIdentifier="billing-cmk")
    decide(sfn, execution, "snapshot")
    result = finish(sfn, execution)

    assert (result["status"], result["error"]) == ("FAILED", "RolledBack")
    assert plan["snapshot_id"] in manual_snapshots(session)  # not ours: left untouched, not deleted
    assert "was not created for execution" in final_state(sfn, execution)["error"]["Cause"]
    assert plan["new_cluster_id"] not in clusters(session)


def test_a_fault_after_the_new_cluster_served_keeps_it_and_puts_the_original_back(deployed, monkeypatch, fail):
    session, sfn, arns = deployed
    before = clusters(session)["orders"]
    fail("modify_db_instance", lambda identifier, changes: changes.get("new_db_instance_identifier") == "orders-2", times=1)
    execution = workflow.start(sfn, arns["cluster"], request())
    decide(sfn, execution, "snapshot")
    decide(sfn, execution, "cutover")
    result = finish(sfn, execution)

    assert (result["status"], result["error"]) == ("FAILED", "RolledBack")
    output = final_state(sfn, execution)
    after = clusters(session)
    assert after["orders"]["DbClusterResourceId"] == before["DbClusterResourceId"] and after["orders"]["Status"] == "available"
    served = after[output["plan"]["new_cluster_id"]]  # it held the production name: kept, stopped, never deleted
    assert served["Status"] == "stopped" and "neptune-guard:served-production" in tags(session, served["DBClusterArn"])
    # ... and the customer's: the remediation role may no longer stop, change or delete it
    assert "neptune-guard:created-by" not in tags(session, served["DBClusterArn"])
    assert tags(session, served["DBClusterArn"])["neptune-guard:remediated-by"] == execution
    assert any("served production" in kept for kept in output["rollback"]["kept"])
    stranded = output["rollback"]["served_writes"]  # never called lost or nothing: where they are, since when
    assert stranded["stranded_in"] == output["plan"]["new_cluster_id"] and "bring them back by hand" in stranded["note"]
    instances = {i["DBInstanceIdentifier"]: i["DBClusterIdentifier"] for i in neptune(session).describe_db_instances()["DBInstances"]}
    assert instances["orders-1"] == instances["orders-2"] == "orders"
    assert custom_endpoint(session)["DBClusterIdentifier"] == "orders"


def test_a_fault_renaming_an_instance_aside_converges_back(deployed, fail):
    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["cluster"], request())
    plan = awaiting(sfn, execution) and approvals.pending_approval(sfn, execution)["plan"]
    retired_second = next(i["retired_id"] for i in plan["instances"] if i["id"] == "orders-2")
    fail("modify_db_instance", lambda identifier, changes: changes.get("new_db_instance_identifier") == retired_second, times=1)
    decide(sfn, execution, "snapshot")
    decide(sfn, execution, "cutover")
    result = finish(sfn, execution)

    assert (result["status"], result["error"]) == ("FAILED", "RolledBack")
    after = clusters(session)
    assert sorted(m["DBInstanceIdentifier"] for m in after["orders"]["DBClusterMembers"]) == ["orders-1", "orders-2"]
    assert plan["retired_cluster_id"] not in after and plan["new_cluster_id"] not in after


def test_one_remediation_per_cluster_whatever_the_key_or_spelling(deployed):
    session, sfn, arns = deployed
    first = workflow.start(sfn, arns["cluster"], request())
    key_arn = member_session(session, ACCOUNT).client("kms", region_name=REGION).describe_key(KeyId="alias/neptune-cmk")["KeyMetadata"]["Arn"]
    assert workflow.start(sfn, arns["cluster"], request(target_key=key_arn)) == first
    assert workflow.start(sfn, arns["cluster"], request(cluster_id="ORDERS")) == first
    decide(sfn, first, "snapshot")
    awaiting(sfn, first, "cutover")
    # a second execution started around the guard (another name) is refused by the plan: the original is marked
    other = sfn.start_execution(stateMachineArn=arns["cluster"], name="around-the-guard", input=json.dumps(request()))["executionArn"]
    result = finish(sfn, other)
    assert (result["status"], result["error"]) == ("FAILED", "Refused")
    assert "one remediation per cluster" in final_state(sfn, other)["error"]["Cause"]


@pytest.mark.parametrize("length", range(53, 64))
def test_names_keep_the_execution_suffix_at_every_length(length):
    cluster_id = ("c" + "-a" * 40)[:length].rstrip("-") + "z" * (length - len(("c" + "-a" * 40)[:length].rstrip("-")))
    assert len(cluster_id) == length and naming.is_identifier(cluster_id)
    token = naming.execution_token("arn:aws:states:us-east-1:123456789012:execution:NeptuneGuardClusterRemediation:x")
    for role in ("cmk", "retired", "pre-cmk", "archive"):
        name = naming.derived(cluster_id, role, token)
        assert naming.is_identifier(name) and name.endswith(f"-{role}-ng{token}") and len(name) <= 63


def test_two_instances_that_would_share_a_derived_name_are_refused_at_plan_time():
    """The suffix is kept whole, so identifiers alike for as far as a name has room collide: the second instance would
    be taken for the first's, hours in. The plan says so first."""
    from neptune_guard.remediate.plan import cluster_names
    from neptune_guard.remediate.resources import InvalidRequest

    execution = "arn:aws:states:us-east-1:123456789012:execution:NeptuneGuardClusterRemediation:x"
    alike = ["orders-graph-production-eu-central-1-replica-instance-1", "orders-graph-production-eu-central-1-replica-instance-2"]
    with pytest.raises(InvalidRequest, match="would both be named .*: rename one"):
        cluster_names("orders", alike, execution)
    names = cluster_names("orders", ["orders-1", "orders-2"], execution)["instances"]
    assert len({n["new_id"] for n in names.values()} | {n["retired_id"] for n in names.values()}) == 4


def test_a_63_character_cluster_is_remediated(deployed):
    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["cluster"], request(cluster_id=LONG_ID))
    result = run_to_end(sfn, execution)
    assert result["status"] == "SUCCEEDED", result.get("cause")
    assert clusters(session)[LONG_ID]["StorageEncrypted"]


def test_a_global_database_member_is_refused_before_anything_changes(deployed):
    session, sfn, arns = deployed
    result = finish(sfn, workflow.start(sfn, arns["cluster"], request(cluster_id="member-of-global")))
    assert (result["status"], result["error"]) == ("FAILED", "Refused")
    assert "is a member of global database" in final_state(sfn, result["executionArn"])["error"]["Cause"]


def test_the_retained_original_is_stopped_again_when_neptune_restarts_it(deployed, on_call):
    session, sfn, arns = deployed
    _, bob = on_call
    # The workflow looks at the retained original until the soak ends (15 s after retiring it; the local clock makes
    # each wait between looks a twentieth of a second, a look itself most of one): long enough that the restart below
    # lands before the last look even on a loaded machine. With 4 s, CI's last look came first and the restart was
    # never seen.
    execution = workflow.start(sfn, arns["cluster"], request(soak_seconds=15))
    decide(sfn, execution, "snapshot")
    plan = decide(sfn, execution, "cutover")["plan"]
    workflows.wait_for(sfn, execution, lambda d, h: any(e.get("stateEnteredEventDetails", {}).get("name") == "WaitWhileRetained" for e in h))
    retired = clusters(session)[plan["retired_cluster_id"]]
    assert retired["Status"] == "stopped"
    assert tags(session, retired["DBClusterArn"])["neptune-guard:retired-by"] == execution
    neptune(session).start_db_cluster(DBClusterIdentifier=plan["retired_cluster_id"])  # Neptune's 7-day restart
    awaiting(sfn, execution, "decommission")
    assert clusters(session)[plan["retired_cluster_id"]]["Status"] == "stopped"
    bob.reject(execution, "keep it a while longer")
    result = finish(sfn, execution)
    events = [e for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution) for e in page["events"]]
    checks = [json.loads(e["lambdaFunctionSucceededEventDetails"]["output"]) for e in events if e["type"] == "LambdaFunctionSucceeded"
              and '"restopped"' in e["lambdaFunctionSucceededEventDetails"]["output"]]
    assert result["status"] == "SUCCEEDED" and any(check["restopped"] is True for check in checks), checks
    assert clusters(session)[plan["retired_cluster_id"]]["Status"] == "stopped"  # rejected decommission keeps it


def test_a_retained_original_is_never_itself_remediated(deployed):
    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["cluster"], request())
    decide(sfn, execution, "snapshot")
    plan = decide(sfn, execution, "cutover")["plan"]
    awaiting(sfn, execution, "decommission")
    again = finish(sfn, workflow.start(sfn, arns["cluster"], request(cluster_id=plan["retired_cluster_id"])))
    assert (again["status"], again["error"]) == ("FAILED", "Refused")
    assert "decommissioned by that execution" in final_state(sfn, again["executionArn"])["error"]["Cause"]


    # until it is decommissioned, the scan shows it apart from new failures, and Security Hub says why
    from neptune_guard.findings import asff, report
    from neptune_guard.scanner import ScanOptions, scan

    result = scan(ScanOptions(accounts=ACCOUNT, regions=(REGION,), publish=True))
    kept = [e for e in result.evaluations if e.resource_id == plan["retired_cluster_id"] and e.status.value == "FAILED"]
    assert kept and all("decommission pending" in e.retained and execution in e.retained for e in kept)
    assert all(e.retained is None for e in result.evaluations if e.resource_id == "billing-cmk")
    table = report.table(result)
    assert "Kept on purpose by a remediation" in table and table.index(plan["retired_cluster_id"]) > table.index("Kept on purpose")
    securityhub = member_session(session, ACCOUNT).client("securityhub", region_name=REGION)
    finding_id = asff.finding_id(kept[0].resource_arn, kept[0].check_id)
    stored = securityhub.get_findings(Filters={"Id": [{"Value": finding_id, "Comparison": "EQUALS"}]})["Findings"][0]
    assert stored["Description"].startswith("Kept on purpose:") and "decommission pending" in stored["Description"]


def test_rejection_at_cutover_removes_what_the_execution_made_and_leaves_the_original(deployed, on_call):
    session, sfn, arns = deployed
    _, bob = on_call
    before = clusters(session)
    execution = workflow.start(sfn, arns["cluster"], request())
    decide(sfn, execution, "snapshot")
    awaiting(sfn, execution, "cutover")
    bob.reject(execution, "endpoint check failed")
    result = finish(sfn, execution)

    assert (result["status"], result["error"]) == ("FAILED", "NotApproved")
    after = clusters(session)
    assert set(after) == set(before)
    assert after["orders"]["DbClusterResourceId"] == before["orders"]["DbClusterResourceId"]
    assert not tags(session, after["orders"]["DBClusterArn"]).get("neptune-guard:cutover")
    assert [s for s in manual_snapshots(session) if s.startswith("orders-")] == []


def test_a_decision_that_is_not_an_approval_does_not_pass_the_gate(deployed):
    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["cluster"], request())
    decide(sfn, execution, "snapshot", approved=False)
    result = finish(sfn, execution)
    assert (result["status"], result["error"]) == ("FAILED", "NotApproved")
    assert [c for c in clusters(session) if c.startswith("orders-")] == []


@pytest.mark.parametrize(
    "overrides, complaint",
    [
        ({"target_key": "alias/aws/rds"}, "AWS-managed"),
        ({"target_key": "arn:aws:kms:us-east-1:111111111111:key"}, "KMS key ARN or an alias"),
        ({"target_key": "arn:aws:kms:eu-west-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab"}, "is in eu-west-1"),
        ({"target_key": "alias/off"}, "Disabled"),
        ({"cluster_id": "done"}, "already encrypted"),
        ({"cluster_id": "no-such-cluster"}, "no Neptune cluster"),
        ({"account_id": "1234"}, "12 digits"),
        ({"surprise": True}, "unknown request fields"),
    ],
)
def test_bad_requests_are_refused_before_anything_changes(deployed, overrides, complaint):
    session, sfn, arns = deployed
    before = clusters(session)
    result = finish(sfn, workflow.start(sfn, arns["cluster"], request(**overrides)))
    assert (result["status"], result["error"]) == ("FAILED", "Refused")
    assert complaint in final_state(sfn, result["executionArn"])["error"]["Cause"]
    assert set(clusters(session)) == set(before)


def test_the_steps_function_acts_only_for_a_running_execution_past_its_approval(deployed):
    """Invoked directly with a crafted event, the steps function changes nothing."""
    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["cluster"], request())
    pending = awaiting(sfn, execution) and approvals.pending_approval(sfn, execution)
    lambda_ = session.client("lambda", region_name=REGION)
    state = {"request": request(), "plan": pending["plan"]}

    def invoke(event):
        response = lambda_.invoke(FunctionName=arns["steps_function"], Payload=json.dumps(event))
        return json.loads(response["Payload"].read())

    before = clusters(session)
    too_early = invoke({"step": "move_original_aside", "execution": execution, "state": state})
    assert too_early["errorType"] == "NotAuthorizedStep" and "'cutover' approval" in too_early["errorMessage"]
    forged_plan = invoke({"step": "mark_original", "execution": execution,
                          "state": {**state, "plan": {**pending["plan"], "cluster_id": "billing-cmk"}}})
    assert forged_plan["errorType"] == "NotAuthorizedStep"
    other_request = invoke({"step": "plan", "execution": execution, "state": {"request": request(cluster_id="billing-cmk")}})
    assert other_request["errorType"] == "NotAuthorizedStep"
    not_ours = invoke({"step": "roll_back", "state": state,
                       "execution": "arn:aws:states:us-east-1:123456789012:execution:SomeoneElses:x"})
    assert not_ours["errorType"] == "NotAuthorizedStep"
    # Past every other check (its request, its plan, a step that needs no approval): a state the execution never had
    forged_state = invoke({"step": "roll_back", "execution": execution, "state": {**state, "replicated_back": {"proven": True}}})
    assert forged_state["errorType"] == "NotAuthorizedStep" and "not the input of a task" in forged_state["errorMessage"]
    planned = [json.loads(e["lambdaFunctionScheduledEventDetails"]["input"]) for e in sfn.get_execution_history(executionArn=execution,
               maxResults=1000)["events"] if e["type"] == "LambdaFunctionScheduled"][0]
    replayed = invoke(planned)  # the execution's own plan task, genuine but ended
    assert planned["step"] == "plan" and replayed["errorType"] == "NotAuthorizedStep" and "has ended" in replayed["errorMessage"]
    unscheduled = invoke({"step": "roll_back", "execution": execution, "state": state})  # genuine, but never asked for
    assert unscheduled["errorType"] == "NotAuthorizedStep"
    malformed = invoke({"step": "delete_retired", "execution": "x", "state": {}})
    assert malformed["errorType"] == "InvalidStepEvent"
    assert clusters(session).keys() == before.keys()
    assert all(not tags(session, c["DBClusterArn"]).get("neptune-guard:cutover") for c in clusters(session).values())


def on_call_queue(session, arns):
    """(SQS client, queue URL) of a queue that receives what on-call is sent, as AWS Chatbot would."""
    sqs = session.client("sqs", region_name=REGION)
    queue = sqs.create_queue(QueueName="on-call")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    session.client("sns", region_name=REGION).subscribe(TopicArn=arns["topic"], Protocol="sqs", Endpoint=queue_arn,
                                                         Attributes={"RawMessageDelivery": "true"})
    return sqs, queue


def test_on_call_is_told_the_plan_the_write_check_and_how_to_answer(deployed):
    session, sfn, arns = deployed
    sqs, queue = on_call_queue(session, arns)
    execution = workflow.start(sfn, arns["cluster"], request())
    decide(sfn, execution, "snapshot")
    awaiting(sfn, execution, "cutover")

    messages = []  # the cutover question is published while the execution already waits for its answer: read until both came
    for _ in range(20):
        messages += sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1, MaxNumberOfMessages=10,
                                        MessageAttributeNames=["All"]).get("Messages", [])
        if len(messages) >= 2:
            break
    # What chat (AWS Chatbot) and machines get: the custom-notification JSON, and the full detail as an attribute.
    chat = [json.loads(m["Body"]) for m in messages]
    assert all((c["version"], c["source"]) == ("1.0", "custom") and set(c["content"]) >= {"textType", "title", "description", "nextSteps"}
               for c in chat)
    assert "orders" in chat[0]["content"]["title"] and "snapshot" in chat[0]["content"]["title"]
    first, cutover = (json.loads(m["MessageAttributes"]["neptune_guard_detail"]["StringValue"]) for m in (messages[0], messages[-1]))
    assert first["stage"] == "snapshot" and "STOP ALL WRITES" in first["question"]
    assert first["approve"] == f"neptune-guard approve {execution} --stage snapshot"
    assert cutover["stage"] == "cutover" and cutover["write_activity"]["writes_detected"] is False
    iam = cutover["iam_authentication"]
    assert iam["old_resource_id"] == clusters(session)["orders"]["DbClusterResourceId"]
    assert iam["new_resource_id"] and iam["new_resource_id"] != iam["old_resource_id"]
    # The resource id is `cluster-...` already: the data-access ARN and the search name it once.
    assert iam["old_resource_id"].startswith("cluster-") and "cluster-cluster-" not in json.dumps(iam)
    assert f"grep -n '{iam['old_resource_id']}'" in iam["find_policies"]
    assert iam["policy_resource"].endswith(f":{iam['old_resource_id']}/*") and iam["new_resource_id"] in iam["update"]


def test_a_decommission_left_unanswered_keeps_everything_and_gives_the_original_back(deployed):
    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["cluster"], request(approval_timeout_seconds=8))
    decide(sfn, execution, "snapshot")
    plan = decide(sfn, execution, "cutover")["plan"]
    result = finish(sfn, execution)  # nobody answers the decommission question

    assert result["status"] == "SUCCEEDED"
    assert final_state(sfn, execution)["error"]["Error"] == "States.Timeout"
    retired = clusters(session)[plan["retired_cluster_id"]]
    # Kept, stopped, and the customer's again: no tag of an execution that has ended (the scan counts it as a failure).
    assert retired["Status"] == "stopped" and not [k for k in tags(session, retired["DBClusterArn"]) if k.startswith("neptune-guard:")]
    assert plan["snapshot_id"] in manual_snapshots(session)


def test_writes_still_flowing_before_the_snapshot_change_nothing(deployed):
    from sandbox.aws import write_activity

    session, sfn, arns = deployed
    before = clusters(session)
    execution = workflow.start(sfn, arns["cluster"], request())
    awaiting(sfn, execution)
    write_activity.record_write(ACCOUNT, REGION, "orders")  # the application has not stopped writing yet
    decide(sfn, execution, "snapshot")
    result = finish(sfn, execution)

    assert (result["status"], result["error"]) == ("FAILED", "WritesDetected")
    assert "nothing changed" in result["cause"]
    assert clusters(session).keys() == before.keys() and [s for s in manual_snapshots(session) if s.startswith("orders-")] == []
    assert "neptune-guard:cutover" not in tags(session, clusters(session)["orders"]["DBClusterArn"])


# Every RDS call that changes something after the cutover: retire, keep stopped, archive, decommission.
AFTER_THE_CUTOVER = ("add_tags_to_resource", "remove_tags_from_resource", "stop_db_cluster", "start_db_cluster", "modify_db_cluster",
                     "create_db_cluster_snapshot", "copy_db_cluster_snapshot", "restore_db_cluster_from_snapshot",
                     "create_db_instance", "delete_db_instance", "delete_db_cluster", "delete_db_cluster_snapshot")


def test_a_fault_at_every_aws_call_after_the_cutover_is_retried_to_a_compliant_end(deployed, monkeypatch):
    """Each call above fails once (InternalFailure, as AWS may) the first time the workflow makes it after the new
    cluster took the name: the retries carry the lifecycle on to the same end as without faults."""
    import threading

    from moto.rds import exceptions as rds_exceptions
    from moto.rds import models as rds_models

    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["cluster"], request())
    new = naming.derived("orders", "cmk", naming.execution_token(execution))
    served, failed = threading.Event(), []

    def failing_once(method: str, original):
        def call(self, *args, **kwargs):
            # The workflow's calls only: the test's own (as on-call, writing approval marks) run on the main thread.
            if served.is_set() and method not in failed and threading.current_thread() is not threading.main_thread():
                failed.append(method)
                raise rds_exceptions.RDSClientError("InternalFailure", f"injected fault in {method}")
            swap = method == "modify_db_cluster" and ((args[0].get("db_cluster_identifier") or "").lower(),
                                                       (args[0].get("new_db_cluster_identifier") or "").lower()) == (new, "orders")
            result = original(self, *args, **kwargs)  # (modify_db_cluster takes the identifiers out of its arguments)
            if swap:
                served.set()
            return result
        return call

    for method in AFTER_THE_CUTOVER:
        monkeypatch.setattr(rds_models.RDSBackend, method, failing_once(method, getattr(rds_models.RDSBackend, method)))
    result = run_to_end(sfn, execution)

    assert (result["status"], result.get("cause")) == ("SUCCEEDED", None), final_state(sfn, execution).get("decommission_error")
    assert set(failed) >= {"add_tags_to_resource", "stop_db_cluster", "modify_db_cluster", "delete_db_cluster", "delete_db_instance"}, failed
    after = clusters(session)
    assert after["orders"]["StorageEncrypted"] and not [c for c in after if "retired" in c]
    output = final_state(sfn, execution)
    assert manual_snapshots(session)[output["archive"]["archive"]]["StorageEncrypted"]


def test_custom_endpoints_that_cannot_be_moved_leave_the_cutover_standing_and_on_call_told_how_to_finish(deployed, monkeypatch):
    """Past the name swap a rollback would have to delete the endpoints it recreated, which the remediation role may
    not (only the approval endpoint's mark lets it delete one): a move that still fails after its retries is reported
    with the commands that finish it, and the lifecycle goes on with the new cluster serving."""
    import threading

    from moto.rds import responses as rds_responses
    from moto.rds.exceptions import RDSClientError

    session, sfn, arns = deployed
    sqs, queue = on_call_queue(session, arns)
    recreate = rds_responses.RDSResponse.create_db_cluster_endpoint

    def over_quota(self):
        if threading.current_thread() is not threading.main_thread():
            raise RDSClientError("DBClusterEndpointQuotaExceededFault", "Cluster endpoint quota exceeded")
        return recreate(self)

    monkeypatch.setattr(rds_responses.RDSResponse, "create_db_cluster_endpoint", over_quota)
    original = clusters(session)["orders"]["DbClusterResourceId"]
    execution = workflow.start(sfn, arns["cluster"], request())
    decide(sfn, execution, "snapshot")
    decide(sfn, execution, "cutover")
    awaiting(sfn, execution, "decommission")

    serving = clusters(session)["orders"]
    assert serving["StorageEncrypted"] and serving["DbClusterResourceId"] != original
    assert neptune(session).describe_db_cluster_endpoints(DBClusterIdentifier="orders")["DBClusterEndpoints"] == []
    messages = []
    for _ in range(20):
        messages += sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1, MaxNumberOfMessages=10,
                                        MessageAttributeNames=["All"]).get("Messages", [])
        if any("decommission" in json.loads(m["Body"])["content"]["title"] for m in messages):
            break
    told = "\n".join(m["Body"] for m in messages)
    assert "CUSTOM ENDPOINTS NOT MOVED to orders" in told and "Cluster endpoint quota exceeded" in told
    assert ("aws neptune create-db-cluster-endpoint --db-cluster-identifier orders --db-cluster-endpoint-identifier "
            "orders-analytics --endpoint-type READER --static-members orders-2") in told
    monkeypatch.setattr(rds_responses.RDSResponse, "create_db_cluster_endpoint", recreate)
    neptune(session).create_db_cluster_endpoint(DBClusterIdentifier="orders", DBClusterEndpointIdentifier="orders-analytics",
                                                EndpointType="READER", StaticMembers=["orders-2"])  # a person, as told
    decide(sfn, execution, "decommission")
    assert finish(sfn, execution)["status"] == "SUCCEEDED"
    assert custom_endpoint(session)["DBClusterIdentifier"] == "orders"


def test_a_plan_given_the_state_machine_names_exactly_what_the_execution_will_create(deployed, capsys):
    """`plan --state-machine-arn` derives its names from the execution `remediate` would start next (the first
    attempt's, or the next after one has ended), so what on-call reads is what gets created."""
    from neptune_guard.cli import main

    _, sfn, arns = deployed
    argv = ["plan", "--account", ACCOUNT, "--region", REGION, "--cluster", "orders", "--target-key", "alias/neptune-cmk",
            "--role-name", "OrganizationAccountAccessRole", "--state-machine-arn", arns["cluster"], "--output", "json"]
    names = ("new_cluster_id", "retired_cluster_id", "snapshot_id", "archive_snapshot_id", "instances")
    for attempt in (1, 2):
        assert main(argv) == 0
        planned = json.loads(capsys.readouterr().out)
        execution = workflow.start(sfn, arns["cluster"], request())
        assert planned["execution"] == execution and execution.endswith("-2") == (attempt == 2)
        pending = approvals.pending_approval(sfn, awaiting(sfn, execution)["executionArn"])["plan"]
        assert {k: pending[k] for k in names} == {k: planned[k] for k in names}
        decide(sfn, execution, "snapshot", approved=False)
        assert finish(sfn, execution)["status"] != "RUNNING"


def test_a_task_is_running_from_its_scheduling_to_its_end_or_its_branch_s_end():
    """The guard's reading of a history (AWS's shapes: a Lambda ARN task, a lambda:invoke task waiting for its token, a
    Parallel state whose failure ends the task still running in its other branch, which records no end of its own)."""
    from neptune_guard.approve import approvals, executions
    from neptune_guard.remediate.guard import running_tasks

    def event(n, kind, previous, **details):
        return {"id": n, "type": kind, "previousEventId": previous, **details}

    def scheduled_lambda(n, previous, step):
        return event(n, "LambdaFunctionScheduled", previous, lambdaFunctionScheduledEventDetails={"input": json.dumps({"step": step})})

    def scheduled_task(n, previous, step, **payload):
        return event(n, "TaskScheduled", previous, taskScheduledEventDetails={"parameters": json.dumps({"Payload": {"step": step, **payload}})})

    history = [
        scheduled_lambda(1, 0, "plan"), event(2, "LambdaFunctionStarted", 1), event(3, "LambdaFunctionSucceeded", 2),
        scheduled_task(4, 3, "request_approval"), event(5, "TaskStarted", 4), event(6, "TaskSubmitted", 5),
        event(7, "TaskSucceeded", 6),
        event(8, "ParallelStateStarted", 7),
        scheduled_task(9, 8, "request_approval", stage="cutover", task_token="t", state={}), event(10, "TaskStarted", 9),
        scheduled_lambda(11, 8, "replicate"), event(12, "LambdaFunctionStarted", 11),
    ]
    running = running_tasks(history)
    assert sorted(p["step"] for _, p in running.values()) == ["replicate", "request_approval"]
    # A replication run beside the question ends (its state exits too): the question still waits, for the CLI and the endpoint
    history += [event(13, "LambdaFunctionSucceeded", 12), event(14, "TaskStateExited", 13, stateExitedEventDetails={"name": "KeepReplicating"})]
    assert [p["step"] for _, p in running_tasks(history).values()] == ["request_approval"]
    assert executions.waiting_approval(history)["stage"] == "cutover" and approvals.pending_in(history, "x")["stage"] == "cutover"
    history += [scheduled_lambda(15, 14, "replicate"), event(16, "LambdaFunctionStarted", 15)]
    history += [event(17, "TaskTimedOut", 10), event(18, "ParallelStateFailed", 17)]  # replicate is cut off, no end of its own
    assert running_tasks(history) == {} and executions.waiting_approval(history) is None
    history += [scheduled_lambda(19, 18, "roll_back"), event(20, "LambdaFunctionStarted", 19)]
    assert [p["step"] for _, p in running_tasks(history).values()] == ["roll_back"]


def test_the_commands_that_finish_a_failed_endpoint_move_work_as_given(monkeypatch):
    """Review: the endpoint is deleted asynchronously, so creating it again at once fails; a tag value with a comma broke
    the shorthand; and a fault reading the endpoints lost the whole question or notification."""
    import shlex

    from botocore.exceptions import ClientError

    from neptune_guard.remediate import endpoints, notify
    from neptune_guard.remediate.resources import Step

    endpoint = {"id": "orders-analytics", "type": "READER", "static_members": ["orders-2"], "excluded_members": [],
                "tags": [{"Key": "cost-centre", "Value": "a,b=c"}]}
    step = Step(request={}, execution="arn:aws:states:us-east-1:123456789012:execution:M:e",
                plan={"cluster_id": "orders", "custom_endpoints": [endpoint]},
                state={"custom_endpoints": {"Error": "States.TaskFailed", "Cause": "quota"}})
    monkeypatch.setattr(endpoints, "not_moved", lambda s: [(endpoint, {"DBClusterIdentifier": "orders-retired-ng12345678"})])
    (told,) = notify._endpoints_not_moved(step)
    delete, wait, create = told.split("runs: ", 1)[1].rstrip(".").split("; ")
    assert delete == "aws neptune delete-db-cluster-endpoint --db-cluster-endpoint-identifier orders-analytics"
    assert "until it answers DBClusterEndpointNotFoundFault" in wait
    argv = shlex.split(create)
    assert json.loads(argv[argv.index("--tags") + 1]) == [{"Key": "cost-centre", "Value": "a,b=c"}]

    def unreadable(s):
        raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "DescribeDBClusterEndpoints")

    monkeypatch.setattr(endpoints, "not_moved", unreadable)
    (told,) = notify._endpoints_not_moved(step)
    assert "MAY NOT HAVE MOVED" in told and "describe-db-cluster-endpoints --db-cluster-identifier orders" in told
