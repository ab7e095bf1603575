"""The approval endpoint: a Lambda function URL with AuthType AWS_IAM. Start, approve and reject
remediation executions as the caller AWS verified (requestContext.authorizer.iam).

Environment: APPROVER_PRINCIPALS (comma list of principal ARN patterns allowed to start, approve and
reject, e.g. arn:aws:sts::111122223333:assumed-role/OnCall/*); the deployment's REMEDIATION_ROLE_NAME and shortest
APPROVAL_TIMEOUT_SECONDS, SOAK_SECONDS, METRICS_SETTLE_SECONDS (a requester may only lengthen them)."""

import json
import os

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import LambdaFunctionUrlEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from neptune_guard.approve import approvals
from neptune_guard.aws import CLIENT_CONFIG
from neptune_guard.handlers import envelopes

logger = Logger()
tracer = Tracer()


def _response(status: int, body: dict) -> dict:
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}


def _json_body(event: LambdaFunctionUrlEvent):
    try:
        return json.loads(event.decoded_body or "")
    except ValueError:  # also a body that is not valid base64 or UTF-8
        raise approvals.BadRequest("the body must be JSON") from None


@tracer.capture_lambda_handler
@logger.inject_lambda_context(clear_state=True)  # each record names only its own caller
def handler(event: dict, context: LambdaContext) -> dict:
    reason = envelopes.problem(event, envelopes.FUNCTION_URL, "a function URL request")
    if reason:
        logger.warning("refused", status=400, reason=reason)
        return _response(400, {"message": reason})
    return _decide(LambdaFunctionUrlEvent(event), context)


def _decide(event: LambdaFunctionUrlEvent, context: LambdaContext) -> dict:
    # The identity Lambda verified, if any: a request that reached the function without one is refused in decide().
    iam = ((event.get("requestContext") or {}).get("authorizer") or {}).get("iam") or {}
    caller = approvals.Caller(arn=iam.get("userArn"), caller_id=iam.get("callerId"), account_id=iam.get("accountId"))
    logger.append_keys(caller=caller.arn, caller_id=caller.caller_id)
    endpoint = approvals.Endpoint.of_function(context.invoked_function_arn, os.environ.get("APPROVER_PRINCIPALS", ""),
                                              approvals.Safety.from_environment(os.environ))
    sfn = boto3.client("stepfunctions", region_name=endpoint.region, config=CLIENT_CONFIG)
    try:
        if event.request_context.http.method != "POST":
            raise approvals.BadRequest("only POST is accepted")
        answer = approvals.decide(_json_body(event), caller, endpoint, sfn)
    except approvals.ApprovalRefused as refusal:
        logger.warning("refused", status=refusal.status, reason=str(refusal))
        return _response(refusal.status, {"message": str(refusal)})
    logger.info("done", **answer)  # the audit record: who did what to which execution, and when
    return _response(200, answer)
