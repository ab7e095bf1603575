"""On-call through the real CLI against the local AWS: find what waits (`pending`), read one execution (`status`),
approve with --stage and --reason, reject; and the notification on-call reads (subject, body, Chatbot JSON), whose
commands must paste into bash as they are."""

import json
import shlex
import subprocess

import pytest

from neptune_guard.cli import build_parser, main
from neptune_guard.remediate import notifications
from sandbox.demo import workflows
from sandbox.demo.on_call import Engineer
from tests.conftest import awaiting

ACCOUNT, REGION = "111111111111", "us-east-1"
SCENARIO = {"accounts": {ACCOUNT: {REGION: {
    "keys": {"neptune-cmk": {"state": "Enabled"}},
    "clusters": {"orders": {"encryption": "none", "instances": {"orders-1": "db.r6g.large"}}},
}}}}
REQUEST = {"account_id": ACCOUNT, "region": REGION, "cluster_id": "orders", "target_key": "alias/neptune-cmk",
           "soak_seconds": 0, "metrics_settle_seconds": 0}
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:NeptuneGuardClusterRemediation:orders-111111111111-abc"
SNAPSHOT_EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:NeptuneGuardSnapshotRemediation:snap-1"


def as_engineer(monkeypatch, engineer: Engineer, approval_url: str) -> None:
    """The CLI as this person runs it: their own credentials in the environment, the endpoint's URL in its variable."""
    credentials = engineer.session.get_credentials().get_frozen_credentials()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials.secret_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", credentials.token)
    monkeypatch.setenv("NEPTUNE_GUARD_APPROVAL_URL", approval_url)


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    # The approval handler runs in-process here, and its Powertools logger writes one-line JSON to stdout: keep the CLI's.
    out = "".join(line for line in captured.out.splitlines(keepends=True) if not line.startswith('{"level":'))
    return code, out, captured.err


def test_find_read_approve_and_reject_with_the_commands(deploy_workflows, monkeypatch, capsys):
    session, sfn, arns = deploy_workflows(SCENARIO)
    alice, bob = Engineer(session, "alice", arns["approval_url"]), Engineer(session, "bob", arns["approval_url"])
    execution = alice.start(arns["cluster"], REQUEST)
    awaiting(sfn, execution, "snapshot")
    as_engineer(monkeypatch, bob, arns["approval_url"])

    code, out, _ = run(capsys, "pending", "--output", "json")
    waiting = json.loads(out)
    assert code == 0 and [(p["stage"], p["resource"], p["account_id"], p["region"], p["requested_by"]) for p in waiting] == [
        ("snapshot", "orders", ACCOUNT, REGION, alice.arn)]
    assert waiting[0]["deadline"] > waiting[0]["asked_at"]
    code, out, _ = run(capsys, "pending")
    assert code == 0 and "snapshot" in out and "cluster orders" in out and "alice" in out and execution in out

    code, out, _ = run(capsys, "status", execution, "--output", "json")
    status = json.loads(out)
    assert code == 0 and status["status"] == "RUNNING" and status["waiting_for"]["stage"] == "snapshot"
    assert status["serving"].startswith("orders: the original") and status["retained"] == []

    # Without --stage, an approval could answer whatever the execution waits for by then: refused before any call.
    code, out, err = run(capsys, "approve", execution)
    assert code == 2 and "--stage" in err and "snapshot, cutover, decommission" in err
    assert awaiting(sfn, execution, "snapshot")["status"] == "RUNNING"
    # The endpoint refuses an approval of a stage the execution does not wait for.
    code, out, err = run(capsys, "approve", execution, "--stage", "cutover")
    assert code == 2 and "waits for the snapshot approval" in err

    code, out, _ = run(capsys, "approve", execution, "--stage", "snapshot", "--reason", "writes stopped at 03:10, ticket OPS-1")
    answer = json.loads(out)
    assert code == 0 and (answer["approved"], answer["stage"], answer["approver"]) == (True, "snapshot", bob.arn)
    assert answer["reason"] == "writes stopped at 03:10, ticket OPS-1"

    awaiting(sfn, execution, "cutover")
    code, out, _ = run(capsys, "status", execution)
    assert code == 0 and "waiting_for:" in out and "cutover" in out
    assert "orders-" in out and "not serving yet" in out  # the new cluster is retained until the cutover
    assert f"neptune-guard approve {execution} --stage cutover" in out

    code, out, _ = run(capsys, "reject", execution, "--stage", "cutover", "--reason", "the application team is not ready")
    assert code == 0 and json.loads(out)["approved"] is False
    workflows.wait_for(sfn, execution, lambda description, history: False)
    code, out, _ = run(capsys, "status", execution, "--output", "json")
    status = json.loads(out)
    assert status["status"] == "FAILED" and status["serving"] == "orders: the original (rolled back)"
    code, out, _ = run(capsys, "pending", "--output", "json")
    assert json.loads(out) == []


def test_approve_names_the_stage_in_both_workflows_and_only_one_they_ask():
    from neptune_guard.cli import approval_request

    args = build_parser().parse_args(["approve", SNAPSHOT_EXECUTION])
    with pytest.raises(Exception, match="approve needs --stage.*re-encrypt, delete-original"):
        approval_request(args)
    args = build_parser().parse_args(["approve", SNAPSHOT_EXECUTION, "--stage", "re-encrypt"])
    assert approval_request(args)["stage"] == "re-encrypt"
    args = build_parser().parse_args(["approve", SNAPSHOT_EXECUTION, "--stage", "cutover"])
    with pytest.raises(Exception, match="no cutover approval"):
        approval_request(args)


def test_the_status_of_an_unknown_execution_is_a_usage_error(local_aws, capsys):
    code, _, err = run(capsys, "status", EXECUTION)
    assert code == 2 and "no execution" in err


@pytest.mark.parametrize("writes", [False, True])
def test_the_notification_is_short_names_where_and_its_commands_paste(writes):
    question = "Approve cutover: orders-cmk-1 takes the name orders; the original becomes orders-retired-1, it's kept."
    request = {"account_id": ACCOUNT, "region": "ap-southeast-3", "cluster_id": "orders",
               "requested_by": "arn:aws:sts::123456789012:assumed-role/NeptuneGuardOnCall/alice"}
    note = notifications.approval(EXECUTION, "cutover", request, question, "2026-12-04T03:00:00+00:00", writes, {"plan": {"x": 1}})

    assert len(note.subject) < 100 and note.subject.isascii()
    assert all(word in note.subject for word in ("cutover", "orders", ACCOUNT, "ap-southeast-3"))
    assert len(note.text) < 1200 and len(note.text.splitlines()) < 16
    pasted = [line.split(":", 1)[1].strip() for line in note.text.splitlines() if line.startswith(("Approve:", "Reject:", "Status:"))]
    assert len(pasted) == 3
    for line in pasted:
        # bash parses it, and the words it passes are a command the CLI takes.
        assert subprocess.run(["bash", "-n", "-c", line], capture_output=True).returncode == 0, line
        words = shlex.split(line)
        assert words[0] == "neptune-guard"
        build_parser().parse_args(words[1:])
    approve = shlex.split(pasted[0])
    assert approve[1:5] == ["approve", EXECUTION, "--stage", "cutover"] and ("--accept-write-loss" in approve) is writes
    reject = build_parser().parse_args(shlex.split(pasted[1])[1:])
    assert (reject.stage, reject.reason) == ("cutover", "<why>")

    chat = note.chatbot
    assert (chat["version"], chat["source"]) == ("1.0", "custom")
    assert set(chat["content"]) >= {"textType", "title", "description", "nextSteps"} and "orders" in chat["content"]["title"]
    assert any(pasted[0] in step for step in chat["content"]["nextSteps"])
    arguments = note.sns_arguments("arn:aws:sns:us-east-1:123456789012:on-call")
    message = json.loads(arguments["Message"])
    assert arguments["MessageStructure"] == "json" and json.loads(message["default"]) == chat and message["email"] == note.text
    detail = json.loads(arguments["MessageAttributes"]["neptune_guard_detail"]["StringValue"])
    assert detail["plan"] == {"x": 1} and detail["stage"] == "cutover"


def test_a_long_identifier_is_shortened_never_the_stage_account_or_region():
    note = notifications.approval(EXECUTION, "decommission", {"account_id": ACCOUNT, "region": "ap-southeast-3", "snapshot_id": "s" * 255},
                                  "q", None)
    assert len(note.subject) < 100 and note.subject.endswith(f"... in {ACCOUNT} ap-southeast-3") and "decommission" in note.subject


def test_quotes_in_identifiers_still_paste():
    # Execution names are [\w-], but the quoting must not depend on it.
    tricky = EXECUTION + "'$(touch /tmp/x)"
    line = notifications.answer_commands(tricky, "snapshot")["reject"]
    assert shlex.split(line)[2] == tricky
    assert subprocess.run(["bash", "-n", "-c", line], capture_output=True).returncode == 0
