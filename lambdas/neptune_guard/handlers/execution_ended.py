"""Step Functions announces that a remediation execution ended ("Step Functions Execution Status Change", through
EventBridge): the approval marks it still holds come off, a new cluster that served production is handed over, and a
replicator left behind is removed (remediate/ended.py). The event only names the execution: that it ended, where it ran
and what its plan names are read from Step Functions, never taken from the event. A replicator whose interfaces Lambda
is still releasing fails the invocation, so that Lambda retries the event; past its retries, the ExecutionEndedErrors
alarm tells on-call.

The same event comes again through a queue that delivers it later than any step can still run (`delivered_late`):
stopping an execution does not stop a step already running, which can mark, hand over or make a replicator after the
first release; the second release finds and releases what it did (a release run twice changes nothing more)."""

import json

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from neptune_guard.aws import CLIENT_CONFIG
from neptune_guard.handlers import envelopes
from neptune_guard.remediate import ended, guard
from neptune_guard.remediate.resources import Step, parse_arn

logger = Logger()
tracer = Tracer()


@tracer.capture_lambda_handler
@logger.inject_lambda_context
@envelopes.checked(envelopes.EXECUTION_STATUS_CHANGE, "a Step Functions execution status change")
def handler(event: dict, context: LambdaContext) -> dict:
    return _release(event, context)


@tracer.capture_lambda_handler
@logger.inject_lambda_context
@envelopes.checked(envelopes.SQS, "an SQS batch")
def delivered_late(event: dict, context: LambdaContext) -> dict:
    """The queue's delivery, one status change a message (batch size 1): a failure leaves the message for SQS to deliver
    again, then to its dead-letter queue, which alarms on-call."""
    released = []
    for record in event["Records"]:
        try:
            change = json.loads(record["body"])
        except ValueError:
            change = None
        reason = envelopes.problem(change, envelopes.EXECUTION_STATUS_CHANGE, "a Step Functions execution status change")
        if reason:
            raise envelopes.InvalidEvent(reason)
        released.append(_release(change, context))
    return {"released": released}


def _release(event: dict, context: LambdaContext) -> dict:
    execution = event["detail"]["executionArn"]
    logger.append_keys(execution=execution)
    function = parse_arn(context.invoked_function_arn, "function ARN")
    sfn = boto3.client("stepfunctions", region_name=function["region"], config=CLIENT_CONFIG)
    try:
        record = guard.read_execution(sfn, execution, function["account"], ended=True)
    except guard.NotAuthorizedStep as refusal:  # not ours, not ended: nothing to release (and nothing to retry)
        logger.warning("refused", reason=str(refusal))
        return {"released": [], "refused": str(refusal)}
    step = Step(request=record.started_with, execution=execution, plan=record.plan)
    released = ended.release(step)
    released["finding"] = ended.note_outcome(step, sfn.describe_execution(executionArn=execution)["status"])
    logger.info("released", **released)
    return released
