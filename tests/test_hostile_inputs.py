"""Hostile input everywhere a user or an event reaches the code: one clear line, a documented exit code (or a
documented error), never a traceback, and nothing changed in the local AWS."""

import json

import pytest
from moto.rds import responses as rds_responses

from neptune_guard.cli import main
from neptune_guard.scanner import ScanOptions, scan
from tests.conftest import LambdaContext, deployments, member_session, module_local_aws

ACCOUNT, REGION = "111111111111", "us-east-1"
SCENARIO = {"accounts": {ACCOUNT: {
    REGION: {"keys": {"neptune-cmk": {"state": "Enabled"}},
             "clusters": {"orders": {"encryption": "none", "instances": {"orders-1": "db.r6g.large"}}},
             "snapshots": {"orders-snap": "orders"}},
    "eu-west-1": {"clusters": {"catalog": {"encryption": "aws-managed"}}},
}}}
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:NeptuneGuardClusterRemediation:x"
TARGET = ["--account", ACCOUNT, "--region", REGION, "--target-key", "alias/neptune-cmk"]

CLI = [
    # scan
    (["scan", "--regions", "moon"], 2), (["scan", "--regions", "us-east-1,"], 0), (["scan", "--regions", ","], 2),
    (["scan", "--regions", "US-EAST-1"], 2), (["scan", "--regions", "us-east-1;rm -rf /"], 2), (["scan", "--accounts", "12"], 2),
    (["scan", "--accounts", "1111111111111"], 2), (["scan", "--accounts", "abcdefghijkl"], 2), (["scan", "--accounts", ""], 2),
    (["scan", "--concurrency", "0"], 2), (["scan", "--concurrency", "-1"], 2), (["scan", "--concurrency", "65"], 2),
    (["scan", "--concurrency", "two"], 2), (["scan", "--output", "xml"], 2), (["scan", "--bogus"], 2),
    # plan
    (["plan", "--account", "12", "--region", REGION, "--cluster", "orders", "--target-key", "alias/neptune-cmk"], 2),
    (["plan", "--account", ACCOUNT, "--region", "mars-1", "--cluster", "orders", "--target-key", "alias/neptune-cmk"], 2),
    (["plan", *TARGET, "--cluster", "-orders"], 2), (["plan", *TARGET, "--cluster", "a--b"], 2),
    (["plan", *TARGET, "--cluster", "x" * 64], 2), (["plan", *TARGET, "--cluster", "no-such-cluster"], 2),
    (["plan", *TARGET[:-1], "alias/aws/rds", "--cluster", "orders"], 2), (["plan", *TARGET[:-1], "not a key", "--cluster", "orders"], 2),
    (["plan", *TARGET[:-1], "arn:aws:kms:eu-west-1:111111111111:key/1234", "--cluster", "orders"], 2),
    (["plan", *TARGET, "--snapshot", "rds:--bad"], 2), (["plan", *TARGET, "--snapshot", "no-such-snapshot"], 2),
    (["plan", *TARGET, "--cluster", "orders", "--snapshot", "orders-snap"], 2), (["plan", *TARGET], 2),
    # remediate
    (["remediate", "--state-machine-arn", "not-an-arn", *TARGET, "--cluster", "orders"], 2),
    (["remediate", "--state-machine-arn", "arn:aws:s3:::bucket", *TARGET, "--cluster", "orders"], 2),
    (["remediate", "--state-machine-arn", EXECUTION, *TARGET, "--cluster", "orders"], 2),
    # approve / reject
    (["approve", "not-an-arn"], 2), (["approve", "arn:aws:states:us-east-1:123456789012:stateMachine:x"], 2),
    (["approve", "arn:aws:lambda:us-east-1:123456789012:function:x"], 2), (["approve", ""], 2),
    (["reject", "arn::::"], 2), (["reject", EXECUTION], 2), (["approve"], 2), (["--nonsense"], 2), ([], 2),
    # identifiers are ASCII and whole: other scripts' digits, fullwidth digits, a trailing newline, whitespace in an ARN
    (["plan", "--account", "1\u06611111111111", "--region", REGION, "--cluster", "orders", "--target-key", "alias/neptune-cmk"], 2),
    (["plan", "--account", "\uff11" * 12, "--region", REGION, "--cluster", "orders", "--target-key", "alias/neptune-cmk"], 2),
    (["plan", "--account", ACCOUNT + "\n", "--region", REGION, "--cluster", "orders", "--target-key", "alias/neptune-cmk"], 2),
    (["plan", "--account", ACCOUNT, "--region", REGION + "\n", "--cluster", "orders", "--target-key", "alias/neptune-cmk"], 2),
    (["plan", "--account", ACCOUNT, "--region", "us-east-\u0661", "--cluster", "orders", "--target-key", "alias/neptune-cmk"], 2),
    (["plan", *TARGET, "--cluster", "orders\n"], 2), (["plan", *TARGET, "--snapshot", "orders-snap\n"], 2),
    (["plan", *TARGET[:-1], "alias/neptune-cmk\n", "--cluster", "orders"], 2),
    (["plan", *TARGET[:-1], "alias/n\u00e9ptune", "--cluster", "orders"], 2),
    (["plan", *TARGET, "--cluster", "orders", "--state-machine-arn", "arn:aws:s3:::bucket"], 2),
    (["plan", *TARGET, "--cluster", "orders", "--state-machine-arn", "arn:aws:states:us-east-1:123456789012:stateMachine:x\n"], 2),
    (["scan", "--accounts", "\uff11" * 12], 2), (["scan", "--accounts", ACCOUNT + ",1\u0661" + ACCOUNT[2:]], 2),
    (["scan", "--regions", "us-east-\u0661"], 2), (["scan", "--regions", "us-east-1\n"], 0),  # a comma list's items are trimmed
    (["status", EXECUTION + "\n"], 2), (["status", EXECUTION.replace("x", "x y")], 2), (["approve", EXECUTION + "\t"], 2),
    (["pending", "--account", "\uff11" * 12], 2), (["pending", "--region", "us-east-1 "], 2),
    # the approval endpoint unreachable: 1, as the table says (not an AWS service error)
    (["approve", EXECUTION, "--stage", "snapshot", "--approval-url", "http://127.0.0.1:9/"], 1),
    (["reject", EXECUTION, "--reason", "no", "--approval-url", "http://127.0.0.1:9/"], 1),
    (["approve", EXECUTION, "--stage", "snapshot", "--approval-url", "ftp://127.0.0.1/"], 2),
    (["approve", EXECUTION, "--stage", "snapshot", "--approval-url", "http://example.com/"], 2),
]

SCENARIOS = [
    "not json", "", "[]", "null", '{"accounts": {}}', '{"accounts": {"12": {}}}', '{"accounts": {"111111111111": {"moon": {}}}}',
    '{"accounts": {"111111111111": {"us-east-1": {"clusters": {"a": {"encryption": "alias/missing"}}}}}}',
    '{"accounts": {"111111111111": {"us-east-1": {"snapshots": {"s": "nowhere"}}}}}',
    '{"accounts": {"111111111111": {"us-east-1": {"clusters": {"a": {"port": "eighty"}}}}}}',
    '{"accounts": {"111111111111": {"us-east-1": {"clusters": {"a": {"storage_type": "floppy"}}}}}}',
    '{"accounts": {"111111111111": {"us-east-1": {"clusters": {"a": {"instance_tags": {"ghost": {}}}}}}}}',
    '{"accounts": {"111111111111": {"us-east-1": {"clusters": {"-a": {}}}}}}', '{"accounts": {}, "surprise": 1}',
    '{"accounts": {"111111111111": {"us-east-1": {"graphs": {"g-reserved": {}}}}}}',
    '{"accounts": {"111111111111": {"us-east-1": {"graphs": {"recs": {"encryption": "alias/missing"}}}}}}',
    '{"accounts": {"111111111111": {"us-west-1": {"graphs": {"recs": {}}}}}}',
    "[" * 100000 + "]" * 100000, '{"accounts": ' + '{"a": ' * 3000 + "1" + "}" * 3000 + "}",
    '{"accounts": {"111111111111": {"us-east-1\\n": {}}}}',
]


@pytest.fixture(scope="module")
def world():
    """Deployed once for the module: every test here refuses its input and checks that nothing changed."""
    with module_local_aws() as local, deployments(local) as deploy:
        yield deployed_world(*deploy(SCENARIO))


def deployed_world(session, sfn, arns):
    def state():
        neptune = member_session(session, ACCOUNT).client("neptune", region_name=REGION)
        return (sorted(c["DBClusterIdentifier"] for c in neptune.describe_db_clusters()["DBClusters"]),
                sorted(s["DBClusterSnapshotIdentifier"] for s in neptune.describe_db_cluster_snapshots()["DBClusterSnapshots"]),
                sorted(e["executionArn"] for arn in (arns["cluster"], arns["snapshot"])
                       for e in sfn.list_executions(stateMachineArn=arn)["executions"]))

    return session, arns, state


def run_cli(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out + err


@pytest.mark.parametrize("argv, exit_code", CLI, ids=[" ".join(a)[:60] or "(nothing)" for a, _ in CLI])
def test_the_cli_answers_hostile_arguments_with_one_line(world, capsys, argv, exit_code):
    _, _, state = world
    before = state()
    code, output = run_cli(argv, capsys)
    assert code == exit_code, output
    assert "Traceback" not in output
    if code != 0:
        assert len([line for line in output.splitlines() if "error" in line or "neptune-guard" in line]) >= 1
    assert state() == before


@pytest.mark.parametrize("content", SCENARIOS + [None, "DIRECTORY"], ids=[f"scenario-{i}" for i in range(len(SCENARIOS) + 2)])
def test_a_broken_scenario_file_is_one_line_and_seeds_nothing(world, capsys, tmp_path, content):
    _, _, state = world
    before = state()
    path = tmp_path / "scenario.json"
    if content == "DIRECTORY":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    code, output = run_cli(["demo", "--scenario", str(path), "--output", "json"], capsys)
    assert code == 2 and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1 and output.startswith("neptune-guard demo: ")
    assert state() == before


@pytest.mark.parametrize("environment, complaint", [
    ({"REGIONS": "moon"}, "region"), ({"REGIONS": "us-east-1,,x"}, "region"), ({"CONCURRENCY": "0"}, "1 to 64"),
    ({"CONCURRENCY": "lots"}, "1 to 64"), ({"ACCOUNTS": "12"}, "12-digit"), ({"PUBLISH": "maybe"}, "PUBLISH"),
    ({"READ_NEPTUNE_ANALYTICS": "sometimes"}, "READ_NEPTUNE_ANALYTICS"),
])
def test_the_detector_refuses_a_bad_configuration_before_scanning(world, monkeypatch, environment, complaint):
    from neptune_guard.handlers import detector

    _, _, state = world
    before = state()
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(detector.ConfigurationError, match=complaint):
        detector.handler({"version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.events", "account": ACCOUNT,
                          "time": "2026-11-24T06:00:00Z", "region": REGION, "resources": [], "detail": {}}, LambdaContext())
    assert state() == before


@pytest.mark.parametrize("detail", [{}, {"findings": "all of them"}, {"findings": [None, 1, "x", [], {}]},
                                    {"findings": [{"GeneratorId": "neptune-guard/neptune_cluster_uses_cmk"}]},
                                    {"findings": [{"GeneratorId": "neptune-guard/nope", "Resources": [{}]}]}])
def test_the_trigger_skips_every_malformed_finding(world, monkeypatch, detail):
    from neptune_guard.handlers import trigger

    _, arns, state = world
    monkeypatch.setenv("CLUSTER_STATE_MACHINE_ARN", arns["cluster"])
    monkeypatch.setenv("SNAPSHOT_STATE_MACHINE_ARN", arns["snapshot"])
    monkeypatch.setenv("TARGET_KEY", "alias/neptune-cmk")
    before = state()
    event = {"version": "0", "id": "1", "detail-type": "Security Hub Findings - Custom Action", "source": "aws.securityhub",
             "account": "123456789012", "time": "2026-11-24T06:00:00Z", "region": REGION, "resources": [], "detail": detail}
    result = trigger.handler(event, LambdaContext())
    assert result["started"] == []
    assert state() == before


@pytest.mark.parametrize("event", [{}, {"step": "delete_retired"}, {"step": "nope", "execution": EXECUTION, "state": {"request": {}}},
                                   {"step": "plan", "execution": "x", "state": {"request": {}}},
                                   {"step": "plan", "execution": EXECUTION, "state": "x"},
                                   {"step": "plan", "execution": EXECUTION, "state": {"request": {}}, "extra": 1}])
def test_the_steps_function_refuses_what_its_state_machines_would_never_send(world, event):
    _, arns, state = world
    session = world[0]
    before = state()
    response = session.client("lambda", region_name=REGION).invoke(FunctionName=arns["steps_function"], Payload=json.dumps(event))
    answer = json.loads(response["Payload"].read())
    assert answer["errorType"] in ("InvalidStepEvent", "NotAuthorizedStep")
    assert state() == before


def test_a_malformed_response_in_one_region_is_that_units_error_only(world, monkeypatch):
    """As a proxy or a broken endpoint could answer: not XML at all, in one region."""
    original = rds_responses.RDSResponse.describe_db_clusters

    def garbage_in_eu(self):
        if self.region == "eu-west-1":
            return 200, {}, "<<<this is not a DescribeDBClusters response"
        return original(self)

    monkeypatch.setattr(rds_responses.RDSResponse, "describe_db_clusters", garbage_in_eu)
    result = scan(ScanOptions(accounts=ACCOUNT, regions=(REGION, "eu-west-1")))
    by_region = {unit.region: unit for unit in result.units}
    assert by_region[REGION].complete and by_region[REGION].evaluations
    assert not by_region["eu-west-1"].complete and "malformed" in by_region["eu-west-1"].errors[0].message


HANDLERS = {"approval": None, "change_scan": "InvalidEvent", "detector": "InvalidEvent", "execution_ended": "InvalidEvent",
            "execution_ended.delivered_late": "InvalidEvent", "scheduled_scan": "InvalidScanEvent", "sign_replicator": "InvalidEvent",
            "steps": "InvalidStepEvent", "trigger": "InvalidEvent"}
MALFORMED_EVENTS = [{}, [], None, "event", 7, {"detail": None}, {"Records": "x"}, {"Records": [{"body": 1}]},
                    {"RequestType": "Drop"},
                    {"requestContext": {}}, {"detail-type": "Scheduled Event", "source": "aws.events", "detail": []}]


@pytest.mark.parametrize("event", MALFORMED_EVENTS, ids=[repr(e)[:40] for e in MALFORMED_EVENTS])
@pytest.mark.parametrize("name", HANDLERS)
def test_every_handler_refuses_an_event_of_another_shape_in_one_line(local_aws, monkeypatch, name, event):
    import importlib

    monkeypatch.setenv("CLUSTER_STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:NeptuneGuardClusterRemediation")
    monkeypatch.setenv("APPROVER_PRINCIPALS", "arn:aws:sts::123456789012:assumed-role/NeptuneGuardOnCall/*")
    module, _, entry = name.partition(".")
    handler = getattr(importlib.import_module(f"neptune_guard.handlers.{module}"), entry or "handler")
    if HANDLERS[name] is None:  # the approval endpoint answers in HTTP: one 400 line
        answer = handler(event, LambdaContext())
        assert answer["statusCode"] == 400 and "\n" not in json.loads(answer["body"])["message"]
        return
    sfn = local_aws.client("stepfunctions")

    def executions():
        return [e["executionArn"] for m in sfn.list_state_machines()["stateMachines"]
                for e in sfn.list_executions(stateMachineArn=m["stateMachineArn"])["executions"]]

    before = executions()
    with pytest.raises(Exception) as refusal:
        handler(event, LambdaContext())
    assert type(refusal.value).__name__ == HANDLERS[name] and "\n" not in str(refusal.value), refusal.value
    assert executions() == before


@pytest.mark.parametrize("body", ["not json", "[]", '{"detail": {"executionArn": "x"}}', '{"detail": {}}',
                                  '{"detail": {"executionArn": "arn:aws:states:us-east-1:123456789012:execution:M:e\\n"}}'])
def test_a_late_delivery_whose_message_is_no_status_change_is_refused_in_one_line(local_aws, body):
    """The late release's queue takes only the rule's events; a message of anything else is refused (SQS delivers it
    again, then to the dead-letter queue that alarms), before anything is read or released."""
    from neptune_guard.handlers import execution_ended

    with pytest.raises(Exception) as refusal:
        execution_ended.delivered_late({"Records": [{"messageId": "1", "body": body}]}, LambdaContext())
    assert type(refusal.value).__name__ == "InvalidEvent" and "\n" not in str(refusal.value), refusal.value


def test_the_readmes_exit_status_table_is_the_code(capsys):
    import re
    from pathlib import Path

    from neptune_guard import cli

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = dict(re.findall(r"^\| ([0-9]) \| (.+?) \|$", readme.split("## Exit status", 1)[1], re.M))
    assert table == {str(cli.EXIT_OK): "done", str(cli.EXIT_NOTHING_SCANNED): "nothing scanned, or the approval endpoint failed",
                     str(cli.EXIT_USAGE): "bad usage, bad input or a refused request",
                     str(cli.EXIT_CREDENTIALS): "no usable AWS credentials or configuration", str(cli.EXIT_AWS): "an AWS service error"}
    assert cli.EXIT_FAILED == cli.EXIT_NOTHING_SCANNED
    assert all(f"{code} {meaning}" in cli.EXIT_CODES for code, meaning in table.items())  # what --help says


def test_without_credentials_every_command_that_needs_them_exits_3(monkeypatch, tmp_path, capsys):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for argv in (["approve", EXECUTION, "--stage", "snapshot", "--approval-url", "http://127.0.0.1:9/"],
                 ["reject", EXECUTION, "--reason", "no", "--approval-url", "http://127.0.0.1:9/"],
                 ["remediate", "--state-machine-arn", EXECUTION.replace("execution", "stateMachine").rsplit(":", 1)[0], *TARGET,
                  "--cluster", "orders", "--approval-url", "http://127.0.0.1:9/"]):
        code, output = run_cli(argv, capsys)
        assert code == 3 and output.count("\n") == 1 and "credentials" in output, (argv, output)


@pytest.mark.parametrize("execution", ["x", "arn:aws:states:us-east-1:123456789012:execution:NeptuneGuardClusterRemediation:a\n",
                                       "arn:aws:states:us-east-1:１２３456789012:execution:NeptuneGuardClusterRemediation:a",
                                       "arn:aws:states:us-east-1:123456789012:stateMachine:NeptuneGuardClusterRemediation", 7])
def test_an_execution_status_change_naming_no_execution_is_refused_in_one_line(local_aws, execution):
    """The end-of-execution release reads the execution from Step Functions: a value that names none never gets there."""
    from neptune_guard.handlers import execution_ended

    event = {"detail-type": "Step Functions Execution Status Change", "source": "aws.states", "detail": {"executionArn": execution}}
    with pytest.raises(Exception) as refusal:
        execution_ended.handler(event, LambdaContext())
    assert type(refusal.value).__name__ == "InvalidEvent" and "\n" not in str(refusal.value), refusal.value
