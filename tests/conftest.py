import contextlib
import json
from dataclasses import dataclass

import boto3
import pytest

from neptune_guard.approve import approvals
from neptune_guard.remediate import replicator_package
from sandbox.aws import moto_fixes
from sandbox.demo import workflows
from sandbox.demo.workflows import final_state  # noqa: F401  (the workflow tests import it from here)
from sandbox.demo.organization import scenario_regions, seed

REGIONS = ("us-east-1", "eu-west-1")
EXAMPLE_ORGANIZATION = "o-exampleorgid"  # cdk.json leaves organizationId empty: synth refuses to guess it


def local_environment(patch: pytest.MonkeyPatch) -> None:
    """No test ever reaches real AWS: fake credentials, a fixed region, no endpoint override; and no deployment's
    replicator package left in the process by a function of an earlier test's local AWS (the in-process Lambda
    runtime leaves a function's environment applied)."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                 replicator_package.PACKAGE_ENVIRONMENT, replicator_package.PROFILE_ENVIRONMENT):
        patch.delenv(name, raising=False)
    patch.setenv("AWS_ACCESS_KEY_ID", "testing")
    patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    moto_fixes.apply()


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch):
    local_environment(monkeypatch)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory):
    """(security stack template, member roles template), synthesized once from cdk.json's context."""
    from pathlib import Path

    from aws_cdk import App
    from aws_cdk.assertions import Template

    from stacks.app import build

    context = {**json.loads((Path(__file__).resolve().parent.parent / "cdk.json").read_text())["context"],
               "neptune-guard:organizationId": EXAMPLE_ORGANIZATION}
    security, members = build(App(context=context, outdir=str(tmp_path_factory.mktemp("cdk.out"))))
    return Template.from_stack(security).to_json(), Template.from_stack(members).to_json()


@pytest.fixture
def local_aws():
    from moto import mock_aws

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield boto3.Session(region_name="us-east-1")


@pytest.fixture
def seeded(local_aws):
    """Seed a scenario (the demo's format) and return the session of the management account."""

    def _seed(scenario: dict):
        seed(scenario, local_aws)
        return local_aws

    return _seed


@contextlib.contextmanager
def deployments(session: boto3.Session):
    """deploy(scenario) -> (session, sfn, ARNs): the scenario seeded, the real state machines and the approval endpoint
    deployed into the local AWS; ARNs["approval_url"] is the endpoint's function URL, served on loopback. Executions
    left running are stopped on the way out, so that none outlives its local AWS."""
    from sandbox.aws import function_urls
    from sandbox.demo import workflows

    deployed = []
    with workflows.fast_clock(), contextlib.ExitStack() as servers:
        def _deploy(scenario: dict):
            seed(scenario, session)
            arns = workflows.deploy(session, member_regions=scenario_regions(scenario))
            arns["approval_url"] = servers.enter_context(function_urls.serve(session, arns["approval_function"])).url
            sfn = session.client("stepfunctions", region_name="us-east-1")
            deployed.append((sfn, arns))
            return session, sfn, arns

        yield _deploy
        for sfn, arns in deployed:
            workflows.stop_running(sfn, [arns["cluster"], arns["snapshot"]])


@pytest.fixture
def deploy_workflows(local_aws, monkeypatch):
    """A test's own local AWS with scenarios deployed into it (`deployments`)."""
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    with deployments(local_aws) as deploy:
        yield deploy


@contextlib.contextmanager
def module_local_aws():
    """One local AWS for a whole module whose tests only read it (each checks it is left as it was): the
    environment the autouse fixture gives each test, set before the module's first test."""
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as patch:
        local_environment(patch)
        patch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
        with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
            yield boto3.Session(region_name="us-east-1")


@pytest.fixture
def on_call(deployed):
    """Two on-call engineers of the module's `deployed` workflows: alice starts executions through the approval
    endpoint, bob approves them (the endpoint refuses the starter's own approval)."""
    from sandbox.demo.on_call import Engineer

    session, _, arns = deployed
    return Engineer(session, "alice", arns["approval_url"]), Engineer(session, "bob", arns["approval_url"])


def member_session(session, account_id: str) -> boto3.Session:
    from neptune_guard import aws

    return aws.assume_role(session, account_id, "OrganizationAccountAccessRole", "us-east-1", "test")


@pytest.fixture
def fail(monkeypatch):
    """Make one local AWS RDS operation fail, as AWS can at any step: fail(method, when=lambda *args: ..., times=N)
    (`times`: how many matching calls fail; None for every one)."""
    from moto.rds import exceptions as rds_exceptions
    from moto.rds import models as rds_models

    def _fail(method: str, when=lambda *args, **kwargs: True, times: int | None = None):
        original = getattr(rds_models.RDSBackend, method)
        failed = []

        def failing(self, *args, **kwargs):
            if when(*args, **kwargs) and (times is None or len(failed) < times):
                failed.append(method)
                raise rds_exceptions.RDSClientError("InternalFailure", f"injected fault in {method}")
            return original(self, *args, **kwargs)

        monkeypatch.setattr(rds_models.RDSBackend, method, failing)

    return _fail


# Driving a remediation execution as on-call would (shared by the workflow tests).


HISTORY_PAGE = 1000  # what workflows.wait_for reads of the history


def awaiting(sfn, execution_arn, stage="snapshot", timeout: float = 300.0):
    def until(description, history):
        try:
            if len(history) < HISTORY_PAGE:  # the whole history: no need to read it again
                return approvals.pending_in(history, execution_arn)["stage"] == stage
            return approvals.pending_approval(sfn, execution_arn)["stage"] == stage
        except approvals.NoPendingApproval:
            return False
    return workflows.wait_for(sfn, execution_arn, until, timeout)


def decide(sfn, execution_arn, stage, **decision):
    """Answer the approval the execution waits on, as the approval endpoint does once it has checked who asks."""
    waiting = awaiting(sfn, execution_arn, stage)
    assert waiting["status"] == "RUNNING", f"ended before {stage}: {final_state(sfn, execution_arn).get('error')}"
    pending = approvals.pending_approval(sfn, execution_arn)
    if decision.get("approved", True):
        started_with = json.loads(sfn.describe_execution(executionArn=execution_arn)["input"])
        approvals.write_marks(boto3.Session(region_name=started_with["region"]), stage, execution_arn, started_with, pending["plan"] or {})
    sfn.send_task_success(taskToken=pending["token"], output=json.dumps(
        {"approved": True, "stage": stage, "approver": "arn:aws:sts::123456789012:assumed-role/OnCall/alice", **decision}))
    return pending


def finish(sfn, execution_arn):
    return workflows.wait_for(sfn, execution_arn, lambda d, h: False)


# Scenarios and helpers shared by several test modules.

ORG = {
    "accounts": {
        "111111111111": {
            "us-east-1": {
                "keys": {"cmk": {"state": "Enabled"}},
                "clusters": {"plain": {"encryption": "none"}, "good": {"encryption": "cmk"}},
                "snapshots": {"plain-snap": "plain"},
            },
            "eu-west-1": {"clusters": {"default-key": {"encryption": "aws-managed"}}},
        },
        "222222222222": {
            "us-east-1": {"keys": {"off": {"state": "Disabled"}},
                          "clusters": {"other": {"encryption": "none"}, "locked": {"encryption": "off"}}},
            "eu-west-1": {"security_hub": False, "clusters": {"unwatched": {"encryption": "none"}}},
        },
    }
}


TWO_ACCOUNTS = {
    "accounts": {
        "111111111111": {
            "us-east-1": {
                "keys": {"cmk": {"state": "Enabled"}},
                "clusters": {
                    "plain": {"encryption": "none"},
                    "default-key": {"encryption": "aws-managed"},
                    "good": {"encryption": "cmk"},
                },
                "snapshots": {"plain-snap": "plain", "default-snap": "default-key", "good-snap": "good"},
                "other_engines": {"aurora-db": "aurora-postgresql"},
            },
            "eu-west-1": {"keys": {"leaving": {"state": "PendingDeletion"}}, "clusters": {"doomed": {"encryption": "leaving"}}},
        },
        "222222222222": {
            "us-east-1": {
                "keys": {"off": {"state": "Disabled"}},
                "clusters": {
                    "locked": {"encryption": "off"},
                    "borrowed": {"encryption": "arn:aws:kms:us-east-1:111111111111:alias/cmk"},
                },
            },
            "eu-west-1": {"clusters": {"eu-plain": {"encryption": "none"}}},
        },
    }
}


def findings(session, account_id, region, **filters):
    securityhub = member_session(session, account_id).client("securityhub", region_name=region)
    conditions = {name: [{"Value": value, "Comparison": "EQUALS"}] for name, value in filters.items()}
    pages = securityhub.get_paginator("get_findings").paginate(Filters=conditions)
    return {f["Id"]: f for page in pages for f in page["Findings"]}


def status_change(execution: str, status: str) -> dict:
    """What Step Functions sends EventBridge when an execution ends (or what anyone could send the function)."""
    return {"version": "0", "id": "315c1398-40ff-a850-213b-158f73e60175", "detail-type": "Step Functions Execution Status Change",
            "source": "aws.states", "account": execution.split(":")[4], "time": "2026-12-04T10:00:00Z", "region": execution.split(":")[3],
            "resources": [execution],
            "detail": {"executionArn": execution, "stateMachineArn": execution.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0],
                       "status": status}}


@dataclass
class LambdaContext:
    function_name: str = "neptune-guard-detector"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:neptune-guard-detector"
    aws_request_id: str = "req-1"
    remaining_ms: int = 900_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def custom_action_event(findings, region="us-east-1"):
    """The event Security Hub sends EventBridge when someone chooses the custom action on `findings`."""
    return {
        "version": "0", "id": "8e5622f9-d81c-4d81-612a-9319e7ee2506",
        "detail-type": "Security Hub Findings - Custom Action", "source": "aws.securityhub",
        "account": "123456789012", "time": "2026-11-22T10:00:00Z", "region": region,
        "resources": [f"arn:aws:securityhub:{region}:123456789012:action/custom/RemediateWithCMK"],
        "detail": {"actionName": "Remediate with CMK", "actionDescription": "Re-encrypt under the CMK", "findings": findings},
    }
