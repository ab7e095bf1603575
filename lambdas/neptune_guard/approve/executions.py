"""What on-call reads from Step Functions, with the approver policy's read-only grants (states:ListExecutions,
DescribeExecution, GetExecutionHistory): which executions wait for an approval, and where one execution is.

Only boto3: the CLI installs without the Lambda packages. The approval endpoint reads the pending approval itself
(approvals.pending_approval) before it answers; nothing here decides anything.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from neptune_guard.remediate.guard import APPROVAL_STEP, STAGES, STATE_MACHINE_NAMES, running_tasks
from neptune_guard.remediate.notifications import readable_cause

CLUSTER_STATE_MACHINE, SNAPSHOT_STATE_MACHINE = STATE_MACHINE_NAMES


def state_machine_of(execution_arn: str) -> str:
    """The state machine name in arn:PARTITION:states:REGION:ACCOUNT:execution:MACHINE:NAME."""
    parts = execution_arn.split(":")
    return parts[6] if len(parts) >= 8 and parts[5] == "execution" else ""


def stages_of(execution_arn: str) -> tuple[str, ...]:
    return STAGES.get(state_machine_of(execution_arn), ())


def state_machine_arns(partition: str, region: str, account_id: str) -> list[str]:
    return [f"arn:{partition}:states:{region}:{account_id}:stateMachine:{name}" for name in STAGES]


def history(sfn, execution_arn: str) -> list[dict]:
    return [event for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
            for event in page["events"]]


def _iso(moment) -> str | None:
    if moment is None:
        return None
    if isinstance(moment, str):
        return moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def waiting_approval(events: list[dict]) -> dict | None:
    """The approval the execution waits on now: the last request_approval task scheduled and not yet ended."""
    tasks = [(event, payload) for event, payload in running_tasks(events).values() if payload.get("step") == APPROVAL_STEP]
    if not tasks:
        return None
    event, payload = tasks[-1]
    asked = event.get("timestamp")
    timeout = (event.get("taskScheduledEventDetails") or {}).get("timeoutInSeconds") or (
        (payload.get("state") or {}).get("plan") or {}).get("approval_timeout_seconds")
    deadline = asked + timedelta(seconds=int(timeout)) if isinstance(asked, datetime) and timeout else None
    return {"stage": payload.get("stage"), "asked_at": _iso(asked), "deadline": _iso(deadline),
            "write_check": (payload.get("state") or {}).get("write_check")}


def _request(description: dict) -> dict:
    try:
        document = json.loads(description.get("input") or "{}")
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def pending(sfn, state_machines: list[str]) -> list[dict]:
    """Every running execution of the workflows that waits for an approval: what, where, who asked, until when."""
    found = []
    for machine in state_machines:
        try:
            pages = list(sfn.get_paginator("list_executions").paginate(stateMachineArn=machine, statusFilter="RUNNING"))
        except sfn.exceptions.StateMachineDoesNotExist:
            continue
        for execution in (e for page in pages for e in page["executions"]):
            arn = execution["executionArn"]
            waiting = waiting_approval(history(sfn, arn))
            if waiting is None:
                continue
            request = _request(sfn.describe_execution(executionArn=arn))
            found.append({
                "stage": waiting["stage"], "resource": request.get("cluster_id") or request.get("snapshot_id"),
                "resource_type": "cluster" if request.get("cluster_id") else "snapshot",
                "account_id": request.get("account_id"), "region": request.get("region"),
                "requested_by": request.get("requested_by"), "asked_at": waiting["asked_at"], "deadline": waiting["deadline"],
                "writes_detected": bool((waiting.get("write_check") or {}).get("writes_detected")), "execution_arn": arn,
            })
    return sorted(found, key=lambda p: (p["deadline"] or "", p["execution_arn"]))


def _state_data(events: list[dict]) -> tuple[str | None, dict]:
    """(the state it is in or ended in, the latest state data the history shows)."""
    current, data = None, {}
    for event in events:
        for key, field in (("stateEnteredEventDetails", "input"), ("stateExitedEventDetails", "output")):
            details = event.get(key)
            if details:
                if key == "stateEnteredEventDetails":
                    current = details.get("name")
                try:
                    loaded = json.loads(details.get(field) or "null")
                except ValueError:
                    loaded = None
                if isinstance(loaded, dict) and "request" in loaded:
                    data = loaded
    return current, data


def serving_and_retained(data: dict) -> tuple[str, list[str]]:
    """Who answers on the cluster's name, and what the workflow keeps, from the state data (cluster workflow)."""
    plan = data.get("plan") or {}
    name = plan.get("cluster_id") or data.get("request", {}).get("cluster_id")
    retained = []
    if not plan:
        return f"{name}: the original, untouched (nothing planned yet)", retained
    if data.get("rollback") is not None:
        serving = f"{name}: the original (rolled back)"
    elif "cutover" in data:
        serving = f"{name}: the new cluster, encrypted with {plan.get('target_key_arn')} (cut over)"
    elif "moved_aside" in data:
        serving = (f"nothing: the original is renamed {plan.get('retired_cluster_id')} and the new cluster "
                   f"{plan.get('new_cluster_id')} does not have the name {name} yet")
    else:
        serving = f"{name}: the original"
    if "snapshot" in data and "decommissioned" not in data:
        retained.append(f"snapshot {plan.get('snapshot_id')} (the workflow's snapshot of the original)")
    if "retired" in data and "decommissioned" not in data:
        retained.append(f"cluster {plan.get('retired_cluster_id')} (the original, stopped, until decommissioned)")
    if "restored" in data and "cutover" not in data and data.get("rollback") is None:
        retained.append(f"cluster {plan.get('new_cluster_id')} (the new cluster, not serving yet)")
    if "archive" in data:
        retained.append(f"snapshot {plan.get('archive_snapshot_id')} (the original's archive under the key)")
    return serving, retained


def status(sfn, execution_arn: str) -> dict:
    description = sfn.describe_execution(executionArn=execution_arn)
    events = history(sfn, execution_arn)
    current, data = _state_data(events)
    request = data.get("request") or _request(description)
    waiting = waiting_approval(events) if description["status"] == "RUNNING" else None
    document = {
        "execution_arn": execution_arn, "status": description["status"], "state": current,
        "resource": request.get("cluster_id") or request.get("snapshot_id"),
        "account_id": request.get("account_id"), "region": request.get("region"), "requested_by": request.get("requested_by"),
        "started_at": _iso(description.get("startDate")), "stopped_at": _iso(description.get("stopDate")),
        "waiting_for": waiting and {k: waiting[k] for k in ("stage", "asked_at", "deadline")},
        "approvals": {stage: {k: v for k, v in (answer or {}).items() if k in ("approved", "approver", "at", "reason")}
                      for stage, answer in (data.get("approvals") or {}).items() if isinstance(answer, dict)},
    }
    if description["status"] != "RUNNING":
        document["error"] = description.get("error")
        document["cause"] = readable_cause(description.get("cause") or (data.get("error") or {}).get("Cause"))
    if state_machine_of(execution_arn) == CLUSTER_STATE_MACHINE:
        document["serving"], document["retained"] = serving_and_retained(data)
    return document
