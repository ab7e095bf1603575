"""What on-call reads: one SNS message per question or outcome, in three forms.

- The subject names the stage (or outcome), the resource, the account and the region (SNS: ASCII, under 100 characters).
- Email gets a short plain-text body whose commands paste into bash as they are (quoted with shlex).
- Everything else (Slack and Teams through AWS Chatbot, now Amazon Q Developer in chat applications, and HTTPS, SQS or
  Lambda subscribers) gets the custom-notification JSON that Chatbot renders: version "1.0", source "custom", content
  {textType, title, description, nextSteps}, metadata.
- The full JSON for machines (plan, write check, IAM authentication) rides along as the message attribute
  `neptune_guard_detail`.

https://docs.aws.amazon.com/chatbot/latest/adminguide/custom-notifs.html
https://docs.aws.amazon.com/sns/latest/api/API_Publish.html (Subject, MessageStructure, MessageAttributes)
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

SUBJECT_LIMIT = 99  # SNS: "less than 100 characters"
DETAIL_ATTRIBUTE = "neptune_guard_detail"
URL_HINT = "The commands call the approval endpoint in $NEPTUNE_GUARD_APPROVAL_URL (the security stack's ApprovalUrl output)."
OUTCOME_WORDS = {
    "SUCCEEDED": "succeeded", "CUT_OVER": "cut over", "DECOMMISSIONED": "decommissioned", "RETAINED": "original retained",
    "ROLLED_BACK": "rolled back", "ROLLBACK_FAILED": "ROLLBACK FAILED", "NEEDS_ATTENTION": "NEEDS ATTENTION",
    "ORIGINAL_GONE": "retired original deleted outside the workflow",
}


@dataclass(frozen=True)
class Notification:
    subject: str
    text: str
    chatbot: dict
    detail: dict

    def sns_arguments(self, topic_arn: str) -> dict:
        """Publish arguments: email gets the text, every other protocol the Chatbot JSON, all the detail attribute."""
        return {
            "TopicArn": topic_arn, "Subject": self.subject, "MessageStructure": "json",
            "Message": json.dumps({"default": json.dumps(self.chatbot), "email": self.text}),
            "MessageAttributes": {DETAIL_ATTRIBUTE: {"DataType": "String", "StringValue": json.dumps(self.detail, default=str)}},
        }


def subject(headline: str, resource: str, account_id: str, region: str) -> str:
    """`<headline>: <resource> in <account> <region>`, the resource shortened (never the rest) to fit SNS's limit."""
    tail = f" in {account_id} {region}"
    room = SUBJECT_LIMIT - len(headline) - 2 - len(tail)
    if len(resource) > room:
        resource = resource[: max(room - 3, 1)] + "..."
    text = f"{headline}: {resource}{tail}"
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:SUBJECT_LIMIT]


def command(*words: str) -> str:
    """A command line that bash reads back as exactly these words."""
    return shlex.join(["neptune-guard", *words])


def answer_commands(execution: str, stage: str, writes_detected: bool = False) -> dict[str, str]:
    approve = ["approve", execution, "--stage", stage] + (["--accept-write-loss"] if writes_detected else [])
    return {
        "approve": command(*approve),
        "reject": command("reject", execution, "--stage", stage, "--reason", "<why>"),
        "status": command("status", execution),
    }


def resource_of(request: dict) -> tuple[str, str]:
    """(kind, identifier) of what a workflow acts on."""
    return ("cluster", request["cluster_id"]) if request.get("cluster_id") else ("snapshot", request.get("snapshot_id") or "?")


def approval(execution: str, stage: str, request: dict, question: str, deadline: str | None, writes_detected: bool = False,
             detail: dict | None = None) -> Notification:
    kind, resource = resource_of(request)
    account, region = request.get("account_id", "?"), request.get("region", "?")
    commands = answer_commands(execution, stage, writes_detected)
    headline = f"Neptune Guard {stage} approval"
    where = f"{kind} {resource}, account {account}, region {region}"
    lines = [
        f"Neptune Guard waits for your {stage} approval: {where}.",
        "",
        question,
        "",
        f"Requested by: {request.get('requested_by') or 'unknown'}",
        f"Answer by:    {deadline or 'the approval timeout'} (unanswered, the execution stops waiting and the original stays as it is)",
        "",
        f"Approve: {commands['approve']}",
        f"Reject:  {commands['reject']}",
        f"Status:  {commands['status']}",
        URL_HINT,
    ]
    if writes_detected:
        lines.insert(2, "WRITES DETECTED after the snapshot: approving loses them. Reject unless you mean to lose them.")
    chatbot = {
        "version": "1.0", "source": "custom",
        "content": {
            "textType": "client-markdown",
            "title": f":hourglass: {headline}: {kind} {resource}",
            "description": "\n".join(filter(None, [
                f"*{where}*",
                ":warning: *Writes detected after the snapshot: approving loses them.*" if writes_detected else "",
                question,
                f"Requested by `{request.get('requested_by') or 'unknown'}`; answer by {deadline or 'the approval timeout'}.",
            ])),
            "nextSteps": [f"Approve: `{commands['approve']}`", f"Reject: `{commands['reject']}`", f"Status: `{commands['status']}`",
                          URL_HINT],
            "keywords": [stage, account, region],
        },
        "metadata": {
            "threadId": execution.rsplit(":", 1)[-1], "summary": f"{headline}: {kind} {resource}",
            "eventType": "NeptuneGuardApprovalNeeded", "relatedResources": [execution],
            "additionalContext": {"execution": execution, "stage": stage, "account_id": account, "region": region, kind: resource},
        },
    }
    full = {"question": question, "execution": execution, "stage": stage, "deadline": deadline, **commands, **(detail or {})}
    return Notification(subject(headline, f"{kind} {resource}", account, region), "\n".join(lines), chatbot, full)


def readable_cause(cause: str | None) -> str | None:
    """A Lambda task's failure reaches Step Functions as its error in JSON (`errorType`, `errorMessage`, `stackTrace`):
    the message is what a person reads."""
    try:
        body = json.loads(cause)
    except (TypeError, ValueError):
        return cause
    return (body.get("errorMessage") or cause) if isinstance(body, dict) else cause


def outcome(execution: str, request: dict, outcome_code: str, error: dict | None, detail: dict | None = None,
            notes: tuple[str, ...] = ()) -> Notification:
    kind, resource = resource_of(request)
    account, region = request.get("account_id", "?"), request.get("region", "?")
    words = OUTCOME_WORDS.get(outcome_code, outcome_code.replace("_", " ").lower())
    headline = f"Neptune Guard {words}"
    status = command("status", execution)
    cause = readable_cause((error or {}).get("Cause")) or (error or {}).get("Error")
    lines = [f"Remediation of {kind} {resource} (account {account}, region {region}): {words}.",
             *([f"Why: {cause}"] if cause else []), *notes, f"Execution: {execution}", f"Status:  {status}"]
    chatbot = {
        "version": "1.0", "source": "custom",
        "content": {"textType": "client-markdown", "title": f"{headline}: {kind} {resource}",
                    "description": "\n".join([f"*{kind} {resource}, account {account}, region {region}*", *([cause] if cause else []), *notes]),
                    "nextSteps": [f"Status: `{status}`"], "keywords": [outcome_code, account, region]},
        "metadata": {"threadId": execution.rsplit(":", 1)[-1], "summary": f"{headline}: {kind} {resource}",
                     "eventType": "NeptuneGuardOutcome", "relatedResources": [execution],
                     "additionalContext": {"execution": execution, "outcome": outcome_code, "account_id": account, "region": region}},
    }
    full = {"outcome": outcome_code, "execution": execution, "error": error, **(detail or {})}
    return Notification(subject(headline, f"{kind} {resource}", account, region), "\n".join(lines), chatbot, full)
