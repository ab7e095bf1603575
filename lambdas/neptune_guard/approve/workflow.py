"""Starting remediation executions. Their approvals are answered by the approval endpoint (approvals.py)."""

from __future__ import annotations

import hashlib
import json
import re


def execution_name(request: dict) -> str:
    """Deterministic per resource, whatever key is asked for or however the identifier is spelled (Neptune
    identifiers are case-insensitive): while one execution runs for a resource, no second one can start."""
    resource = str(request.get("cluster_id") or request.get("snapshot_id") or "resource").lower()
    kind = "cluster" if request.get("cluster_id") else "snapshot"
    basis = json.dumps([request["account_id"], request["region"], kind, resource])
    return f"{re.sub(r'[^a-z0-9_-]', '-', resource)[:40]}-{hashlib.sha256(basis.encode()).hexdigest()[:16]}"


MAX_ATTEMPTS_PER_RESOURCE = 50


class TooManyAttempts(RuntimeError):
    """Every attempt's name for the resource is taken: something keeps failing, and a person should look first."""


def _attempts(state_machine_arn: str, request: dict):
    """(name, execution ARN) of each attempt for the request's resource, in order: execution names stay taken for 90
    days, so attempts after the first are numbered."""
    base = execution_name(request)
    for attempt in range(1, MAX_ATTEMPTS_PER_RESOURCE + 1):
        name = base if attempt == 1 else f"{base}-{attempt}"
        yield name, state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
    raise TooManyAttempts(f"{MAX_ATTEMPTS_PER_RESOURCE} executions already ran for {base}; look at why before trying again")


def next_execution(sfn, state_machine_arn: str, request: dict) -> str:
    """The execution `start` would return for this request now: the one running for the resource, else the first
    attempt's name not yet taken. What a plan names (every name the execution derives comes from it)."""
    for _, arn in _attempts(state_machine_arn, request):
        try:
            if sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
                return arn
        except sfn.exceptions.ExecutionDoesNotExist:
            return arn


def start(sfn, state_machine_arn: str, request: dict) -> str:
    """The execution for this request. While one runs for the same resource (with any key), it is returned, not
    duplicated: one remediation per resource at a time. Once it has finished (rolled back, rejected, timed out), a new
    attempt starts."""
    for name, arn in _attempts(state_machine_arn, request):
        try:
            return sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(request))["executionArn"]
        except sfn.exceptions.ExecutionAlreadyExists:
            if sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
                return arn
