"""Deploying the real ASL files into the local AWS, as the CDK app does in AWS, for tests and the demo."""

from __future__ import annotations

import contextlib
import io
import json
import time
import types
import zipfile
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

import boto3
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.wait.wait_function import wait_function

from neptune_guard.remediate import replicator_package
from sandbox.demo import organization

STATE_MACHINES = Path(__file__).resolve().parents[2] / "state_machines"
REPLICATOR_SIGNING_PROFILE = "NeptuneGuardReplicator"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]}, "Action": "sts:AssumeRole"}]})


def definition(name: str, substitutions: dict[str, str]) -> str:
    text = (STATE_MACHINES / f"{name}.asl.json").read_text()
    for placeholder, value in substitutions.items():
        text = text.replace("${" + placeholder + "}", value)
    return text


def code_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README", "the sandbox runs the handlers from the repository, in-process")
    return buffer.getvalue()


def deploy_replicator_signing(session: boto3.Session, region: str) -> dict[str, str]:
    """The security stack's replicator signing (stacks/security.py): its versioned bucket, its signing profile, and
    the signing its custom resource does at deployment (the library's own `sign`). Returns the steps function's
    settings that name them."""
    bucket = replicator_bucket(session.client("sts").get_caller_identity()["Account"])
    s3, signer = session.client("s3", region_name=region), session.client("signer", region_name=region)
    s3.create_bucket(Bucket=bucket, **({} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}))
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    profile = signer.put_signing_profile(profileName=REPLICATOR_SIGNING_PROFILE, platformId="AWSLambda-SHA384-ECDSA")
    return {replicator_package.PACKAGE_ENVIRONMENT: replicator_package.sign(s3, signer, bucket, REPLICATOR_SIGNING_PROFILE),
            replicator_package.PROFILE_ENVIRONMENT: profile["profileVersionArn"]}


def deploy(session: boto3.Session | None = None, region: str = "us-east-1", roles: dict[str, str] | None = None,
           member_regions: tuple[str, ...] = ()) -> dict[str, str]:
    """The state machines, the steps function and the approval endpoint, and the replicator's signing with its
    regional member part in `member_regions`. `roles` gives each its role ARN ("steps", "approval", "cluster",
    "snapshot": the synthesized roles, sandbox/iam/executed.py); without it one sandbox role serves all."""
    session = session or boto3.Session(region_name=region)
    if roles is None:
        role_arn = session.client("iam").create_role(RoleName="NeptuneGuardWorkflow", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
        roles = dict.fromkeys(("steps", "approval", "cluster", "snapshot"), role_arn)
    topic_arn = session.client("sns", region_name=region).create_topic(Name="neptune-guard-on-call")["TopicArn"]
    signing = deploy_replicator_signing(session, region)
    organization.deploy_member_code_signing(session, signing[replicator_package.PROFILE_ENVIRONMENT], member_regions)
    function_arn = session.client("lambda", region_name=region).create_function(
        FunctionName="neptune-guard-steps", Runtime="python3.13", Role=roles["steps"], Handler="neptune_guard.handlers.steps.handler",
        Code={"ZipFile": code_zip()}, Timeout=300, Environment={"Variables": {"NOTIFICATION_TOPIC_ARN": topic_arn, **signing}},
    )["FunctionArn"]
    sfn = session.client("stepfunctions", region_name=region)
    cluster = sfn.create_state_machine(
        name="NeptuneGuardClusterRemediation", roleArn=roles["cluster"],
        definition=definition("cluster_remediation", {"StepsFunctionArn": function_arn, "Partition": "aws"}),
    )["stateMachineArn"]
    snapshot = sfn.create_state_machine(
        name="NeptuneGuardSnapshotRemediation", roleArn=roles["snapshot"],
        definition=definition("snapshot_remediation", {"StepsFunctionArn": function_arn, "Partition": "aws"}),
    )["stateMachineArn"]
    approval_function = deploy_approval_endpoint(session, roles["approval"], region)
    return {"cluster": cluster, "snapshot": snapshot, "steps_function": function_arn, "topic": topic_arn, "role": roles["steps"],
            "approval_function": approval_function}


def replicator_bucket(account: str) -> str:
    return f"neptune-guard-replicator-{account}"


def runs_bucket(account: str) -> str:
    return f"neptune-guard-scan-runs-{account}"


def deploy_scheduled_scan(session: boto3.Session | None = None, region: str = "us-east-1", environment: dict[str, str] | None = None,
                          function_role: str | None = None, machine_role: str | None = None) -> dict[str, str]:
    """The scheduled scan: its runs bucket, the detector function and the state machine (Distributed Map), as the
    security stack deploys them. `environment` overrides the function's settings (ACCOUNTS, REGIONS, MINIMUM_COVERAGE,
    ...); without the roles (the synthesized ones: sandbox/iam/executed.py) one sandbox role serves both."""
    session = session or boto3.Session(region_name=region)
    if function_role is None or machine_role is None:
        function_role = machine_role = session.client("iam").create_role(
            RoleName="NeptuneGuardScheduledScan", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    bucket = runs_bucket(session.client("sts").get_caller_identity()["Account"])
    s3 = session.client("s3", region_name=region)
    s3.create_bucket(Bucket=bucket, **({} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}))
    variables = {"ACCOUNTS": "org", "REGIONS": "", "CONCURRENCY": "16", "PUBLISH": "true", "RUNS_BUCKET": bucket,
                 "MINIMUM_COVERAGE": "1", "MAP_CONCURRENCY": "8", **(environment or {})}
    function_arn = session.client("lambda", region_name=region).create_function(
        FunctionName="neptune-guard-detector", Runtime="python3.13", Role=function_role, Handler="neptune_guard.handlers.scheduled_scan.handler",
        Code={"ZipFile": code_zip()}, Timeout=900, Environment={"Variables": variables},
    )["FunctionArn"]
    machine = session.client("stepfunctions", region_name=region).create_state_machine(
        name="NeptuneGuardScheduledScan", roleArn=machine_role,
        definition=definition("scheduled_scan", {"ScanFunctionArn": function_arn, "Partition": "aws", "RunsBucket": bucket}),
    )["stateMachineArn"]
    return {"state_machine": machine, "function": function_arn, "bucket": bucket}


def deploy_approval_endpoint(session: boto3.Session, role_arn: str, region: str) -> str:
    """The approval function behind a function URL (AuthType AWS_IAM), on-call's sessions allow-listed.
    Serve its URL with sandbox.aws.function_urls.serve (moto configures function URLs but does not serve them)."""
    from sandbox.demo import on_call

    lambda_client = session.client("lambda", region_name=region)
    name = lambda_client.create_function(
        FunctionName="neptune-guard-approval", Runtime="python3.13", Role=role_arn, Handler="neptune_guard.handlers.approval.handler",
        Code={"ZipFile": code_zip()}, Timeout=30,
        # The local deployment's shortest durations, so that the tests and the demo run in seconds; a request may
        # only lengthen them, as in any deployment.
        Environment={"Variables": {"APPROVER_PRINCIPALS": on_call.create_role(session), "SOAK_SECONDS": "0",
                                   "METRICS_SETTLE_SECONDS": "0", "APPROVAL_TIMEOUT_SECONDS": "60"}},
    )["FunctionName"]
    lambda_client.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    return name


def stop_running(sfn, state_machine_arns, timeout: float = 30.0) -> None:
    """Stop every execution still running, and wait until it has stopped: the interpreter runs them on
    threads that would otherwise go on calling AWS after their local AWS is gone, or in the next one."""
    for arn in state_machine_arns:
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn, statusFilter="RUNNING"):
            for execution in page["executions"]:
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        sfn.stop_execution(executionArn=execution["executionArn"], error="SandboxTeardown")
                        break
                    except Exception:  # the interpreter has not started it yet: moto cannot stop it before that
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
                _wake_if_waiting_for_approval(sfn, execution["executionArn"])
                wait_for(sfn, execution["executionArn"], lambda description, history: False, timeout)


def _wake_if_waiting_for_approval(sfn, execution_arn: str) -> None:
    """moto's interpreter notices a stop only between states; a task waiting for its token must be woken."""
    from neptune_guard.approve import approvals

    try:
        token = approvals.pending_approval(sfn, execution_arn)["token"]
    except approvals.NoPendingApproval:
        return
    try:
        sfn.send_task_failure(taskToken=token, error="SandboxTeardown", cause="the test that started it has ended")
    except sfn.exceptions.InvalidToken:  # answered meanwhile (an approval racing the teardown): nothing waits on it
        pass


def fast_clock():
    """Retry intervals of the local interpreter pass at once: the ASL's real back-off would make a
    local run wait minutes for resources that moto makes available immediately. Not an AWS correction."""
    clock = types.SimpleNamespace(**{name: getattr(time, name) for name in dir(time) if not name.startswith("_")})
    clock.sleep = lambda seconds: None
    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.object(retrier_decl, "time", clock))
    # Wait states too, to a twentieth of a second (interrupted, as moto's own wait is, when the execution stops): the
    # metrics settle, the soak checks and the replication loop's pauses pass without hours of real time.
    stack.enter_context(mock.patch.object(wait_function.WaitFunction, "_wait_interval",
                                          lambda self, env, wait_seconds: env.program_state_event.wait(min(wait_seconds, 0.05))))
    return stack


class _History(Sequence):
    """The execution's first 1,000 events, read only if `until` looks at them (a read costs the local AWS as much
    as a step of the execution it watches)."""

    def __init__(self, sfn, execution_arn: str):
        self.sfn, self.execution_arn, self._events = sfn, execution_arn, None

    @property
    def events(self) -> list:
        if self._events is None:
            self._events = self.sfn.get_execution_history(executionArn=self.execution_arn, maxResults=1000)["events"]
        return self._events

    def __getitem__(self, index):
        return self.events[index]

    def __len__(self) -> int:
        return len(self.events)


def wait_for(sfn, execution_arn: str, until, timeout: float = 300.0) -> dict:
    """Poll the execution until `until(description, history)` holds or it stops running."""
    deadline = time.monotonic() + timeout
    pause = 0.05
    while True:
        description = sfn.describe_execution(executionArn=execution_arn)
        history = _History(sfn, execution_arn)
        if description["status"] != "RUNNING" or until(description, history):
            return description
        if time.monotonic() > deadline:
            raise TimeoutError(f"{execution_arn} still running")
        # Reading a long history costs the local AWS as much CPU as the execution it watches: poll less as it runs on.
        time.sleep(pause)
        pause = min(pause * 2, 0.8)


def final_state(sfn, execution_arn: str) -> dict:
    """The state the execution ended with: its output, or for a failed one (which has none) the input of the Fail
    state it ended in (the whole history, paged: a streams cutover's replication loop makes it long)."""
    description = sfn.describe_execution(executionArn=execution_arn)
    if description.get("output"):
        return json.loads(description["output"])
    events = [e for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn) for e in page["events"]]
    ended = [e for e in events if e["type"] == "FailStateEntered"]
    return json.loads(ended[-1]["stateEnteredEventDetails"]["input"]) if ended else {}
