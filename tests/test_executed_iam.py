"""Least privilege, executed: the roles the CDK app synthesizes are deployed into the local AWS and every code path
runs on their credentials alone, each request authorized as IAM would (sandbox/iam/executed.py). Any AccessDenied
fails the run; every granted action the run never used must be one docs/iam.md lists with the documentation that
requires it."""

import json
import re
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from neptune_guard import cli
from sandbox.aws import function_urls
from sandbox.demo import on_call, workflows
from sandbox.iam import executed
from tests.conftest import awaiting, custom_action_event, final_state, findings, member_session

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT, OTHER, REGION = "111111111111", "222222222222", "us-east-1"
SCENARIO = {
    "accounts": {
        ACCOUNT: {REGION: {
            "keys": {"neptune-guard": {"state": "Enabled", "shared_with": [OTHER]}},
            "clusters": {
                "orders": {"encryption": "none", "instances": {"orders-1": "db.r6g.large"}, "tags": {"team": "orders"},
                           "custom_endpoints": {"orders-analytics": {"type": "READER", "members": ["orders-1"]}}},
                "ledger": {"encryption": "aws-managed", "instances": {"ledger-1": "db.r6g.large"}},
                "billing": {"encryption": "none", "instances": {"billing-1": "db.r6g.large"}},
                "catalog": {"encryption": "aws-managed", "instances": {"catalog-1": "db.r6g.large"}, "streams": True, "iam_auth": True,
                            "custom_endpoints": {"catalog-reports": {"type": "READER", "members": ["catalog-1"]}}},
                "customer-cmk": {"encryption": "none", "instances": {}},
            },
            "snapshots": {"orders-snap": {"cluster": "orders", "shared_with": [OTHER]}},
            "other_engines": {"aurora-prod": "aurora-postgresql"},
            "graphs": {"recs": {"tags": {"team": "recs"}, "snapshots": ["recs-weekly"]}},
        }},
        OTHER: {REGION: {"clusters": {"graph": {"encryption": "aws-managed"}}}},
    }
}
FAST = {"approval_timeout_seconds": 600, "soak_seconds": 0, "metrics_settle_seconds": 0}


@pytest.fixture
def deployed(seeded, synthesized, monkeypatch):
    """The scenario, the synthesized roles and the functions on them, with the approval endpoint served."""
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    session = seeded(SCENARIO)
    harness, arns = executed.deploy(session, *synthesized)
    with workflows.fast_clock(), function_urls.serve(session, arns["approval_function"]) as url:
        sfn = session.client("stepfunctions", region_name=REGION)
        try:
            with executed.enforced(harness):
                yield session, harness, arns, url.url
        finally:
            workflows.stop_running(sfn, [arns["cluster"], arns["snapshot"]])


def role_session(session, role_name, session_name, account=None):
    """Credentials of a session of `role_name` (in the security account unless `account` says otherwise). A person on
    call is a session of the on-call role under their own name: the approver policy is theirs."""
    account = account or session.client("sts").get_caller_identity()["Account"]
    return executed.role_credentials(session, f"arn:aws:iam::{account}:role/{role_name}", session_name)


def as_person(credentials, monkeypatch, url, *argv) -> tuple[int, dict]:
    """The CLI, run by a person with their own credentials, against the approval endpoint."""
    monkeypatch.setenv("NEPTUNE_GUARD_APPROVAL_URL", url)
    with executed.acting_as(credentials):
        return cli.main([*argv, "--output", "json"])


def invoke(session, name: str, event: dict) -> dict:
    answer = session.client("lambda", region_name=REGION).invoke(FunctionName=name, Payload=json.dumps(event).encode())
    payload = json.loads(answer["Payload"].read())
    assert "FunctionError" not in answer, payload
    return payload


def scheduled_scan(sfn, arns, name="daily") -> dict:
    """A run of the scheduled scan's Distributed Map, as the schedule starts it: the run's coverage."""
    execution = sfn.start_execution(stateMachineArn=arns["scheduled_scan"], name=name, input="{}")["executionArn"]
    description = workflows.wait_for(sfn, execution, lambda d, h: False, timeout=120)
    assert description["status"] == "SUCCEEDED", final_state(sfn, execution)
    return final_state(sfn, execution)["coverage"]


def wait_for_stage(sfn, execution, stage):
    try:
        description = awaiting(sfn, execution, stage, timeout=60)
    except TimeoutError:
        description = {"status": "TIMED OUT"}
    if description["status"] != "RUNNING":
        events = sfn.get_execution_history(executionArn=execution, maxResults=1000, reverseOrder=True)["events"][:6]
        raise AssertionError(f"{execution} never waited for {stage}: {final_state(sfn, execution).get('error')}; "
                             f"{json.dumps(events, default=str)[:4000]}")


def test_every_code_path_runs_on_the_synthesized_roles_alone(deployed, monkeypatch, capsys):
    session, harness, arns, url = deployed
    sfn = session.client("stepfunctions", region_name=REGION)
    alice, bob = (role_session(session, on_call.ON_CALL_ROLE, name) for name in ("alice", "bob"))

    # The scheduled scan of the Organization, every enabled region, published; then the CLI's scan of its own account.
    scanned = scheduled_scan(sfn, arns)
    assert scanned["findings_failed"] > 0 and scanned["accounts_unreached"] == [], scanned
    # `scan --accounts self` uses the caller's own credentials: here a member account's audit role.
    with executed.acting_as(role_session(session, "NeptuneGuardAudit", "cli", ACCOUNT)):
        assert cli.main(["scan", "--accounts", "self", "--publish", "--no-progress", "--output", "json"]) == 0
    capsys.readouterr()

    # plan, as a person: through the member account's read-only planner role.
    for target in (["--cluster", "ledger"], ["--cluster", "catalog"], ["--snapshot", "orders-snap"]):
        assert as_person(alice, monkeypatch, url, "plan", "--account", ACCOUNT, "--region", REGION, *target,
                         "--target-key", "alias/neptune-guard") == 0, denials(harness)

    # The custom action on the orders finding: the trigger re-reads it and starts the cluster workflow.
    orders, orders_snap, ledger_finding = (failed_finding(session, suffix) for suffix in (":cluster:orders", ":cluster-snapshot:orders-snap",
                                                                                          ":cluster:ledger"))
    started = invoke(session, "neptune-guard-trigger", custom_action_event([orders, orders_snap]))
    assert not started["skipped"], started
    orders_execution, snapshot = (s["execution_arn"] for s in started["started"])
    wait_for_stage(sfn, orders_execution, "snapshot")
    assert as_person(bob, monkeypatch, url, "approve", orders_execution, "--stage", "snapshot") == 0, denials(harness)
    # The trigger is no person: bob's approval adopts the execution (stopped, started again as his), and alice approves.
    orders_execution = next(e["executionArn"] for e in sfn.list_executions(stateMachineArn=arns["cluster"], statusFilter="RUNNING")["executions"]
                            if e["name"].startswith("orders-"))
    wait_for_stage(sfn, orders_execution, "snapshot")
    assert as_person(alice, monkeypatch, url, "approve", orders_execution, "--stage", "snapshot") == 0, denials(harness)
    wait_for_stage(sfn, orders_execution, "cutover")  # the trigger's defaults let metrics settle for minutes: stopped here
    # Stopped by hand: Step Functions announces the end, and the marks the snapshot approval wrote come off.
    sfn.stop_execution(executionArn=orders_execution, cause="stopped by hand")
    released = invoke(session, arns["execution-ended"], {
        "detail-type": "Step Functions Execution Status Change", "source": "aws.states", "detail": {"executionArn": orders_execution}})
    assert released["released"] and "refused" not in released, released

    # A whole lifecycle started by a person, decommission included (soak shortened), carrying the cluster's IAM role;
    # the approver reads what they are asked (the execution, its history) before answering.
    member = member_session(session, ACCOUNT)
    loader = member.client("iam").create_role(RoleName="NeptuneLoadFromS3", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "rds.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    member.client("neptune", region_name=REGION).add_role_to_db_cluster(DBClusterIdentifier="catalog", RoleArn=loader)
    catalog = start(alice, url, arns["cluster"], {"cluster_id": "catalog"})
    for stage in ("snapshot", "cutover", "decommission"):
        wait_for_stage(sfn, catalog, stage)
        if stage == "decommission":  # the scheduled scan during the soak notes the retained original
            scheduled_scan(sfn, arns, "during-the-soak")
        read_the_question(bob, arns["cluster"], catalog)
        # on-call's own commands, on the approver policy alone: what waits, where this execution is
        assert as_person(bob, monkeypatch, url, "pending") == 0, denials(harness)
        assert as_person(bob, monkeypatch, url, "status", catalog) == 0, denials(harness)
        assert as_person(bob, monkeypatch, url, "approve", catalog, "--stage", stage) == 0, denials(harness)
    assert workflows.wait_for(sfn, catalog, lambda d, h: False)["status"] == "SUCCEEDED", denials(harness)
    done = final_state(sfn, catalog)
    assert done["plan"]["path"] == "streams" and done["final_proof"]["proven"], done.get("error")
    # The replicator's function, role and group were removed, on the same role.
    assert not [f for f in member.client("lambda", region_name=REGION).list_functions()["Functions"] if f["FunctionName"].startswith("neptune-guard-replicator-")]
    assert not member.client("iam").list_roles(PathPrefix="/neptune-guard/")["Roles"]
    assert not [g for g in member.client("ec2", region_name=REGION).describe_security_groups()["SecurityGroups"]
                if g["GroupName"].startswith("neptune-guard-replicator-")]

    # remediate and reject, as people, through the endpoint.
    assert as_person(alice, monkeypatch, url, "remediate", "--state-machine-arn", arns["cluster"], "--account", ACCOUNT,
                     "--region", REGION, "--cluster", "ledger", "--target-key", "alias/neptune-guard") == 0
    ledger = next(e["executionArn"] for e in sfn.list_executions(stateMachineArn=arns["cluster"])["executions"]
                  if e["name"].startswith("ledger-"))
    # The custom action on a finding whose resource is already being remediated finds that execution.
    clicked = invoke(session, "neptune-guard-trigger", custom_action_event([ledger_finding]))
    assert [s["execution_arn"] for s in clicked["started"]] == [ledger], clicked
    wait_for_stage(sfn, ledger, "snapshot")
    assert as_person(bob, monkeypatch, url, "reject", ledger, "--reason", "owner asked to wait") == 0
    assert workflows.wait_for(sfn, ledger, lambda d, h: False)["error"] == "NotApproved"

    # A fault restoring the new cluster rolls back, on the same roles.
    from moto.rds import exceptions as rds_exceptions
    from moto.rds import models as rds_models

    def failing_restore(self, *args, **kwargs):
        raise rds_exceptions.RDSClientError("InternalFailure", "injected fault in the restore")

    billing = start(alice, url, arns["cluster"], {"cluster_id": "billing"})
    wait_for_stage(sfn, billing, "snapshot")
    with monkeypatch.context() as faults:
        faults.setattr(rds_models.RDSBackend, "restore_db_cluster_from_snapshot", failing_restore)
        assert as_person(bob, monkeypatch, url, "approve", billing, "--stage", "snapshot") == 0
        assert workflows.wait_for(sfn, billing, lambda d, h: False)["error"] == "RolledBack"

    # The snapshot workflow the trigger started: an unencrypted shared snapshot, restored and snapshotted under the CMK.
    wait_for_stage(sfn, snapshot, "re-encrypt")
    assert as_person(bob, monkeypatch, url, "approve", snapshot, "--stage", "re-encrypt") == 0
    snapshot = next(e["executionArn"] for e in sfn.list_executions(stateMachineArn=arns["snapshot"], statusFilter="RUNNING")["executions"])
    wait_for_stage(sfn, snapshot, "re-encrypt")  # adopted by bob, as the trigger's executions are: alice approves
    assert as_person(alice, monkeypatch, url, "approve", snapshot, "--stage", "re-encrypt") == 0
    wait_for_stage(sfn, snapshot, "delete-original")
    assert as_person(alice, monkeypatch, url, "approve", snapshot, "--stage", "delete-original") == 0
    assert workflows.wait_for(sfn, snapshot, lambda d, h: False)["status"] == "SUCCEEDED"
    capsys.readouterr()

    # Each hand-over run again, as after a fault once it had finished: it finds nothing left to do and asks for nothing
    # the role may no longer do (what it handed over is not the role's to tag).
    from neptune_guard.remediate import cutover
    from neptune_guard.remediate import snapshot as snapshot_steps
    from neptune_guard.remediate.resources import Step

    with executed.acting_as(role_session(session, "NeptuneGuardWorkflow", "steps")):
        for execution, hand_over in ((catalog, cutover.hand_over_new_cluster), (snapshot, snapshot_steps.delete_original_snapshot)):
            state = final_state(sfn, execution)
            request = json.loads(sfn.describe_execution(executionArn=execution)["input"])
            hand_over(Step(request=request, execution=execution, plan=state["plan"], state=state))

    denied = harness.denied()
    assert not denied, denials(harness)
    unexercised = {f"{role} {action}" for role, action in harness.unexercised()}
    granted, exercised = len(harness.granted()), len(harness.exercised())
    print(f"{len(harness.decisions)} authorization decisions, {granted} role-action grants, {exercised} exercised; never called:",
          *sorted(unexercised), sep="\n")
    documented = documented_unexercised()
    assert unexercised == documented, f"not documented: {sorted(unexercised - documented)}; documented but used: {sorted(documented - unexercised)}"
    figures = f"{granted} role-action grants, {exercised} exercised"
    assert f"{granted} role-action grants" in (ROOT / "docs" / "iam.md").read_text(), figures
    assert f"{exercised} exercised" in (ROOT / "docs" / "iam.md").read_text(), figures


def failed_finding(session, resource_suffix):
    return next(f for f in findings(session, ACCOUNT, REGION, ComplianceStatus="FAILED").values()
                if f["Resources"][0]["Id"].endswith(resource_suffix) and "uses_cmk" in f["GeneratorId"])


def read_the_question(person, state_machine_arn, execution):
    from neptune_guard.approve import approvals

    with executed.acting_as(person):
        sfn = boto3.client("stepfunctions", region_name=REGION)
        assert execution in [e["executionArn"] for e in sfn.list_executions(stateMachineArn=state_machine_arn)["executions"]]
        assert sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
        assert approvals.pending_approval(sfn, execution)["stage"]


def denials(harness) -> str:
    return "\n".join(f"{d.role} {d.action} {d.resource}: {d.reason}" for d in harness.denied())


def start(person, url, state_machine_arn, target: dict) -> str:
    from neptune_guard.approve import approval_client

    with executed.acting_as(person):
        return approval_client.call(boto3.Session(region_name=REGION), url, {
            "action": "start", "state_machine_arn": state_machine_arn,
            "request": {"account_id": ACCOUNT, "region": REGION, "target_key": "alias/neptune-guard", **FAST, **target}})["execution_arn"]


def documented_unexercised() -> set[str]:
    """docs/iam.md's table of grants no code path calls: `| `ROLE` | `action`, `action` | why, with its documentation |`."""
    section = (ROOT / "docs" / "iam.md").read_text().split("### Granted, never called by our code")[1].split("\n#")[0]
    rows = re.findall(r"^\| `([\w-]+)` \| ([^|]+) \|", section, re.MULTILINE)
    return {f"{role} {action}" for role, actions in rows for action in re.findall(r"`([\w:*-]+)`", actions)}


def test_the_remediation_roles_own_credentials_cannot_touch_an_untagged_customer_resource(deployed):
    session, harness, arns, _ = deployed
    member = member_session(session, ACCOUNT)
    with executed.acting_as(role_session(session, "NeptuneGuardWorkflow", "steps")):
        remediation = executed.role_credentials(boto3.Session(region_name=REGION),
                                                    f"arn:aws:iam::{ACCOUNT}:role/NeptuneGuardRemediation", "attacker")
    attacker = boto3.Session(aws_access_key_id=remediation.access_key, aws_secret_access_key=remediation.secret_key,
                             aws_session_token=remediation.token, region_name=REGION)
    rds, ec2, iam, lam = (attacker.client(service) for service in ("rds", "ec2", "iam", "lambda"))
    vpc = member.client("ec2", region_name=REGION).describe_vpcs()["Vpcs"][0]["VpcId"]
    ours = [{"Key": "neptune-guard:created-by", "Value": f"arn:aws:states:{REGION}:123456789012:execution:NeptuneGuardClusterRemediation:x"}]
    customer_group = member.client("ec2", region_name=REGION).describe_security_groups()["SecurityGroups"][0]["GroupId"]
    boundary = f"arn:aws:iam::{ACCOUNT}:policy/NeptuneGuardReplicatorBoundary"
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                                "Action": "sts:AssumeRole"}]})
    attempts = [
        lambda: rds.delete_db_cluster(DBClusterIdentifier="customer-cmk", SkipFinalSnapshot=True),
        lambda: rds.modify_db_cluster(DBClusterIdentifier="aurora-prod", NewDBClusterIdentifier="aurora-prod-cmk", ApplyImmediately=True),
        lambda: rds.modify_db_cluster(DBClusterIdentifier="orders", DeletionProtection=False, ApplyImmediately=True),
        lambda: rds.stop_db_cluster(DBClusterIdentifier="billing"),
        lambda: rds.delete_db_instance(DBInstanceIdentifier="orders-1"),
        lambda: rds.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier="orders-snap"),
        lambda: rds.add_tags_to_resource(ResourceName=f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:orders",
                                         Tags=[{"Key": "team", "Value": "mallory"}]),
        # The streams path's grants, outside what they are for: a group without the execution's tag, a rule on any
        # group, a customer's group deleted, a role without the boundary or elsewhere, a function on another role.
        lambda: ec2.create_security_group(GroupName="mallory", Description="x", VpcId=vpc),
        lambda: ec2.create_security_group(GroupName="mallory", Description="x", VpcId=vpc,
                                          TagSpecifications=[{"ResourceType": "security-group", "Tags": [{"Key": "team", "Value": "x"}]}]),
        lambda: ec2.authorize_security_group_ingress(GroupId=customer_group, IpPermissions=[
            {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]),
        lambda: ec2.delete_security_group(GroupId=customer_group),
        lambda: iam.create_role(RoleName="NeptuneGuardReplicator-mallory", Path="/neptune-guard/", AssumeRolePolicyDocument=trust, Tags=ours),
        lambda: iam.create_role(RoleName="Mallory", AssumeRolePolicyDocument=trust, PermissionsBoundary=boundary),
        lambda: lam.create_function(FunctionName="neptune-guard-replicator-mallory", Runtime="python3.13", Handler="x.handler",
                                    Role=f"arn:aws:iam::{ACCOUNT}:role/NeptuneGuardAudit", Code={"ZipFile": b"x"}),
    ]
    for attempt in attempts:
        with pytest.raises(ClientError) as refused:
            attempt()
        code = refused.value.response["Error"]["Code"]
        operation = refused.value.operation_name
        assert code == ("UnauthorizedOperation" if "SecurityGroup" in operation else
                        "AccessDeniedException" if operation == "CreateFunction" else "AccessDenied"), (operation, code)
    clusters = {c["DBClusterIdentifier"] for c in member.client("rds", region_name=REGION).describe_db_clusters()["DBClusters"]}
    assert {"customer-cmk", "aurora-prod", "orders", "billing"} <= clusters
    assert not member.client("iam").list_roles(PathPrefix="/neptune-guard/")["Roles"]
    assert customer_group in {g["GroupId"] for g in member.client("ec2", region_name=REGION).describe_security_groups()["SecurityGroups"]}
    assert len(harness.denied()) == len(attempts)

    # No function at all, signed code or not, under the region's code-signing configuration or without: whoever makes a
    # function chooses its environment, and a Python runtime's environment can run code of the maker's. Only the
    # regional creator role, which only the security account's workflow role may assume, makes replicators.
    mallory = iam.create_role(RoleName="NeptuneGuardReplicator-mallory", Path="/neptune-guard/", AssumeRolePolicyDocument=trust,
                              PermissionsBoundary=boundary, Tags=ours)["Role"]["Arn"]
    (config,) = [c["CodeSigningConfigArn"] for c in lam.list_code_signing_configs()["CodeSigningConfigs"]]
    s3, bucket = session.client("s3"), workflows.replicator_bucket(session.client("sts").get_caller_identity()["Account"])
    (key,) = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="replicator/signed/")["Contents"]]
    signed = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    for code in (_zip("x.py", "def handler(event, context):\n    return event\n"), signed):
        with pytest.raises(ClientError) as refused:
            lam.create_function(FunctionName="neptune-guard-replicator-mallory", Runtime="python3.13", Handler="x.handler", Role=mallory,
                                Code={"ZipFile": code}, Environment={"Variables": {"PYTHONWARNINGS": "ignore::antigravity.x"}},
                                Tags={ours[0]["Key"]: ours[0]["Value"]}, CodeSigningConfigArn=config)
        assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    with pytest.raises(ClientError) as refused:
        attacker.client("sts").assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/NeptuneGuardReplicatorCreator-{REGION}", RoleSessionName="mallory")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert not [f for f in member.client("lambda", region_name=REGION).list_functions()["Functions"]
                if f["FunctionName"].startswith("neptune-guard-replicator-")]
    iam.delete_role(RoleName="NeptuneGuardReplicator-mallory")
    # No Security Hub access at all (review): an import by this role could archive or pass the tool's own findings.
    forged = {"SchemaVersion": "2018-10-08", "Id": "x", "ProductArn": f"arn:aws:securityhub:{REGION}:{ACCOUNT}:product/{ACCOUNT}/default",
              "GeneratorId": "x", "AwsAccountId": ACCOUNT, "Types": ["Software and Configuration Checks"], "CreatedAt": "2026-01-01T00:00:00Z",
              "UpdatedAt": "2099-01-01T00:00:00Z", "Severity": {"Label": "INFORMATIONAL"}, "Title": "x", "Description": "x",
              "Resources": [{"Type": "Other", "Id": "x"}], "RecordState": "ARCHIVED"}
    for call in (lambda hub: hub.get_findings(), lambda hub: hub.batch_import_findings(Findings=[forged])):
        with pytest.raises(ClientError) as refused:
            call(attacker.client("securityhub"))
        assert refused.value.response["Error"]["Code"] == "AccessDeniedException"

    # The security roles assume member roles by name only in the Organization's accounts.
    for role in ("NeptuneGuardDetector", "NeptuneGuardWorkflow", "NeptuneGuardTrigger"):
        for member_role in ("NeptuneGuardAudit", "NeptuneGuardRemediation", "NeptuneGuardTriggerAccess"):
            outside = harness.decide(f"arn:aws:iam::123456789012:role/{role}", "sts:AssumeRole",
                                     f"arn:aws:iam::999988887777:role/{member_role}", {})
            assert not outside.allowed and "implicitly denied" in outside.reason, outside


def _zip(name: str, text: str) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, text)
    return buffer.getvalue()
