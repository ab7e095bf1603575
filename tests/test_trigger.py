"""The Security Hub custom action trigger, with the event Security Hub sends to EventBridge."""

import json

import pytest

from neptune_guard.scanner import ScanOptions, scan
from tests.conftest import custom_action_event, member_session
from tests.conftest import LambdaContext as Context

ACCOUNT, REGION = "111111111111", "us-east-1"
SCENARIO = {
    "accounts": {
        ACCOUNT: {
            REGION: {
                "keys": {"neptune-cmk": {"state": "Enabled"}, "off": {"state": "Disabled"}},
                "clusters": {"plain": {"encryption": "none"}, "good": {"encryption": "neptune-cmk"},
                             "locked": {"encryption": "off"}},
                "snapshots": {"plain-snap": "plain"},
            }
        }
    }
}


@pytest.fixture
def setup(deploy_workflows, monkeypatch):
    session, _, arns = deploy_workflows(SCENARIO)
    monkeypatch.setenv("CLUSTER_STATE_MACHINE_ARN", arns["cluster"])
    monkeypatch.setenv("SNAPSHOT_STATE_MACHINE_ARN", arns["snapshot"])
    monkeypatch.setenv("TARGET_KEY", "alias/neptune-cmk")
    scan(ScanOptions(accounts=ACCOUNT, regions=(REGION,), publish=True))
    return session, member_session(session, ACCOUNT).client("securityhub", region_name=REGION), arns


def by_title(hub, text, check):
    return next(f for f in hub.get_findings()["Findings"] if text in f["Title"] and f["GeneratorId"].endswith(check))


def test_only_failed_active_findings_of_this_tool_start_workflows_once(setup):
    from neptune_guard.handlers import trigger

    session, hub, arns = setup
    cluster = by_title(hub, "(cluster plain)", "neptune_cluster_uses_cmk")
    snapshot = by_title(hub, "(cluster snapshot plain-snap)", "neptune_cluster_snapshot_uses_cmk")
    passed = by_title(hub, "(cluster good)", "neptune_cluster_uses_cmk")
    key_state = by_title(hub, "(cluster locked)", "neptune_cluster_cmk_enabled")
    foreign = {**cluster, "Id": "other/1", "GeneratorId": "aws-foundational/Neptune.1"}
    event = custom_action_event([cluster, snapshot, passed, key_state, foreign])

    result = trigger.handler(event, Context())
    again = trigger.handler(event, Context())

    assert [s["finding"] for s in result["started"]] == [cluster["Id"], snapshot["Id"]]
    assert {s["finding"] for s in result["skipped"]} == {passed["Id"], key_state["Id"], "other/1"}
    assert [s["execution_arn"] for s in again["started"]] == [s["execution_arn"] for s in result["started"]]
    sfn = session.client("stepfunctions", region_name=REGION)
    assert len(sfn.list_executions(stateMachineArn=arns["cluster"])["executions"]) == 1
    assert len(sfn.list_executions(stateMachineArn=arns["snapshot"])["executions"]) == 1
    started_by = json.loads(sfn.describe_execution(executionArn=result["started"][0]["execution_arn"])["input"])["requested_by"]
    assert started_by == session.client("sts").get_caller_identity()["Arn"]  # the trigger records itself as the requester
    # Said on the finding through the tool's own product (an import: no role may change another product's findings),
    # and kept by the next scan's import.
    noted = by_title(hub, "(cluster plain)", "neptune_cluster_uses_cmk")["ProductFields"]
    assert noted["neptune-guard/RemediationExecution"] == result["started"][0]["execution_arn"]
    assert noted["neptune-guard/RemediationStatus"].startswith("requested") and "not_noted" not in result["started"][0]
    scan(ScanOptions(accounts=ACCOUNT, regions=(REGION,), publish=True))
    assert by_title(hub, "(cluster plain)", "neptune_cluster_uses_cmk")["ProductFields"]["neptune-guard/RemediationExecution"] == \
        result["started"][0]["execution_arn"]


def test_a_forged_or_stale_finding_never_starts_a_remediation(setup):
    """Findings are evidence, not orders: a member role that may only import findings cannot re-key a cluster."""
    from neptune_guard.handlers import trigger

    session, hub, arns = setup
    genuine = by_title(hub, "(cluster plain)", "neptune_cluster_uses_cmk")
    compliant = by_title(hub, "(cluster good)", "neptune_cluster_uses_cmk")
    good_arn = compliant["Resources"][0]["Id"]
    # the ARN names one cluster, the details another, compliant one
    mismatched = {**genuine, "Id": "forged/1", "Resources": [{**genuine["Resources"][0], "Id": good_arn}]}
    # a self-consistent finding that says FAILED about a cluster that is compliant (on its team's CMK)
    lying = {**compliant, "Id": "forged/2", "Compliance": {"Status": "FAILED"}, "RecordState": "ACTIVE"}
    other_product = {**genuine, "Id": "forged/3", "ProductArn": f"arn:aws:securityhub:{REGION}::product/aws/guardduty"}
    other_account = {**genuine, "Id": "forged/4", "AwsAccountId": "222222222222"}
    malformed = [{"Id": "forged/5"}, "not a finding", {**genuine, "Id": "forged/6", "Resources": "x"}]
    event = custom_action_event([mismatched, lying, other_product, other_account, *malformed, genuine])

    result = trigger.handler(event, Context())

    assert [s["finding"] for s in result["started"]] == [genuine["Id"]]  # the others did not stop it
    reasons = {s["finding"]: s["reason"] for s in result["skipped"]}
    assert "do not agree" in reasons["forged/1"]
    assert "does not fail neptune_cluster_uses_cmk now" in reasons["forged/2"]
    assert "is not Neptune Guard's" in reasons["forged/3"]
    assert len(result["skipped"]) == 7
    sfn = session.client("stepfunctions", region_name=REGION)
    started = [json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"])
               for e in sfn.list_executions(stateMachineArn=arns["cluster"])["executions"]]
    assert [request["cluster_id"] for request in started] == ["plain"]


def test_the_remediation_says_on_its_finding_that_it_is_done_and_the_next_scan_finds_it_passed(setup):
    """Through the tool's own product, as the trigger's note: no role may call BatchUpdateFindings (any product's)."""
    import time

    from neptune_guard.handlers import trigger
    from tests.conftest import decide

    session, hub, arns = setup
    sfn = session.client("stepfunctions", region_name=REGION)
    started = trigger.handler(custom_action_event([by_title(hub, "(cluster plain)", "neptune_cluster_uses_cmk")]), Context())
    execution = started["started"][0]["execution_arn"]
    for stage in ("snapshot", "cutover"):
        decide(sfn, execution, stage)
    deadline = time.monotonic() + 120
    while not by_title(hub, "(cluster plain)", "neptune_cluster_uses_cmk")["ProductFields"]["neptune-guard/RemediationStatus"].startswith(
            "remediated") and time.monotonic() < deadline:
        time.sleep(0.2)
    sfn.stop_execution(executionArn=execution)  # in its soak, for days: what follows is the scan's
    noted = by_title(hub, "(cluster plain)", "neptune_cluster_uses_cmk")
    assert noted["ProductFields"]["neptune-guard/RemediationStatus"].startswith("remediated") and "alice" in \
        noted["ProductFields"]["neptune-guard/RemediationStatus"]
    assert noted["Workflow"]["Status"] == "NEW" and "Note" not in noted  # nothing set that belongs to the customer's triage
    scan(ScanOptions(accounts=ACCOUNT, regions=(REGION,), publish=True))
    after = by_title(hub, "(cluster plain)", "neptune_cluster_uses_cmk")
    assert after["Compliance"]["Status"] == "PASSED" and after["ProductFields"]["neptune-guard/RemediationExecution"] == execution


def test_a_remediation_that_ends_without_remediating_no_longer_says_it_waits_for_on_call(setup):
    """Review: only the trigger and the remediated step wrote the note, so a rejected, rolled-back or stopped execution
    left "requested" on its finding for good. Its end notes it, while the finding still says so: a later execution's
    note, or this one's "remediated", is left alone."""
    from neptune_guard.handlers import execution_ended, trigger
    from tests.conftest import decide, finish, status_change

    session, hub, arns = setup
    sfn = session.client("stepfunctions", region_name=REGION)
    started = trigger.handler(custom_action_event([by_title(hub, "(cluster plain)", "neptune_cluster_uses_cmk")]), Context())
    rejected = started["started"][0]["execution_arn"]
    decide(sfn, rejected, "snapshot", approved=False, reason="not now")
    assert finish(sfn, rejected)["status"] == "FAILED"
    assert execution_ended.handler(status_change(rejected, "FAILED"), Context())["finding"] == "noted"
    scan(ScanOptions(accounts=ACCOUNT, regions=(REGION,), publish=True))
    fields = by_title(hub, "(cluster plain)", "neptune_cluster_uses_cmk")["ProductFields"]
    assert fields["neptune-guard/RemediationExecution"] == rejected and fields["neptune-guard/RemediationStatus"].startswith("ended failed")

    again = trigger.handler(custom_action_event([by_title(hub, "(cluster plain)", "neptune_cluster_uses_cmk")]), Context())
    later = again["started"][0]["execution_arn"]
    assert later != rejected
    assert "left alone" in execution_ended.handler(status_change(rejected, "FAILED"), Context())["finding"]  # delivered late
    fields = by_title(hub, "(cluster plain)", "neptune_cluster_uses_cmk")["ProductFields"]
    assert fields["neptune-guard/RemediationExecution"] == later and fields["neptune-guard/RemediationStatus"].startswith("requested")


def test_an_sts_fault_while_noting_loses_neither_the_started_execution_nor_the_other_findings(setup, monkeypatch):
    """Review: the note's role was assumed outside its `try`, so a throttled AssumeRole after the first start escaped
    the trigger and the batch's other findings were never handled."""
    from botocore.exceptions import ClientError

    from neptune_guard.approve import trigger as trigger_module
    from neptune_guard.handlers import trigger

    _, hub, _ = setup
    real, calls = trigger_module.access_session, []

    def flaky(config, *args, **kwargs):
        if config.access_role_name == config.findings_role_name:
            calls.append(1)
            if len(calls) == 1:
                raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "AssumeRole")
        return real(config, *args, **kwargs)

    monkeypatch.setattr(trigger_module, "access_session", flaky)
    event = custom_action_event([by_title(hub, "(cluster plain)", "neptune_cluster_uses_cmk"),
                                 by_title(hub, "(cluster snapshot plain-snap)", "neptune_cluster_snapshot_uses_cmk")])
    result = trigger.handler(event, Context())
    assert len(result["started"]) == 2 and not result["skipped"], result
    assert "Throttling" in result["started"][0]["not_noted"] and "not_noted" not in result["started"][1]
