"""What a remediation step checks before it acts: that it runs for a RUNNING execution of one of our state
machines, started with this very request, past the approval the step needs, with the plan that
execution made, and that the whole event (the step, the state it carries: proofs, stream positions, approvals, and
its arguments) is the input of a task the execution has scheduled and not yet finished, as its history records it.
Nothing is taken from the event on trust: invoking the steps function directly with a crafted event, or replaying
an event of a task that has finished, changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from neptune_guard.remediate.resources import parse_arn, utc

STATE_MACHINE_NAMES = ("NeptuneGuardClusterRemediation", "NeptuneGuardSnapshotRemediation")
# The approval stages each workflow asks for, in order (the `stage` of its request_approval tasks).
STAGES = dict(zip(STATE_MACHINE_NAMES, (("snapshot", "cutover", "decommission"), ("re-encrypt", "delete-original"))))
ALL_STAGES = tuple(stage for stages in STAGES.values() for stage in stages)
APPROVAL_STEP = "request_approval"  # the step whose task token waits on on-call
PLAN_KINDS = ("cluster-plan", "snapshot-plan")
ENDED = ("Succeeded", "Failed", "TimedOut", "StartFailed", "ScheduleFailed", "SubmitFailed", "Aborted")
BRANCHES_ENDED = ("ParallelStateSucceeded", "ParallelStateFailed", "ParallelStateAborted", "MapStateSucceeded", "MapStateFailed",
                  "MapStateAborted")


class NotAuthorizedStep(Exception):
    """The step was invoked for something other than a running execution of ours at the right point."""


@dataclass
class ExecutionRecord:
    started_with: dict
    plan: dict | None = None
    approvals: dict[str, dict] = field(default_factory=dict)
    answered_at: dict[str, str] = field(default_factory=dict)  # stage -> when AWS recorded its answer (ISO 8601, UTC)
    running: set[str] = field(default_factory=set)  # the step events of the tasks scheduled and not finished, canonical JSON


def canonical(event: dict) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"))


def _outputs(events: list[dict]):
    """(kind of task, output, when) of every task that succeeded, in order."""
    for event in events:
        for details_key in ("lambdaFunctionSucceededEventDetails", "taskSucceededEventDetails"):
            details = event.get(details_key)
            if details and details.get("output"):
                try:
                    output = json.loads(details["output"])
                except ValueError:
                    continue
                yield (details_key, output.get("Payload", output) if isinstance(output, dict) and "Payload" in output else output,
                       event["timestamp"])


def scheduled_input(event: dict) -> dict | None:
    """The input a scheduled task was given: a Lambda task's input, or an integration's (lambda:invoke) Payload."""
    try:
        if "lambdaFunctionScheduledEventDetails" in event:
            payload = json.loads(event["lambdaFunctionScheduledEventDetails"].get("input") or "null")
        elif "taskScheduledEventDetails" in event:
            payload = json.loads(event["taskScheduledEventDetails"].get("parameters") or "{}").get("Payload")
        else:
            return None
    except (ValueError, AttributeError):
        return None
    return payload if isinstance(payload, dict) else None


def running_tasks(events: list[dict]) -> dict[int, tuple[dict, dict]]:
    """Scheduled event id -> (that event, the task's input) of each task scheduled and not yet ended, oldest first."""
    return _tasks(events)[0]


def answer_to(events: list[dict], token: str) -> dict | None:
    """The event that ended the task asked with this task token (succeeded, failed, timed out); None while it waits."""
    return next((end for payload, end in _tasks(events)[1].values() if payload.get("task_token") == token), None)


def _tasks(events: list[dict]) -> tuple[dict[int, tuple[dict, dict]], dict[int, tuple[dict, dict]]]:
    """(running, ended): scheduled event id -> (that event, the task's input) of each task not yet ended, and -> (the
    task's input, the event that ended it) of each that did. A task's end (succeeded, failed, timed out) points back
    through `previousEventId` to its start and its scheduling, in its own branch; a Parallel or Map state's end ends
    its branches' tasks (aborted, with no end of their own)."""
    scheduled, ended, previous, branches = {}, {}, {}, []
    for event in events:
        previous[event["id"]] = event.get("previousEventId")
        if event["type"] in ("ParallelStateStarted", "MapStateStarted"):
            branches.append(event["id"])
        elif event["type"] in BRANCHES_ENDED and branches:  # its branches' tasks end with it, aborted ones included
            opened = branches.pop()
            scheduled = {i: task for i, task in scheduled.items() if i < opened}
        payload = scheduled_input(event)
        if payload is not None:
            scheduled[event["id"]] = (event, payload)
        if event["type"].startswith(("Task", "LambdaFunction")) and event["type"].endswith(ENDED):
            at = event.get("previousEventId")
            for _ in range(4):  # scheduled <- started (<- submitted) <- ended
                if at in scheduled:
                    ended[at] = (scheduled.pop(at)[1], event)
                    break
                at = previous.get(at)
    return scheduled, ended


def read_execution(sfn, execution: str, own_account: str | None = None, ended: bool = False) -> ExecutionRecord:
    """The execution as AWS records it; NotAuthorizedStep unless it is an execution of ours, running (or, with
    `ended`, one that has ended)."""
    arn = parse_arn(execution, "execution ARN")
    parts = arn["resource"].split(":")
    if arn["service"] != "states" or len(parts) != 3 or parts[0] != "execution" or parts[1] not in STATE_MACHINE_NAMES:
        raise NotAuthorizedStep(f"{execution} is not an execution of a Neptune Guard state machine")
    if own_account and arn["account"] != own_account:
        raise NotAuthorizedStep(f"{execution} belongs to account {arn['account']}, not {own_account}")
    try:
        described = sfn.describe_execution(executionArn=execution)
        events = [e for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution) for e in page["events"]]
    except ClientError as error:
        raise NotAuthorizedStep(f"{execution}: {error.response['Error']['Message']}") from error
    if (described["status"] == "RUNNING") is ended:
        raise NotAuthorizedStep(f"{execution} is {described['status']}, not {'ended' if ended else 'RUNNING'}")
    record = ExecutionRecord(started_with=json.loads(described.get("input") or "{}"))
    record.running = {canonical(payload) for _, payload in running_tasks(events).values()}
    for source, output, when in _outputs(events):
        if not isinstance(output, dict):
            continue
        if source == "lambdaFunctionSucceededEventDetails" and output.get("kind") in PLAN_KINDS and output.get("execution") == execution:
            record.plan = output
        elif source == "taskSucceededEventDetails" and isinstance(output.get("stage"), str):
            record.approvals[output["stage"]] = output
            record.answered_at[output["stage"]] = utc(when).isoformat()
    return record


def authorize_step(record: ExecutionRecord, event: dict, needs_approval: str | None) -> None:
    """The event's request and plan must be the execution's own, the approval the step needs granted, and the event
    the input of a task of the execution still running (a state with a forged proof, position or approval is none of
    them, and neither is a finished task's)."""
    request, plan = event["state"]["request"], event["state"].get("plan")
    if record.started_with != request:
        differing = sorted(k for k in set(record.started_with) | set(request) if record.started_with.get(k) != request.get(k))
        raise NotAuthorizedStep(f"the request differs from the one the execution was started with: {', '.join(differing)}")
    if plan is not None and plan != record.plan:
        raise NotAuthorizedStep("the plan differs from the one this execution made")
    if needs_approval is not None:
        decision = record.approvals.get(needs_approval, {})
        if decision.get("approved") is not True or decision.get("stage") != needs_approval:
            raise NotAuthorizedStep(f"this step needs the {needs_approval!r} approval, which the execution has not been given")
    if canonical(event) not in record.running:
        raise NotAuthorizedStep(f"this {event['step']} event is not the input of a task the execution is running: its state or "
                                "arguments differ from every running task's, or its task has ended")
