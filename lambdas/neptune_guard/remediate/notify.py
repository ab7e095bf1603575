"""What people are told: the approval questions, the outcome, and the Security Hub finding resolved."""

from __future__ import annotations

import json
import os
import shlex
from datetime import timedelta

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from neptune_guard import aws
from neptune_guard.remediate import endpoints, finding_notes
from neptune_guard.remediate.plan import DEFAULT_APPROVAL_TIMEOUT_SECONDS
from neptune_guard.remediate.resources import Step, iso, parse_arn, utcnow
from neptune_guard.tags import (CREATED_BY, CUTOVER, DECOMMISSION_APPROVED_BY, REPLACED_BY, RETAINED_UNTIL, RETIRED_BY,
                               SERVED)


def request_approval(step: Step, stage: str, task_token: str) -> dict:
    """Tell on-call what is asked of them; the execution waits for `approve` or `reject`."""
    from neptune_guard.remediate import notifications

    plan, state = step.plan, step.state
    requested_at = utcnow()
    deadline = iso(requested_at + timedelta(seconds=int(plan.get("approval_timeout_seconds", DEFAULT_APPROVAL_TIMEOUT_SECONDS))))
    question = plan["questions"][stage]
    detail = {"plan": plan}
    writes_detected = False
    if stage == "cutover" and plan.get("path") == "streams":
        replication = state.get("replication", {})
        detail["replication_lag"] = {k: replication.get(k) for k in ("lag_records", "lag_counted", "lag_seconds", "latest", "positions")}
        at_least = "" if replication.get("lag_counted", True) else "at least "
        question = (f"The new cluster is {at_least}{replication.get('lag_records')} records ({replication.get('lag_seconds')} s) behind "
                    f"{plan['cluster_id']}, replicating continuously. STOP WRITES to {plan['cluster_id']}, then approve: the "
                    "workflow drains to the original's last committed event, proves the new cluster's position equals it "
                    "(commit and operation numbers), and swaps the names; resume writes when the execution reports CUT_OVER. "
                    f"Replication looks for your answer every {replication.get('pause_seconds', 5)} s now, less often the longer "
                    "it waits (never more than a tenth of the wait): stop writes just before you answer. " + question)
    if stage == "cutover":
        writes = state.get("write_check", {})
        detail["write_activity"] = writes
        writes_detected = bool(writes.get("writes_detected"))
        if writes_detected:
            question = (f"WRITES DETECTED on {plan['cluster_id']} after its snapshot ({writes['metrics']}). A cutover "
                        "now would lose them. Reject (the original keeps serving; re-run once writes are stopped), "
                        "or approve with --accept-write-loss to lose them on purpose. " + question)
        new_id = state.get("verified", {}).get("resource_id")
        detail["iam_authentication"] = {
            **plan["iam_authentication"], "new_resource_id": new_id,
            "update": f"IAM policies granting neptune-db:* on {plan['cluster_resource_id']} must name {new_id} after the cutover",
        }
    if stage == "decommission":
        question = " ".join((*_endpoints_not_moved(step), question))
    send_notification(notifications.approval(step.execution, stage, step.request, question, deadline, writes_detected, detail))
    return {"requested_at": iso(requested_at)}


def resolve_finding(step: Step) -> dict:
    """The finding that started the execution says it was remediated, by whom approved (the next scan finds it PASSED)."""
    finding = step.request.get("finding")
    if not finding:
        return {"finding": None}
    approvers = sorted({d.get("approver") for d in step.state.get("approvals", {}).values() if isinstance(d, dict) and d.get("approver")})
    writes = step.state.get("final_write_check", {})
    note = (f"remediated: {step.plan['summary']} Approved by {', '.join(approvers) or 'unknown'}."
            + (" WRITE LOSS ACCEPTED by on-call." if writes.get("writes_detected") else ""))
    finding_notes.note_remediation(finding_notes.findings_client(step.request["account_id"], step.request["region"], step.base),
                                   finding, step.execution, note)
    return {"finding": finding["id"], "note": note}


def notify(step: Step, outcome: str) -> dict:
    from neptune_guard.remediate import notifications

    served = (step.state.get("rollback") or {}).get("served_writes") or {}
    quiet = (step.state.get("retired") or {}).get("quiet_at_retire") or {"proven": True}
    notes = ((served["note"],) if "note" in served else ()) + (() if quiet["proven"] else (
        f"WRITES AFTER THE CUTOVER reached the retired original {step.plan['retired_cluster_id']} (first commit: "
        f"{quiet['past_position']}): they are not in {step.plan['cluster_id']}. It is kept, and decommission will refuse to "
        "delete it until a person has reconciled them.",))
    notes += _endpoints_not_moved(step) + hand_over_note(step)
    if step.state.get("release_error"):
        notes += (f"This execution's tags could not be taken off the kept {step.plan['retired_cluster_id']} "
                  f"({step.state['release_error'].get('Error')}): while its marks stay, the remediation role may still stop, change "
                  f"or delete it, and while its retirement tags stay the scan counts it as kept on purpose. Remove {CUTOVER}, "
                  f"{DECOMMISSION_APPROVED_BY} and {RETIRED_BY} naming {step.execution}, with {REPLACED_BY} and {RETAINED_UNTIL}, "
                  "from it, its instances and its automated backups (aws rds remove-tags-from-resource).",)
    send_notification(notifications.outcome(step.execution, step.request, outcome, step.state.get("error"), {
        "rollback": step.state.get("rollback"), "needs_attention": step.state.get("bookkeeping_error"), "plan": step.plan}, notes))
    return {"notified": outcome}


def hand_over_note(step: Step) -> tuple[str, ...]:
    """A hand-over that failed, in its own field (`hand_over_error`): a retirement that fails after it must not hide it."""
    failed = step.state.get("hand_over_error")
    if not failed:
        return ()
    return (f"{step.plan['cluster_id']}, which serves now, could not be handed over ({failed.get('Error')}): while it and its "
            f"instances carry {CREATED_BY} naming {step.execution}, the remediation role may still stop, change or delete them. "
            f"The end of this execution hands them over; to do it now, remove that tag and {SERVED} from them "
            "(aws rds remove-tags-from-resource).",)


def _endpoints_not_moved(step: Step) -> tuple[str, ...]:
    """The custom endpoints a failed move left off the serving cluster, and the commands that finish it: the cutover
    stands (moving back would need the recreated endpoints deleted, which the remediation role may not do). A fault
    reading them is said, not raised: the question or the notification it is part of still goes out."""
    from neptune_guard.remediate import notifications

    failed = step.state.get("custom_endpoints")
    try:
        lacking = endpoints.not_moved(step)
    except (ClientError, BotoCoreError) as error:
        return (f"CUSTOM ENDPOINTS MAY NOT HAVE MOVED to {step.plan['cluster_id']} ({failed.get('Error')}), and reading them failed "
                f"({error}): check with aws neptune describe-db-cluster-endpoints --db-cluster-identifier {step.plan['cluster_id']}.",)
    if not lacking:
        return ()
    cluster = step.plan["cluster_id"]
    commands = []
    for endpoint, found in lacking:
        if found is not None:
            commands.append(shlex.join(["aws", "neptune", "delete-db-cluster-endpoint", "--db-cluster-endpoint-identifier", endpoint["id"]]))
            # Deletion takes a while: the same identifier is free only once the endpoint is gone.
            commands.append(f"repeat {shlex.join(['aws', 'neptune', 'describe-db-cluster-endpoints', '--db-cluster-endpoint-identifier', endpoint['id']])} "
                            "until it answers DBClusterEndpointNotFoundFault")
        members = [*(["--static-members", *endpoint["static_members"]] if endpoint["static_members"] else []),
                   *(["--excluded-members", *endpoint["excluded_members"]] if endpoint["excluded_members"] else [])]
        tags = ["--tags", json.dumps([{"Key": t["Key"], "Value": t["Value"]} for t in endpoint["tags"]])] if endpoint["tags"] else []
        commands.append(shlex.join(["aws", "neptune", "create-db-cluster-endpoint", "--db-cluster-identifier", cluster,
                                    "--db-cluster-endpoint-identifier", endpoint["id"], "--endpoint-type", endpoint["type"],
                                    *members, *tags]))
    cause = notifications.readable_cause(failed.get("Cause")) or failed["Error"]
    return (f"CUSTOM ENDPOINTS NOT MOVED to {cluster} ({cause}): {', '.join(e['id'] for e, _ in lacking)}; applications that use "
            f"them get no answer (or reach the retired original) until a person runs: {'; '.join(commands)}.",)


def send_notification(notification) -> None:
    """Publish a notifications.Notification to the on-call topic (email: the short text; chat and machines: the
    Chatbot JSON; the full detail as a message attribute)."""
    topic = os.environ.get("NOTIFICATION_TOPIC_ARN")
    if topic:
        boto3.client("sns", region_name=parse_arn(topic, "topic ARN")["region"], config=aws.CLIENT_CONFIG).publish(
            **notification.sns_arguments(topic))
