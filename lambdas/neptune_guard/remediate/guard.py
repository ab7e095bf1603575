"""What a remediation step checks before it acts: that it runs for a RUNNING execution of one of our state
machines, started with this very request, past the approval the step needs, with the plan that
execution made, and that the whole event (the step, the state it carries: proofs, stream positions, approvals, and
its arguments) is one the execution itself scheduled, as its history records the task's parameters. Nothing is
taken from the event on trust: invoking the steps function directly with a crafted event changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from neptune_guard.remediate.resources import parse_arn

STATE_MACHINE_NAMES = ("NeptuneGuardClusterRemediation", "NeptuneGuardSnapshotRemediation")
PLAN_KINDS = ("cluster-plan", "snapshot-plan")


class NotAuthorizedStep(Exception):
    """The step was invoked for something other than a running execution of ours at the right point."""


@dataclass
class ExecutionRecord:
    started_with: dict
    plan: dict | None = None
    approvals: dict[str, dict] = field(default_factory=dict)
    scheduled: set[str] = field(default_factory=set)  # every step event the execution scheduled, as canonical JSON


def canonical(event: dict) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"))


def _outputs(events: list[dict]):
    """(kind of task, output) of every task that succeeded, in order."""
    for event in events:
        for details_key in ("lambdaFunctionSucceededEventDetails", "taskSucceededEventDetails"):
            details = event.get(details_key)
            if details and details.get("output"):
                try:
                    output = json.loads(details["output"])
                except ValueError:
                    continue
                yield details_key, output.get("Payload", output) if isinstance(output, dict) and "Payload" in output else output


def read_execution(sfn, execution: str, own_account: str | None = None) -> ExecutionRecord:
    """The execution as AWS records it; NotAuthorizedStep unless it is a running execution of ours."""
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
    if described["status"] != "RUNNING":
        raise NotAuthorizedStep(f"{execution} is {described['status']}, not RUNNING")
    record = ExecutionRecord(started_with=json.loads(described.get("input") or "{}"))
    for event in events:
        try:  # a Lambda task's input, or an integration's (lambda:invoke) Payload
            if "lambdaFunctionScheduledEventDetails" in event:
                payload = json.loads(event["lambdaFunctionScheduledEventDetails"].get("input") or "null")
            else:
                payload = json.loads((event.get("taskScheduledEventDetails") or {}).get("parameters") or "{}").get("Payload")
        except (ValueError, AttributeError):
            continue
        if isinstance(payload, dict):
            record.scheduled.add(canonical(payload))
    for source, output in _outputs(events):
        if not isinstance(output, dict):
            continue
        if source == "lambdaFunctionSucceededEventDetails" and output.get("kind") in PLAN_KINDS and output.get("execution") == execution:
            record.plan = output
        elif source == "taskSucceededEventDetails" and isinstance(output.get("stage"), str):
            record.approvals[output["stage"]] = output
    return record


def authorize_step(record: ExecutionRecord, event: dict, needs_approval: str | None) -> None:
    """The event's request and plan must be the execution's own, the approval the step needs granted, and the event
    one the execution scheduled (a state with a forged proof, position or approval is none of them)."""
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
    if canonical(event) not in record.scheduled:
        raise NotAuthorizedStep(f"this {event['step']} event is not one the execution scheduled: its state or arguments differ "
                                "from every task the execution ran")
