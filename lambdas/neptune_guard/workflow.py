"""Starting remediation executions and answering their approvals.

Approval is an IAM-authorised call (states:SendTaskSuccess / SendTaskFailure on the state machine's
tasks, and states:GetExecutionHistory to find the waiting task): there is no link to click. The
approver's identity, from STS, is recorded in the execution's output and, from there, in the finding.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone

from . import aws

APPROVAL_STEP = "request_approval"


class NoPendingApproval(Exception):
    pass


def execution_name(request: dict) -> str:
    """Deterministic per resource, whatever key is asked for or however the identifier is spelled (Neptune
    identifiers are case-insensitive): while one execution runs for a resource, no second one can start."""
    resource = str(request.get("cluster_id") or request.get("snapshot_id") or "resource").lower()
    kind = "cluster" if request.get("cluster_id") else "snapshot"
    basis = json.dumps([request["account_id"], request["region"], kind, resource])
    return f"{re.sub(r'[^a-z0-9_-]', '-', resource)[:40]}-{hashlib.sha256(basis.encode()).hexdigest()[:16]}"


MAX_ATTEMPTS_PER_RESOURCE = 50


def start(sfn, state_machine_arn: str, request: dict) -> str:
    """The execution for this request. While one runs for the same resource (with any key), it is returned, not
    duplicated: one remediation per resource at a time. Once it has finished (rolled back, rejected, timed out), a new attempt
    starts: execution names stay taken for 90 days, so attempts are numbered."""
    base = execution_name(request)
    for attempt in range(1, MAX_ATTEMPTS_PER_RESOURCE + 1):
        name = base if attempt == 1 else f"{base}-{attempt}"
        try:
            return sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(request))["executionArn"]
        except sfn.exceptions.ExecutionAlreadyExists:
            existing = state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
            if sfn.describe_execution(executionArn=existing)["status"] == "RUNNING":
                return existing
    raise RuntimeError(f"{MAX_ATTEMPTS_PER_RESOURCE} executions already ran for {base}; look at why before trying again")


def pending_approval(sfn, execution_arn: str) -> dict:
    """The approval the execution waits on now: its stage and task token, from the execution history."""
    events = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
        events += page["events"]
    pending = None
    for event in events:
        details = event.get("taskScheduledEventDetails")
        if details:
            payload = json.loads(details["parameters"]).get("Payload", {})
            is_approval = payload.get("step") == APPROVAL_STEP
            pending = {"stage": payload["stage"], "token": payload["task_token"], "plan": payload["state"].get("plan")} if is_approval else None
        elif event["type"] in ("TaskSucceeded", "TaskFailed", "TaskTimedOut", "TaskStateExited"):
            pending = None
    if pending is None:
        raise NoPendingApproval(f"execution {execution_arn} is not waiting for an approval")
    return pending


def _answering(session, execution_arn: str) -> tuple:
    """(Step Functions client, the pending approval, who is answering it)."""
    sfn = session.client("stepfunctions", region_name=execution_arn.split(":")[3], config=aws.CLIENT_CONFIG)
    pending = pending_approval(sfn, execution_arn)
    sts = session.client("sts", region_name=aws.home_region(session), config=aws.CLIENT_CONFIG)
    return sfn, pending, sts.get_caller_identity()["Arn"]


def approve(session, execution_arn: str, accept_write_loss: bool = False) -> dict:
    sfn, pending, approver = _answering(session, execution_arn)
    decision = {"approved": True, "approver": approver, "stage": pending["stage"], "accept_write_loss": accept_write_loss,
                "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    sfn.send_task_success(taskToken=pending["token"], output=json.dumps(decision))
    return decision


def reject(session, execution_arn: str, reason: str) -> dict:
    sfn, pending, approver = _answering(session, execution_arn)
    sfn.send_task_failure(taskToken=pending["token"], error="Rejected", cause=f"rejected by {approver}: {reason}"[:32768])
    return {"approved": False, "approver": approver, "stage": pending["stage"], "reason": reason}
