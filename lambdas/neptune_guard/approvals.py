"""Approvals you can audit: the approval endpoint's decisions.

People never answer a workflow's approval with `states:SendTaskSuccess` themselves. They call the
approval endpoint, a Lambda function URL with `AuthType: AWS_IAM`: Lambda verifies the caller's SigV4
signature and hands the function the identity AWS established (`requestContext.authorizer.iam`). The
endpoint then checks, in this order, that the body is well formed, that the caller is on the approver
allow-list, that the execution is one of Neptune Guard's own state machines in this account and region
and waits for an approval (of the stage the caller names, if they name one), that the caller is not the
principal who started it (a second person), and that a cutover with writes detected is approved only
with `accept_write_loss`. Only then does it send the decision, which records the verified approver.

https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html#urls-request-payload
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Literal, Optional, Union

from botocore.exceptions import ClientError
from botocore.utils import ArnParser, InvalidArnException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from . import workflow

STATE_MACHINE_NAMES = ("NeptuneGuardClusterRemediation", "NeptuneGuardSnapshotRemediation")
APPROVAL_STEP = "request_approval"
MAX_CAUSE = 32768  # SendTaskFailure's limit on `cause`


class ApprovalRefused(Exception):
    """The endpoint's answer to a request it will not carry out: an HTTP status and one line saying why."""

    status = 400


class BadRequest(ApprovalRefused):
    status = 400


class Forbidden(ApprovalRefused):
    status = 403


class UnknownExecution(ApprovalRefused):
    status = 404


class NoPendingApproval(ApprovalRefused):
    status = 409


class NotApprovable(ApprovalRefused):
    """The execution waits, but not for this answer (another stage, or writes the caller has not accepted)."""

    status = 409


@dataclass(frozen=True)
class Caller:
    """Who is calling, as AWS established it from the request's signature (never from the body)."""

    arn: str
    caller_id: str
    account_id: str


@dataclass(frozen=True)
class Endpoint:
    """Where the endpoint runs and who may use it."""

    partition: str
    region: str
    account_id: str
    approver_patterns: tuple[str, ...]

    @classmethod
    def of_function(cls, function_arn: str, approver_principals: str) -> "Endpoint":
        """From the function's own ARN (its account and region are the state machines') and the allow-list,
        a comma list of principal ARN patterns (`*` and `?` as in IAM's ArnLike)."""
        arn = ArnParser().parse_arn(function_arn)
        patterns = tuple(p.strip() for p in approver_principals.split(",") if p.strip())
        bad = [p for p in patterns if not p.startswith(f"arn:{arn['partition']}:")]
        if bad:
            raise ValueError(f"approver principals must be ARN patterns in partition {arn['partition']}: {', '.join(bad)}")
        return cls(arn["partition"], arn["region"], arn["account"], patterns)

    @property
    def state_machine_arns(self) -> tuple[str, ...]:
        return tuple(f"arn:{self.partition}:states:{self.region}:{self.account_id}:stateMachine:{name}" for name in STATE_MACHINE_NAMES)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TargetRequest(_Body):
    """What `remediate` asks for; the plan step validates the values against AWS."""

    account_id: str = Field(max_length=12)
    region: str = Field(max_length=32)
    cluster_id: Optional[str] = Field(default=None, min_length=1, max_length=255)
    snapshot_id: Optional[str] = Field(default=None, min_length=1, max_length=255)
    target_key: str = Field(min_length=1, max_length=2048)
    role_name: Optional[str] = Field(default=None, min_length=1, max_length=64)
    approval_timeout_seconds: Optional[int] = Field(default=None, ge=60, le=7 * 24 * 3600)
    soak_seconds: Optional[int] = Field(default=None, ge=0, le=365 * 24 * 3600)
    metrics_settle_seconds: Optional[int] = Field(default=None, ge=0, le=3600)
    replace_key: Optional[bool] = None

    @model_validator(mode="after")
    def one_resource(self) -> "TargetRequest":
        if (self.cluster_id is None) == (self.snapshot_id is None):
            raise ValueError("give exactly one of cluster_id and snapshot_id")
        return self


class Start(_Body):
    action: Literal["start"]
    state_machine_arn: str = Field(max_length=2048)
    request: TargetRequest


class Approve(_Body):
    action: Literal["approve"]
    execution_arn: str = Field(max_length=2048)
    stage: Optional[str] = Field(default=None, max_length=64)
    accept_write_loss: bool = False
    reason: Optional[str] = Field(default=None, max_length=1000)


class Reject(_Body):
    action: Literal["reject"]
    execution_arn: str = Field(max_length=2048)
    stage: Optional[str] = Field(default=None, max_length=64)
    reason: str = Field(min_length=1, max_length=1000)


Body = Annotated[Union[Start, Approve, Reject], Field(discriminator="action")]


def parse_body(body) -> Start | Approve | Reject:
    from aws_lambda_powertools.utilities.parser import parse

    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object such as {"action": "approve", "execution_arn": "..."}')
    try:
        return parse(event=body, model=Body)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(part) for part in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()[:3])
        raise BadRequest(f"bad request body: {problems}") from None


def _arn_like(pattern: str) -> re.Pattern:
    """IAM's ArnLike: `*` any run of characters, `?` one character, everything else literal."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern) + r"\Z")


def is_allowed(principal_arn: str, patterns: tuple[str, ...]) -> bool:
    return any(_arn_like(pattern).match(principal_arn) for pattern in patterns)


def same_principal(first: str, second: str) -> bool:
    # IAM role and session names do not distinguish case: Alice and alice are one person.
    return first.lower() == second.lower()


def our_state_machine(arn: str, endpoint: Endpoint) -> str:
    if arn not in endpoint.state_machine_arns:
        raise Forbidden(f"{arn} is not one of Neptune Guard's state machines in {endpoint.account_id} {endpoint.region}")
    return arn


def our_execution(execution_arn: str, endpoint: Endpoint) -> str:
    """The state machine ARN of an execution ARN, if that is one of ours; refuses anything else."""
    try:
        arn = ArnParser().parse_arn(execution_arn)
    except InvalidArnException:
        raise BadRequest(f"not an execution ARN: {execution_arn!r}") from None
    kind, _, rest = arn["resource"].partition(":")
    state_machine, _, name = rest.partition(":")
    if arn["service"] != "states" or kind != "execution" or not name or ":" in name:
        raise BadRequest(f"not a Step Functions execution ARN: {execution_arn!r}")
    return our_state_machine(
        f"arn:{arn['partition']}:states:{arn['region']}:{arn['account']}:stateMachine:{state_machine}", endpoint)


def pending_approval(sfn, execution_arn: str) -> dict:
    """The approval the execution waits on now, from its history: stage, task token, and the state it was
    asked with (plan, and the cutover's write check)."""
    pending = None
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
        for event in page["events"]:
            details = event.get("taskScheduledEventDetails")
            if details:
                payload = json.loads(details["parameters"]).get("Payload", {})
                if payload.get("step") == APPROVAL_STEP:
                    state = payload.get("state", {})
                    pending = {"stage": payload["stage"], "token": payload["task_token"], "plan": state.get("plan"),
                               "write_check": state.get("write_check")}
                else:
                    pending = None
            elif event["type"] in ("TaskSucceeded", "TaskFailed", "TaskTimedOut") or (
                    event["type"] in ("TaskStateExited", "TaskStateAborted")
                    and (event.get("stateExitedEventDetails") or {}).get("name", "").startswith("Await")):
                pending = None  # a task running beside the question (the streams path's replication) leaves it pending
    if pending is None:
        raise NoPendingApproval(f"execution {execution_arn} is not waiting for an approval")
    return pending


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _describe(sfn, execution_arn: str) -> dict:
    try:
        return sfn.describe_execution(executionArn=execution_arn)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("ExecutionDoesNotExist", "InvalidArn"):
            raise UnknownExecution(f"no execution {execution_arn}") from None
        raise


def _waiting(sfn, execution_arn: str, stage: str | None) -> dict:
    description = _describe(sfn, execution_arn)
    if description["status"] != "RUNNING":
        raise NoPendingApproval(f"execution {execution_arn} is {description['status']}, not waiting for an approval")
    pending = pending_approval(sfn, execution_arn)
    if stage is not None and stage != pending["stage"]:
        raise NotApprovable(f"execution {execution_arn} waits for the {pending['stage']} approval, not {stage}")
    return {**pending, "requested_by": json.loads(description.get("input") or "{}").get("requested_by")}


def _answer(send, **kwargs) -> None:
    """Send the decision; a token answered meanwhile (by someone else, or timed out) is a conflict, not a fault."""
    try:
        send(**kwargs)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken"):
            raise NoPendingApproval(f"the approval was answered or timed out meanwhile ({error.response['Error']['Code']})") from None
        raise


def start(sfn, body: Start, caller: Caller, endpoint: Endpoint) -> dict:
    state_machine_arn = our_state_machine(body.state_machine_arn, endpoint)
    request = {**body.request.model_dump(exclude_none=True), "requested_by": caller.arn}
    return {"execution_arn": workflow.start(sfn, state_machine_arn, request), "requested_by": caller.arn}


def approve(sfn, body: Approve, caller: Caller, endpoint: Endpoint) -> dict:
    our_execution(body.execution_arn, endpoint)
    pending = _waiting(sfn, body.execution_arn, body.stage)
    starter = pending["requested_by"]
    if not starter:
        raise Forbidden(f"execution {body.execution_arn} records no requester (it was not started through this endpoint "
                        "or the Security Hub trigger), so a second person cannot be told apart: reject it and start it again")
    if same_principal(starter, caller.arn):
        raise Forbidden(f"{caller.arn} started this execution and cannot approve it: another on-call engineer must")
    if pending["stage"] == "cutover" and (pending.get("write_check") or {}).get("writes_detected") is True and not body.accept_write_loss:
        raise NotApprovable("writes were detected on the cluster after the snapshot: they will be lost at the cutover. "
                            "Approve with accept_write_loss (CLI: --accept-write-loss) to accept that, or reject")
    decision = {"approved": True, "stage": pending["stage"], "approver": caller.arn, "at": _now(),
                "accept_write_loss": body.accept_write_loss, **({"reason": body.reason} if body.reason else {})}
    _answer(sfn.send_task_success, taskToken=pending["token"], output=json.dumps(decision))
    return {**decision, "execution_arn": body.execution_arn, "requested_by": starter}


def reject(sfn, body: Reject, caller: Caller, endpoint: Endpoint) -> dict:
    """Rejecting is always safe (nothing changes, or the workflow rolls back): the starter may withdraw too."""
    our_execution(body.execution_arn, endpoint)
    pending = _waiting(sfn, body.execution_arn, body.stage)
    at = _now()
    cause = f"rejected by {caller.arn} at {at} ({pending['stage']}): {body.reason}"[:MAX_CAUSE]
    _answer(sfn.send_task_failure, taskToken=pending["token"], error="Rejected", cause=cause)
    return {"approved": False, "stage": pending["stage"], "approver": caller.arn, "at": at, "reason": body.reason,
            "execution_arn": body.execution_arn}


ACTIONS = {"start": start, "approve": approve, "reject": reject}


def decide(body, caller: Caller, endpoint: Endpoint, sfn) -> dict:
    """Carry out one request from a verified caller, or raise ApprovalRefused saying why not."""
    if not caller.arn:
        raise Forbidden("no verified caller identity: the endpoint must be a function URL with AuthType AWS_IAM")
    request = parse_body(body)
    if not endpoint.approver_patterns:
        raise Forbidden("no approvers are configured (APPROVER_PRINCIPALS is empty)")
    if not is_allowed(caller.arn, endpoint.approver_patterns):
        raise Forbidden(f"{caller.arn} is not on the approver allow-list")
    return ACTIONS[request.action](sfn, request, caller, endpoint)
