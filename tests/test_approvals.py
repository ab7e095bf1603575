"""The approval endpoint: a SigV4-signed function URL in front of the real state machines (moto's interpreter).

People reach it as the CLI does (sandbox.demo.on_call signs with their own assumed-role credentials); the
sandbox's function URL verifies the signature and hands the handler the identity it established."""

import json

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.httpsession import URLLib3Session

from neptune_guard.approve import approval_client, approvals
from sandbox.demo import workflows
from sandbox.demo.on_call import Engineer
from tests.conftest import awaiting, member_session

ACCOUNT, REGION = "111111111111", "us-east-1"
SCENARIO = {"accounts": {ACCOUNT: {REGION: {
    "keys": {"neptune-cmk": {"state": "Enabled"}},
    "clusters": {"orders": {"encryption": "none", "instances": {"orders-1": "db.r6g.large"}},
                 "busy": {"encryption": "none", "instances": {"busy-1": "db.r6g.large"}, "writes_during_remediation": True}},
}}}}
REQUEST = {"account_id": ACCOUNT, "region": REGION, "cluster_id": "orders", "target_key": "alias/neptune-cmk"}


@pytest.fixture
def team(deploy_workflows):
    """The deployed workflows and two on-call engineers: alice starts, bob approves."""
    session, sfn, arns = deploy_workflows(SCENARIO)
    return session, sfn, arns, Engineer(session, "alice", arns["approval_url"]), Engineer(session, "bob", arns["approval_url"])


def waiting_for(sfn, execution, stage):
    assert awaiting(sfn, execution, stage)["status"] == "RUNNING"


def snapshots(session):
    neptune = member_session(session, ACCOUNT).client("neptune", region_name=REGION)
    return [s["DBClusterSnapshotIdentifier"] for s in neptune.describe_db_cluster_snapshots(SnapshotType="manual")["DBClusterSnapshots"]]


def history(sfn, execution):
    return sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]


def refused(engineer, body):
    with pytest.raises(approval_client.EndpointRefused) as refusal:
        engineer.call(body)
    return refusal.value


def test_the_starter_is_recorded_and_a_second_person_approves_as_their_verified_identity(team):
    session, sfn, arns, alice, bob = team
    execution = alice.start(arns["cluster"], REQUEST)
    started = json.loads(sfn.describe_execution(executionArn=execution)["input"])
    assert started["requested_by"] == alice.arn == "arn:aws:sts::123456789012:assumed-role/NeptuneGuardOnCall/alice"
    waiting_for(sfn, execution, "snapshot")

    answer = bob.approve(execution, stage="snapshot")

    assert answer["approver"] == bob.arn and answer["requested_by"] == alice.arn
    waiting_for(sfn, execution, "cutover")
    recorded = next(json.loads(e["taskSucceededEventDetails"]["output"]) for e in history(sfn, execution)
                    if e["type"] == "TaskSucceeded" and "approver" in e["taskSucceededEventDetails"]["output"])
    assert recorded == {"approved": True, "stage": "snapshot", "approver": bob.arn, "at": answer["at"], "accept_write_loss": False}


def test_the_starter_cannot_approve_their_own_execution(team):
    session, sfn, arns, alice, bob = team
    execution = alice.start(arns["cluster"], REQUEST)
    waiting_for(sfn, execution, "snapshot")

    refusal = refused(alice, {"action": "approve", "execution_arn": execution})

    assert refusal.status == 403 and "started this execution and cannot approve it" in str(refusal)
    assert approvals.pending_approval(sfn, execution)["stage"] == "snapshot"  # still waiting, nothing sent
    assert snapshots(session) == []


def test_a_principal_not_on_the_allow_list_cannot_approve_or_start(team):
    session, sfn, arns, alice, _ = team
    iam = session.client("iam")
    iam.create_role(RoleName="Developer", AssumeRolePolicyDocument=json.dumps(iam.get_role(RoleName="NeptuneGuardOnCall")["Role"]["AssumeRolePolicyDocument"]))
    mallory = Engineer(session, "mallory", arns["approval_url"], role_name="Developer")
    execution = alice.start(arns["cluster"], REQUEST)
    waiting_for(sfn, execution, "snapshot")

    assert refused(mallory, {"action": "approve", "execution_arn": execution}).status == 403
    assert refused(mallory, {"action": "reject", "execution_arn": execution, "reason": "x"}).status == 403
    refusal = refused(mallory, {"action": "start", "state_machine_arn": arns["cluster"], "request": {**REQUEST, "cluster_id": "other"}})
    assert refusal.status == 403 and "not on the approver allow-list" in str(refusal)
    assert approvals.pending_approval(sfn, execution)["stage"] == "snapshot"
    assert len(sfn.list_executions(stateMachineArn=arns["cluster"])["executions"]) == 1


def test_a_client_supplied_approver_or_decision_is_refused_not_recorded(team):
    session, sfn, arns, alice, bob = team
    execution = alice.start(arns["cluster"], REQUEST)
    waiting_for(sfn, execution, "snapshot")

    for forged in ({"approver": "arn:aws:sts::123456789012:assumed-role/NeptuneGuardOnCall/carol"}, {"approved": False},
                   {"requested_by": bob.arn}, {"accept_write_loss": "yes"}):
        refusal = refused(bob, {"action": "approve", "execution_arn": execution, **forged})
        assert refusal.status == 400 and "bad request body" in str(refusal)
    refusal = refused(alice, {"action": "start", "state_machine_arn": arns["cluster"], "request": {**REQUEST, "requested_by": bob.arn}})
    assert refusal.status == 400
    assert approvals.pending_approval(sfn, execution)["stage"] == "snapshot"
    assert snapshots(session) == []


def test_an_execution_of_another_state_machine_is_refused(team):
    session, sfn, arns, alice, bob = team
    other = sfn.create_state_machine(name="SomeoneElsesWorkflow", roleArn=arns["role"], definition=json.dumps(
        {"StartAt": "Wait", "States": {"Wait": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                                                 "Parameters": {"FunctionName": arns["steps_function"], "Payload": {
                                                     "step": "request_approval", "stage": "snapshot", "task_token.$": "$$.Task.Token",
                                                     "state": {}}}, "End": True}}}))["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=other, input=json.dumps({"requested_by": alice.arn}))["executionArn"]

    refusal = refused(bob, {"action": "approve", "execution_arn": execution})
    assert refusal.status == 403 and "not one of Neptune Guard's state machines" in str(refusal)
    foreign_account = arns["cluster"].replace(":123456789012:", ":999999999999:").replace(":stateMachine:", ":execution:") + ":x"
    assert refused(bob, {"action": "approve", "execution_arn": foreign_account}).status == 403
    assert refused(alice, {"action": "start", "state_machine_arn": other, "request": REQUEST}).status == 403
    sfn.stop_execution(executionArn=execution)


def test_reject_records_the_reason_and_who_rejected(team):
    session, sfn, arns, alice, bob = team
    execution = alice.start(arns["cluster"], REQUEST)
    waiting_for(sfn, execution, "snapshot")

    answer = bob.reject(execution, "not during the sale")

    result = workflows.wait_for(sfn, execution, lambda d, h: False)
    assert (result["status"], result["error"]) == ("FAILED", "NotApproved")
    assert answer["reason"] == "not during the sale" and answer["approver"] == bob.arn
    failed = next(e["taskFailedEventDetails"] for e in history(sfn, execution) if e["type"] == "TaskFailed")
    assert failed["error"] == "Rejected"
    assert bob.arn in failed["cause"] and "not during the sale" in failed["cause"]
    assert bob.arn in result["cause"] and snapshots(session) == []


def test_a_stage_that_is_not_the_one_waiting_is_refused(team):
    session, sfn, arns, alice, bob = team
    execution = alice.start(arns["cluster"], REQUEST)
    waiting_for(sfn, execution, "snapshot")

    refusal = refused(bob, {"action": "approve", "execution_arn": execution, "stage": "cutover"})

    assert refusal.status == 409 and "waits for the snapshot approval, not cutover" in str(refusal)
    assert snapshots(session) == []


def test_writes_detected_need_accept_write_loss_and_an_approval_may_say_why(team):
    session, sfn, arns, alice, bob = team
    execution = alice.start(arns["cluster"], {**REQUEST, "cluster_id": "busy", "metrics_settle_seconds": 0})
    waiting_for(sfn, execution, "snapshot")
    bob.approve(execution)
    waiting_for(sfn, execution, "cutover")  # the sandbox's application kept writing after the snapshot

    refusal = refused(bob, {"action": "approve", "execution_arn": execution})
    assert refusal.status == 409 and "accept_write_loss" in str(refusal) and "or reject" in str(refusal)
    answer = bob.approve(execution, accept_write_loss=True, reason="the application was stopped at 10:02")
    assert answer["accept_write_loss"] is True and answer["reason"] == "the application was stopped at 10:02"


def test_an_execution_started_without_a_recorded_requester_cannot_be_approved(team):
    session, sfn, arns, alice, bob = team
    from neptune_guard.approve import workflow

    execution = workflow.start(sfn, arns["cluster"], REQUEST)  # someone with states:StartExecution, not the endpoint
    waiting_for(sfn, execution, "snapshot")

    refusal = refused(bob, {"action": "approve", "execution_arn": execution})
    assert refusal.status == 403 and "records no requester" in str(refusal)
    assert bob.reject(execution, "start it through the endpoint")["approved"] is False


@pytest.mark.parametrize("body, complaint", [
    ({}, "action"),
    ({"action": "delete", "execution_arn": "x"}, "action"),
    ({"action": "approve"}, "execution_arn"),
    ({"action": "approve", "execution_arn": 42}, "execution_arn"),
    ({"action": "approve", "execution_arn": "not-an-arn"}, "not an execution ARN"),
    ({"action": "approve", "execution_arn": "arn:aws:states:us-east-1:123456789012:stateMachine:NeptuneGuardClusterRemediation"},
     "not a Step Functions execution ARN"),
    ({"action": "reject", "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:NeptuneGuardClusterRemediation:x"},
     "reason"),
    ({"action": "start", "state_machine_arn": "x", "request": {"account_id": "1" * 12, "region": "us-east-1", "target_key": "alias/k"}},
     "exactly one of cluster_id and snapshot_id"),
    ({"action": "start", "state_machine_arn": "x", "request": {"account_id": "1\u0661" + "1" * 10, "region": "us-east-1",
                                                                "cluster_id": "orders", "target_key": "alias/k"}}, "account_id"),
    ({"action": "start", "state_machine_arn": "x", "request": {"account_id": "1" * 12, "region": "us-east-1\n",
                                                                "cluster_id": "orders", "target_key": "alias/k"}}, "region"),
    ({"action": "start", "state_machine_arn": "x", "request": {"account_id": "1" * 12, "region": "us-east-1",
                                                                "cluster_id": "orders; drop", "target_key": "alias/k"}}, "cluster_id"),
    ({"action": "start", "state_machine_arn": "x", "request": {"account_id": "1" * 12, "region": "us-east-1",
                                                                "cluster_id": "orders", "target_key": "not a key"}}, "target_key"),
    ({"action": "start", "state_machine_arn": "x", "request": {"account_id": "1" * 12, "region": "us-east-1",
                                                                "snapshot_id": "snap\n", "target_key": "alias/k"}}, "snapshot_id"),
    ([1, 2], "must be a JSON object"),
    ("approve", "must be a JSON object"),
])
def test_bad_bodies_get_one_clear_400(team, body, complaint):
    session, sfn, arns, alice, bob = team
    refusal = refused(bob, body)
    assert refusal.status == 400 and complaint in str(refusal)
    assert "Traceback" not in str(refusal) and "\n" not in str(refusal)


def test_a_body_that_is_not_json_gets_a_400(team):
    session, sfn, arns, alice, bob = team
    request = signed(bob.session, arns["approval_url"], b"{not json")
    response = URLLib3Session().send(request.prepare())
    assert response.status_code == 400 and json.loads(response.content) == {"message": "the body must be JSON"}


def signed(session, url, data: bytes, region=REGION, service="lambda") -> AWSRequest:
    request = AWSRequest(method="POST", url=url, data=data, headers={"Content-Type": "application/json"})
    SigV4Auth(session.get_credentials().get_frozen_credentials(), service, region).add_auth(request)
    return request


def test_unsigned_and_badly_signed_requests_never_reach_the_function(team, monkeypatch):
    session, sfn, arns, alice, bob = team
    execution = alice.start(arns["cluster"], REQUEST)
    waiting_for(sfn, execution, "snapshot")
    body = json.dumps({"action": "approve", "execution_arn": execution}).encode()
    invoked = []
    from neptune_guard.handlers import approval
    monkeypatch.setattr(approval, "handler", lambda event, context: invoked.append(event))
    http = URLLib3Session()

    unsigned = AWSRequest(method="POST", url=arns["approval_url"], data=body, headers={"Content-Type": "application/json"})
    tampered = signed(bob.session, arns["approval_url"], body)
    tampered.data = json.dumps({"action": "approve", "execution_arn": execution, "stage": "snapshot"}).encode()
    wrong_secret = boto3.Session(aws_access_key_id=bob.session.get_credentials().access_key, aws_secret_access_key="x" * 40,
                                 aws_session_token=bob.session.get_credentials().token)
    no_token = boto3.Session(aws_access_key_id=bob.session.get_credentials().access_key,
                             aws_secret_access_key=bob.session.get_credentials().secret_key)
    unknown_key = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing")
    attempts = {
        "unsigned": unsigned, "tampered body": tampered, "wrong secret": signed(wrong_secret, arns["approval_url"], body),
        "temporary key without its token": signed(no_token, arns["approval_url"], body),
        "key moto never issued": signed(unknown_key, arns["approval_url"], body),
        "other region": signed(bob.session, arns["approval_url"], body, region="eu-west-1"),
        "other service": signed(bob.session, arns["approval_url"], body, service="execute-api"),
    }
    for name, request in attempts.items():
        response = http.send(request.prepare())
        assert response.status_code == 403, name
    assert invoked == []
    assert approvals.pending_approval(sfn, execution)["stage"] == "snapshot"


def test_an_iam_user_is_resolved_as_get_caller_identity_would(team):
    session, sfn, arns, alice, bob = team
    iam = session.client("iam")
    iam.create_user(UserName="carol")
    key = iam.create_access_key(UserName="carol")["AccessKey"]
    carol = boto3.Session(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], region_name=REGION)

    refusal = refused_as(carol, arns["approval_url"], {"action": "approve", "execution_arn": "x"})
    assert refusal.status == 403 and "arn:aws:iam::123456789012:user/carol is not on the approver allow-list" in str(refusal)
    iam.update_access_key(UserName="carol", AccessKeyId=key["AccessKeyId"], Status="Inactive")
    refusal = refused_as(carol, arns["approval_url"], {"action": "approve", "execution_arn": "x"})
    assert refusal.status == 403 and "security token included in the request is invalid" in str(refusal)


def refused_as(session, url, body):
    with pytest.raises(approval_client.EndpointRefused) as refusal:
        approval_client.call(session, url, body)
    return refusal.value


def test_remediate_without_an_approval_url_records_the_administrator_who_needs_two_people_on_call(team, capsys, monkeypatch):
    from neptune_guard.cli import main

    session, sfn, arns, alice, bob = team
    monkeypatch.delenv("NEPTUNE_GUARD_APPROVAL_URL", raising=False)
    assert main(["remediate", "--state-machine-arn", arns["cluster"], "--account", ACCOUNT, "--region", REGION,
                 "--cluster", "orders", "--target-key", "alias/neptune-cmk"]) == 0  # straight to Step Functions
    execution = json.loads(capsys.readouterr().out)["execution_arn"]
    administrator = session.client("sts").get_caller_identity()["Arn"]
    assert json.loads(sfn.describe_execution(executionArn=execution)["input"])["requested_by"] == administrator
    waiting_for(sfn, execution, "snapshot")

    adopted = bob.approve(execution)

    assert adopted["approved"] is False and adopted["adopted"] is True and adopted["replaces"] == execution
    assert sfn.describe_execution(executionArn=execution)["status"] == "ABORTED" and snapshots(session) == []
    waiting_for(sfn, adopted["execution_arn"], "snapshot")
    assert refused(bob, {"action": "approve", "execution_arn": adopted["execution_arn"]}).status == 403
    assert alice.approve(adopted["execution_arn"])["requested_by"] == bob.arn


def test_an_execution_the_trigger_started_needs_two_distinct_people_before_it_acts(team):
    from neptune_guard.approve import workflow

    session, sfn, arns, alice, bob = team
    trigger = "arn:aws:sts::123456789012:assumed-role/NeptuneGuardTrigger/neptune-guard-trigger"
    execution = workflow.start(sfn, arns["cluster"], {**REQUEST, "requested_by": trigger})
    waiting_for(sfn, execution, "snapshot")

    adopted = alice.approve(execution, stage="snapshot")

    assert adopted["adopted"] is True and snapshots(session) == []
    new = adopted["execution_arn"]
    assert json.loads(sfn.describe_execution(executionArn=new)["input"])["requested_by"] == alice.arn
    waiting_for(sfn, new, "snapshot")
    same_person = Engineer(session, "ALICE", arns["approval_url"])  # IAM names ignore case: one person
    assert "cannot approve it" in str(refused(same_person, {"action": "approve", "execution_arn": new}))
    assert bob.approve(new)["approver"] == bob.arn


def test_the_deployment_not_the_requester_chooses_the_role_and_the_shortest_safety_durations(team):
    session, sfn, arns, alice, bob = team
    refusal = refused(alice, {"action": "start", "state_machine_arn": arns["cluster"],
                              "request": {**REQUEST, "role_name": "OrganizationAccountAccessRole"}})
    assert refusal.status == 400 and "role_name" in str(refusal)

    execution = alice.start(arns["cluster"], {**REQUEST, "soak_seconds": 3600})
    started = json.loads(sfn.describe_execution(executionArn=execution)["input"])
    assert started["role_name"] == "NeptuneGuardRemediation" and started["soak_seconds"] == 3600

    strict = approvals.Safety(soak_seconds=7 * 24 * 3600)
    with pytest.raises(approvals.BadRequest, match="soak_seconds may only lengthen"):
        strict.fill({**REQUEST, "soak_seconds": 0})
    assert strict.fill({**REQUEST, "soak_seconds": 8 * 24 * 3600})["soak_seconds"] == 8 * 24 * 3600
    with pytest.raises(approvals.Forbidden, match="shorter than the deployment"):
        strict.check({**REQUEST, "soak_seconds": 0})  # started some other way: never approved
    with pytest.raises(approvals.Forbidden, match="acts through role"):
        strict.check({**REQUEST, "role_name": "OrganizationAccountAccessRole", "soak_seconds": 8 * 24 * 3600})


@pytest.mark.parametrize("arn, person", [
    ("arn:aws:sts::123456789012:assumed-role/NeptuneGuardOnCall/Alice", "alice"),
    ("arn:aws:sts::123456789012:assumed-role/OtherRole/alice", "alice"),
    ("arn:aws:iam::123456789012:user/alice", None),
    ("arn:aws:sts::123456789012:assumed-role/NeptuneGuardOnCall/alice\n", None),
    ("arn:aws:sts::123456789012:federated-user/alice", None),
])
def test_a_person_is_the_session_name_the_guardrail_binds_to_their_source_identity(arn, person):
    assert approvals.person_of(arn) == person


def test_an_approval_marks_what_the_plan_names_and_nothing_once_it_changed(team):
    session, sfn, arns, alice, bob = team
    neptune = member_session(session, ACCOUNT).client("neptune", region_name=REGION)
    cluster = neptune.describe_db_clusters(DBClusterIdentifier="orders")["DBClusters"][0]["DBClusterArn"]
    execution = alice.start(arns["cluster"], REQUEST)
    waiting_for(sfn, execution, "snapshot")
    neptune.create_db_instance(DBInstanceIdentifier="orders-2", DBClusterIdentifier="orders", Engine="neptune",
                               DBInstanceClass="db.r6g.large")  # the owner adds a reader after the plan

    refusal = refused(bob, {"action": "approve", "execution_arn": execution, "stage": "snapshot"})

    assert refusal.status == 409 and "changed since the plan" in str(refusal)
    assert "neptune-guard:cutover" not in {t["Key"] for t in neptune.list_tags_for_resource(ResourceName=cluster)["TagList"]}
    waiting_for(sfn, execution, "snapshot")  # still asks: reject it, and plan again
    neptune.delete_db_instance(DBInstanceIdentifier="orders-2", SkipFinalSnapshot=True)
    answer = bob.approve(execution, stage="snapshot")
    assert cluster in answer["marked"]
    tags = {t["Key"]: t["Value"] for t in neptune.list_tags_for_resource(ResourceName=cluster)["TagList"]}
    assert tags["neptune-guard:cutover"] == execution


def approved_by_carol(sfn, execution, token):
    sfn.send_task_success(taskToken=token, output=json.dumps(
        {"approved": True, "stage": "snapshot", "approver": "arn:aws:sts::123456789012:assumed-role/NeptuneGuardOnCall/carol"}))
    workflows.wait_for(sfn, execution, lambda *_: approvals.answered_with_an_approval(sfn, execution, token), 60.0)


def rejected_by_alice(sfn, execution, token):
    sfn.send_task_failure(taskToken=token, error="Rejected", cause="rejected by alice meanwhile")


@pytest.mark.parametrize("meanwhile, kept", [(rejected_by_alice, False), (approved_by_carol, True)])
def test_an_approval_that_no_longer_reaches_the_execution_takes_its_marks_back_unless_another_approval_did(team, monkeypatch,
                                                                                                          meanwhile, kept):
    """Marked, then the answer finds the question gone. Rejected (or timed out) in between: the marks would outlive the
    execution, holding the cluster against every later plan and open to the remediation role, so they come off.
    Approved by another person at once: that approval reached the execution, and its next steps need them."""
    session, sfn, arns, alice, bob = team
    neptune = member_session(session, ACCOUNT).client("neptune", region_name=REGION)
    cluster = neptune.describe_db_clusters(DBClusterIdentifier="orders")["DBClusters"][0]["DBClusterArn"]
    execution = alice.start(arns["cluster"], REQUEST)
    waiting_for(sfn, execution, "snapshot")
    write_marks = approvals.write_marks

    def answered_meanwhile(*args, **kwargs):
        marked = write_marks(*args, **kwargs)
        meanwhile(sfn, execution, approvals.pending_approval(sfn, execution)["token"])
        return marked

    monkeypatch.setattr(approvals, "write_marks", answered_meanwhile)
    refusal = refused(bob, {"action": "approve", "execution_arn": execution, "stage": "snapshot"})

    assert refusal.status == 409 and "answered or timed out meanwhile" in str(refusal)
    tags = {t["Key"]: t["Value"] for t in neptune.list_tags_for_resource(ResourceName=cluster)["TagList"]}
    assert (tags.get("neptune-guard:cutover") == execution) is kept, tags
