"""Approvals you can audit: the approval endpoint's decisions.

People never answer a workflow's approval with `states:SendTaskSuccess` themselves. They call the
approval endpoint, a Lambda function URL with `AuthType: AWS_IAM`: Lambda verifies the caller's SigV4
signature and hands the function the identity AWS established (`requestContext.authorizer.iam`). The
endpoint then checks, in this order, that the body is well formed, that the caller is a person on the approver
allow-list, that the execution is one of Neptune Guard's own state machines in this account and region
and waits for an approval (of the stage the caller names, if they name one), that it runs with the deployment's
remediation role and safety durations (a requester may only lengthen them), that the caller is not the person
who started it (a second person), and that a cutover with writes detected is approved only with
`accept_write_loss`. Only then does it write the approval's marks in the member account (approval_marks.py:
what the remediation role needs to act on the customer's resources, and cannot write itself) and send the
decision, which records the verified approver.

People, not sessions. A person is the `sts:SourceIdentity` their identity provider set: it persists through
role chaining and the session cannot change it, while a session name is chosen freely. Lambda does not hand a
function URL the caller's source identity, so IAM binds it to what Lambda does hand over: the approver policy
and the guardrail SCP (guardrails/scp/protect-approvals.json) let a session call the endpoint only with
a source identity and a session name equal to it (`aws:userid` = `<role id>:${aws:SourceIdentity}`), and the SCP
refuses a direct `lambda:Invoke` (not via the URL), whose request context the invoker would write. The session
name of an allow-listed on-call session is therefore its person; Alice and alice are one person.

Executions nobody on the allow-list started (the Security Hub trigger's, or an administrator's straight through
Step Functions) have no requester who is a person. The first person to approve one becomes its requester: the
endpoint stops it while it still waits for its first approval (nothing has changed yet) and starts it again as
theirs, and a second person must approve that. So every execution needs two distinct people before it acts.

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

from neptune_guard import aws
from neptune_guard.approve import workflow
from neptune_guard.remediate.guard import APPROVAL_STEP, STATE_MACHINE_NAMES, answer_to, running_tasks
from neptune_guard.remediate.resources import NotOurs

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


ASSUMED_ROLE = re.compile(r"arn:[a-z][a-z0-9-]{0,30}:sts::[0-9]{12}:assumed-role/[A-Za-z0-9+=,.@_-]{1,64}/(?P<session>[A-Za-z0-9+=,.@_-]{2,64})")


def person_of(principal_arn: str | None) -> str | None:
    """The person behind an assumed-role session ARN: its session name, which IAM binds to the session's
    sts:SourceIdentity for the endpoint's callers (see the module's docstring); None for anything else."""
    match = ASSUMED_ROLE.fullmatch(principal_arn or "")
    return match["session"].lower() if match else None


class MarkFailed(ApprovalRefused):
    """The approval's marks could not be written in the member account: nothing was approved."""

    status = 502


@dataclass(frozen=True)
class Caller:
    """Who is calling, as AWS established it from the request's signature (never from the body)."""

    arn: str
    caller_id: str
    account_id: str

    @property
    def person(self) -> str | None:
        return person_of(self.arn)


# Each duration: (the request field, its environment variable, the workflow's default when a request has none,
# the longest a requester may ask for). The deployment's value is the shortest; a requester may only lengthen it.
DURATIONS = (
    ("approval_timeout_seconds", "APPROVAL_TIMEOUT_SECONDS", 24 * 3600, 7 * 24 * 3600),
    ("soak_seconds", "SOAK_SECONDS", 7 * 24 * 3600, 365 * 24 * 3600),
    ("metrics_settle_seconds", "METRICS_SETTLE_SECONDS", 600, 3600),
)
DEFAULT_REMEDIATION_ROLE = "NeptuneGuardRemediation"


@dataclass(frozen=True)
class Safety:
    """What the deployment decides, not the requester: the member role the workflow acts through, and the shortest
    approval timeout, soak and metrics settle time."""

    remediation_role_name: str = DEFAULT_REMEDIATION_ROLE
    approval_timeout_seconds: int = 24 * 3600
    soak_seconds: int = 7 * 24 * 3600
    metrics_settle_seconds: int = 600

    @classmethod
    def from_environment(cls, environ) -> "Safety":
        values = {"remediation_role_name": environ.get("REMEDIATION_ROLE_NAME", DEFAULT_REMEDIATION_ROLE)}
        if not re.fullmatch(r"[A-Za-z0-9+=,.@_-]{1,64}", values["remediation_role_name"]):
            raise ValueError(f"REMEDIATION_ROLE_NAME is not a role name: {values['remediation_role_name']!r}")
        for field, variable, default, longest in DURATIONS:
            text = environ.get(variable, str(default))
            if not re.fullmatch(r"[0-9]{1,8}", text) or int(text) > longest:
                raise ValueError(f"{variable} must be a whole number of seconds up to {longest}, got {text!r}")
            values[field] = int(text)
        return cls(**values)

    def fill(self, request: dict) -> dict:
        """The request the execution runs with: the deployment's role, and each duration the requester's if longer."""
        problems = []
        if "role_name" in request:
            problems.append("role_name comes from the deployment, not the request")
        filled = {**request, "role_name": self.remediation_role_name}
        for field, _, _, longest in DURATIONS:
            shortest = getattr(self, field)
            value = request.get(field, shortest)
            if isinstance(value, bool) or not isinstance(value, int) or not shortest <= value <= longest:
                problems.append(f"{field} may only lengthen the deployment's {shortest} (up to {longest}), got {value!r}")
            filled[field] = value
        if problems:
            raise BadRequest("; ".join(problems))
        return filled

    def check(self, started_with: dict) -> None:
        """An execution, however it was started, runs only with the deployment's role and at least its durations."""
        role = started_with.get("role_name") or DEFAULT_REMEDIATION_ROLE
        if role != self.remediation_role_name:
            raise Forbidden(f"the execution acts through role {role!r}, not the deployment's {self.remediation_role_name!r}: "
                            "reject it and start it again")
        defaults = {field: default for field, _, default, _ in DURATIONS}
        for field, _, _, _ in DURATIONS:
            value = started_with.get(field, defaults[field])
            if isinstance(value, bool) or not isinstance(value, int) or value < getattr(self, field):
                raise Forbidden(f"the execution's {field} {value!r} is shorter than the deployment's {getattr(self, field)}: "
                                "reject it and start it again")


@dataclass(frozen=True)
class Endpoint:
    """Where the endpoint runs and who may use it."""

    partition: str
    region: str
    account_id: str
    approver_patterns: tuple[str, ...]
    safety: Safety = Safety()

    @classmethod
    def of_function(cls, function_arn: str, approver_principals: str, safety: Safety | None = None) -> "Endpoint":
        """From the function's own ARN (its account and region are the state machines') and the allow-list,
        a comma list of principal ARN patterns (`*` and `?` as in IAM's ArnLike)."""
        arn = ArnParser().parse_arn(function_arn)
        patterns = tuple(p.strip() for p in approver_principals.split(",") if p.strip())
        bad = [p for p in patterns if not p.startswith(f"arn:{arn['partition']}:")]
        if bad:
            raise ValueError(f"approver principals must be ARN patterns in partition {arn['partition']}: {', '.join(bad)}")
        return cls(arn["partition"], arn["region"], arn["account"], patterns, safety or Safety())

    @property
    def state_machine_arns(self) -> tuple[str, ...]:
        return tuple(f"arn:{self.partition}:states:{self.region}:{self.account_id}:stateMachine:{name}" for name in STATE_MACHINE_NAMES)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TargetRequest(_Body):
    """What `remediate` asks for; the plan step validates the values against AWS."""

    # ASCII, whole values (pydantic's patterns are Rust regexes: `$` is the end, not before a final newline); the plan
    # step validates them against AWS, but a request that could never be planned creates no execution.
    account_id: str = Field(pattern=r"^[0-9]{12}$")
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")
    cluster_id: Optional[str] = Field(default=None, pattern=r"^[a-zA-Z][a-zA-Z0-9-]{0,62}$")
    snapshot_id: Optional[str] = Field(default=None, pattern=r"^(rds:)?[a-zA-Z][a-zA-Z0-9-]{0,254}$")
    target_key: str = Field(pattern=r"^(alias/[A-Za-z0-9/_+=,.@-]{1,250}|arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/[A-Za-z0-9/_+=,.@-]{1,250}|[0-9a-f-]{36})$")
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


def requester_person(requested_by, endpoint: Endpoint) -> str | None:
    """The person who started an execution: a requester on the allow-list; None for the trigger, an administrator
    straight through Step Functions, or anything else that is not a person on call."""
    if not isinstance(requested_by, str) or not is_allowed(requested_by, endpoint.approver_patterns):
        return None
    return person_of(requested_by)


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
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
    return pending_in((event for page in pages for event in page["events"]), execution_arn)


def pending_in(events, execution_arn: str) -> dict:
    """pending_approval, from the execution's whole history, oldest event first."""
    asked = [payload for _, payload in running_tasks(list(events)).values() if payload.get("step") == APPROVAL_STEP]
    if not asked:
        raise NoPendingApproval(f"execution {execution_arn} is not waiting for an approval")
    state = asked[-1].get("state", {})
    return {"stage": asked[-1]["stage"], "token": asked[-1]["task_token"], "plan": state.get("plan"), "write_check": state.get("write_check")}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _describe(sfn, execution_arn: str) -> dict:
    try:
        return sfn.describe_execution(executionArn=execution_arn)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("ExecutionDoesNotExist", "InvalidArn"):
            raise UnknownExecution(f"no execution {execution_arn}") from None
        raise


def _approval_in(event: dict | None) -> dict | None:
    """The approval a task's success event carries (the endpoint's decision, with its approver), if it is one."""
    output = ((event or {}).get("taskSucceededEventDetails") or {}).get("output")
    try:
        decision = json.loads(output) if output else None
    except ValueError:
        return None
    approved = isinstance(decision, dict) and decision.get("approved") is True and isinstance(decision.get("approver"), str)
    return decision if approved else None


def approvals_given(sfn, execution_arn: str) -> list[dict]:
    """The decisions the endpoint sent to this execution so far (each records its approver)."""
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
    return [decision for page in pages for event in page["events"] if (decision := _approval_in(event))]


def answered_with_an_approval(sfn, execution_arn: str, token: str) -> bool:
    """Whether this question (its task token, not its stage: a parked decommission asks again) was answered by an
    approval, rather than rejected or timed out. Not yet recorded, or a history that cannot be read, counts as not: the
    marks are taken back (an execution that needed them stops at "mark missing" and rolls back; one left behind would
    outlive it)."""
    try:
        pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
        return _approval_in(answer_to([event for page in pages for event in page["events"]], token)) is not None
    except ClientError:
        return False


def _waiting(sfn, execution_arn: str, stage: str | None) -> dict:
    description = _describe(sfn, execution_arn)
    if description["status"] != "RUNNING":
        raise NoPendingApproval(f"execution {execution_arn} is {description['status']}, not waiting for an approval")
    pending = pending_approval(sfn, execution_arn)
    if stage is not None and stage != pending["stage"]:
        raise NotApprovable(f"execution {execution_arn} waits for the {pending['stage']} approval, not {stage}")
    try:
        started_with = json.loads(description.get("input") or "{}")
    except ValueError:
        started_with = None
    if not isinstance(started_with, dict):
        raise Forbidden(f"execution {execution_arn} was not started with a request object: reject it")
    return {**pending, "requested_by": started_with.get("requested_by"), "started_with": started_with}


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
    request = {**endpoint.safety.fill(body.request.model_dump(exclude_none=True)), "requested_by": caller.arn}
    return {"execution_arn": workflow.start(sfn, state_machine_arn, request), "requested_by": caller.arn}


def adopt(sfn, execution_arn: str, pending: dict, caller: Caller, endpoint: Endpoint) -> dict:
    """An execution no person started, still at its first approval (nothing changed yet): stop it, and start it
    again with the caller as its requester, so that a second person must approve."""
    request = {**pending["started_with"], "requested_by": caller.arn}
    try:
        sfn.stop_execution(executionArn=execution_arn, error="Adopted",
                           cause=f"restarted with {caller.arn} as its requester; a second person approves"[:MAX_CAUSE])
    except ClientError as error:
        if error.response["Error"]["Code"] != "ExecutionDoesNotExist":
            raise
    state_machine_arn = execution_arn.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0]
    new = workflow.start(sfn, state_machine_arn, request)
    return {"approved": False, "adopted": True, "stage": pending["stage"], "replaces": execution_arn, "execution_arn": new,
            "requested_by": caller.arn, "at": _now(),
            "next": f"{caller.arn} is now the requester of {new}: another on-call engineer must approve it"}


def write_marks(session, stage: str, execution_arn: str, started_with: dict, plan: dict) -> list[str]:
    """The approved stage's marks (approval_marks.py), written before the workflow is told, so that it never acts
    on an approval its member role cannot yet act on."""
    from neptune_guard.approve import approval_marks

    try:
        return approval_marks.mark(session, stage, execution_arn, _where(started_with, plan))
    except NotOurs as error:
        raise NotApprovable(f"{error}: reject it") from None
    except ClientError as error:
        raise MarkFailed(f"could not mark what the {stage} approval covers in {started_with.get('account_id')}: "
                         f"{error.response['Error']['Code']}: {error.response['Error'].get('Message', '')}") from None


def _where(started_with: dict, plan: dict) -> dict:
    return {**plan, "account_id": started_with.get("account_id"), "region": started_with.get("region")}


def take_back_marks(session, stage: str, execution_arn: str, started_with: dict, plan: dict, marked: list[str]) -> None:
    """The approval did not reach the execution: the marks written for it would outlive the execution, holding the
    resource (no later plan takes it up) and letting the remediation role act on it."""
    from neptune_guard.approve import approval_marks

    try:
        approval_marks.take_back(session, stage, execution_arn, _where(started_with, plan), marked)
    except ClientError as error:
        raise MarkFailed(f"the approval did not reach {execution_arn}, and its {stage} marks could not be taken back "
                         f"({error.response['Error']['Code']}): remove the tag {approval_marks.STAGES[stage][0]} naming it from "
                         f"{', '.join(marked)}") from None


def approve(sfn, body: Approve, caller: Caller, endpoint: Endpoint, session=None) -> dict:
    our_execution(body.execution_arn, endpoint)
    pending = _waiting(sfn, body.execution_arn, body.stage)
    endpoint.safety.check(pending["started_with"])
    starter = pending["requested_by"]
    if not starter:
        raise Forbidden(f"execution {body.execution_arn} records no requester (it was not started through this endpoint "
                        "or the Security Hub trigger), so a second person cannot be told apart: reject it and start it again")
    requester = requester_person(starter, endpoint)
    if requester is None:
        if approvals_given(sfn, body.execution_arn):
            raise Forbidden(f"execution {body.execution_arn} was started by {starter}, not a person on call, and has already "
                            "been approved once: reject it and start it again")
        return adopt(sfn, body.execution_arn, pending, caller, endpoint)
    if requester == caller.person:
        raise Forbidden(f"{caller.arn} started this execution and cannot approve it (the same person as {starter}): "
                        "another on-call engineer must")
    if pending["stage"] == "cutover" and (pending.get("write_check") or {}).get("writes_detected") is True and not body.accept_write_loss:
        raise NotApprovable("writes were detected on the cluster after the snapshot: they will be lost at the cutover. "
                            "Approve with accept_write_loss (CLI: --accept-write-loss) to accept that, or reject")
    marked = write_marks(session, pending["stage"], body.execution_arn, pending["started_with"], pending.get("plan") or {})
    decision = {"approved": True, "stage": pending["stage"], "approver": caller.arn, "at": _now(),
                "accept_write_loss": body.accept_write_loss, **({"reason": body.reason} if body.reason else {})}
    try:
        _answer(sfn.send_task_success, taskToken=pending["token"], output=json.dumps(decision))
    except NoPendingApproval:  # rejected or timed out meanwhile; or approved by someone else, whose approval needs the marks
        if not answered_with_an_approval(sfn, body.execution_arn, pending["token"]):
            take_back_marks(session, pending["stage"], body.execution_arn, pending["started_with"], pending.get("plan") or {}, marked)
        raise
    decision = {**decision, **({"marked": marked} if marked else {})}
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


ACTIONS = {"start": start, "reject": reject}  # approve also writes the approval marks, with a session


def decide(body, caller: Caller, endpoint: Endpoint, sfn, session=None) -> dict:
    """Carry out one request from a verified caller, or raise ApprovalRefused saying why not."""
    if not caller.arn:
        raise Forbidden("no verified caller identity: the endpoint must be a function URL with AuthType AWS_IAM")
    request = parse_body(body)
    if not endpoint.approver_patterns:
        raise Forbidden("no approvers are configured (APPROVER_PRINCIPALS is empty)")
    if not is_allowed(caller.arn, endpoint.approver_patterns):
        raise Forbidden(f"{caller.arn} is not on the approver allow-list")
    if caller.person is None:
        raise Forbidden(f"{caller.arn} is not a person's role session (assumed-role/ROLE/SOURCE-IDENTITY)")
    if request.action == "approve":
        return approve(sfn, request, caller, endpoint, session or aws.new_session(endpoint.region))
    return ACTIONS[request.action](sfn, request, caller, endpoint)
