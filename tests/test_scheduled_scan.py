"""The scheduled scan at Organization scale: the real ASL (a Distributed Map over the accounts) in the local
interpreter, its function dispatched in-process, the account list and the items' results in S3."""

import pytest

from sandbox.demo import workflows
from tests.conftest import ORG, LambdaContext, final_state, findings, member_session

MEMBERS = ("111111111111", "222222222222")
MANAGEMENT = "123456789012"


@pytest.fixture
def scheduled_scan(seeded, monkeypatch):
    """Seed ORG and deploy the scheduled scan with `environment`; returns (session, sfn, run(), deployed)."""
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "NeptuneGuard")

    def _deploy(**environment):
        session = seeded(ORG)
        deployed = workflows.deploy_scheduled_scan(session, environment={"REGIONS": "us-east-1,eu-west-1", **environment})
        sfn = session.client("stepfunctions", region_name="us-east-1")

        def run(name="daily-1"):
            arn = sfn.start_execution(stateMachineArn=deployed["state_machine"], name=name, input="{}")["executionArn"]
            description = workflows.wait_for(sfn, arn, lambda d, h: False, timeout=120)
            return description, final_state(sfn, arn)["coverage"]

        return session, sfn, run, deployed

    return _deploy


def test_every_account_is_scanned_in_its_own_item_and_published(scheduled_scan):
    session, _, run, deployed = scheduled_scan(MINIMUM_COVERAGE="0.3")
    description, coverage = run()

    assert description["status"] == "SUCCEEDED", description
    # Every account-region is read in full and published wherever Security Hub is on. It is off in the management
    # account and in 222222222222's eu-west-1: the account-regions' own setting, reported apart, not a gap.
    assert coverage["accounts_listed"] == 3 and coverage["accounts_covered"] == 3, coverage
    assert coverage["account_regions_scanned"] == 6 and coverage["account_regions_without_security_hub"] == 3, coverage
    assert coverage["account_regions_unpublished"] == 0 and coverage["account_regions_partly_read"] == 0
    assert coverage["items_failed"] == 0 and coverage["findings_failed"] > 0 and coverage["met"] is True
    for account in MEMBERS:
        assert findings(session, account, "us-east-1"), account  # each item published through its account's audit role
    s3 = session.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=deployed["bucket"], Prefix="runs/daily-1/")["Contents"]]
    assert "runs/daily-1/accounts.json" in keys and any(k.endswith("/SUCCEEDED_0.json") for k in keys), keys


def test_an_account_that_refuses_its_role_is_reported_and_the_run_fails_below_the_minimum_coverage(scheduled_scan):
    session, sfn, run, _ = scheduled_scan(MINIMUM_COVERAGE="1")
    iam = member_session(session, "222222222222").client("iam")
    for policy in iam.list_role_policies(RoleName="NeptuneGuardAudit")["PolicyNames"]:
        iam.delete_role_policy(RoleName="NeptuneGuardAudit", PolicyName=policy)
    for policy in iam.list_attached_role_policies(RoleName="NeptuneGuardAudit")["AttachedPolicies"]:
        iam.detach_role_policy(RoleName="NeptuneGuardAudit", PolicyArn=policy["PolicyArn"])
    iam.delete_role(RoleName="NeptuneGuardAudit")

    description, coverage = run()

    assert description["status"] == "FAILED"
    history = sfn.get_execution_history(
        executionArn=description["executionArn"], maxResults=1000, reverseOrder=True)["events"]
    failed = next(e for e in history if e["type"] == "ExecutionFailed")["executionFailedEventDetails"]
    assert failed["error"] == "NeptuneGuard.CoverageBelowMinimum"
    assert coverage["accounts_unreached"] == ["222222222222"] and coverage["accounts_covered"] == 2
    assert findings(session, "111111111111", "us-east-1")  # the others were scanned and published all the same


def test_an_item_that_crashes_is_counted_against_coverage_not_hidden(scheduled_scan, monkeypatch):
    from neptune_guard.handlers import scheduled_scan as handler_module

    original = handler_module.scan

    def crash_for_one(options, session=None, on_unit_done=None):
        if options.accounts == "111111111111":
            raise MemoryError("the function ran out of memory")
        return original(options, session=session, on_unit_done=on_unit_done)

    monkeypatch.setattr(handler_module, "scan", crash_for_one)
    session, _, run, _ = scheduled_scan(MINIMUM_COVERAGE="0")
    description, coverage = run()

    assert description["status"] == "SUCCEEDED"  # no minimum: the failure is reported, not fatal
    assert coverage["items_failed"] == 1 and coverage["accounts_unreached"] == ["111111111111"]
    assert findings(session, "222222222222", "us-east-1")


@pytest.mark.parametrize("event", [
    {}, {"step": "scan_account"}, {"step": "scan_account", "account_id": "12"}, {"step": "scan_account", "account_id": "1" * 12, "x": 1},
    {"step": "list_accounts", "run": "../../etc"}, {"step": "summarize", "accounts_key": "elsewhere/accounts.json", "manifest_key": None},
    {"step": "summarize", "accounts_key": "runs/a/accounts.json", "manifest_key": "s3://other/manifest.json"}, {"step": "delete_everything"},
])
def test_the_scan_function_refuses_an_event_its_state_machine_does_not_send(local_aws, monkeypatch, event):
    from neptune_guard.handlers import scheduled_scan as handler_module

    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    with pytest.raises(handler_module.InvalidScanEvent, match="^not a Neptune Guard scheduled-scan event"):
        handler_module.handler(event, LambdaContext())


def test_a_bad_minimum_coverage_is_refused_before_anything_is_read(local_aws, monkeypatch):
    from neptune_guard.handlers import scheduled_scan as handler_module
    from neptune_guard.options import ConfigurationError

    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.setenv("RUNS_BUCKET", "nowhere")
    monkeypatch.setenv("MINIMUM_COVERAGE", "95%")
    with pytest.raises(ConfigurationError, match="MINIMUM_COVERAGE"):
        handler_module.handler({"step": "summarize", "accounts_key": "runs/a/accounts.json", "manifest_key": None}, LambdaContext())


def test_a_map_that_fails_fails_the_run_whatever_the_minimum(scheduled_scan, monkeypatch):
    from sandbox.aws import moto_fixes

    def unreadable(*args, **kwargs):
        raise RuntimeError("the ItemReader could not read the account list")

    session, sfn, run, _ = scheduled_scan(MINIMUM_COVERAGE="0")
    monkeypatch.setattr(moto_fixes.distributed_iteration_component.DistributedIterationComponent, "_map_run", unreadable)
    description, coverage = run()

    assert description["status"] == "FAILED" and coverage["map_failed"] is True and coverage["met"] is False


def test_an_account_is_covered_only_if_every_resource_type_was_read_and_published_where_security_hub_is_on():
    from neptune_guard.detect import fanout
    from neptune_guard.models import ScanError, ScanResult, UnitResult

    def outcome(**unit_faults):
        unit = UnitResult("111111111111", "us-east-1")
        for name, message in unit_faults.items():
            getattr(unit, name).append(ScanError("111111111111", "us-east-1", message))
        return fanout.account_outcome("111111111111", ScanResult(units=[unit, UnitResult("111111111111", "eu-west-1")]))

    assert outcome().covered
    hub_off = outcome(publish_errors="Security Hub is not enabled: InvalidAccessException")
    assert hub_off.covered and hub_off.without_security_hub == 1 and hub_off.unpublished == 0
    refused = outcome(publish_errors="publishing failed: AccessDeniedException")
    assert not refused.covered and refused.unpublished == 1
    graphs_denied = outcome(partial_errors="Neptune Analytics: AccessDeniedException (ListGraphs)")
    assert not graphs_denied.covered and graphs_denied.partly_read == 1 and graphs_denied.scanned == 2
