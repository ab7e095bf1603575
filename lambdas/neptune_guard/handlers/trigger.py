"""Security Hub custom action "Remediate with CMK" -> the remediation state machines.

Environment: CLUSTER_STATE_MACHINE_ARN, SNAPSHOT_STATE_MACHINE_ARN, TARGET_KEY, REMEDIATION_ROLE_NAME,
APPROVAL_TIMEOUT_SECONDS, SOAK_SECONDS, METRICS_SETTLE_SECONDS."""

import os

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from neptune_guard.approve.trigger import TriggerConfig, trigger
from neptune_guard.aws import CLIENT_CONFIG, DEFAULT_AUDIT_ROLE
from neptune_guard.handlers import envelopes
from neptune_guard.remediate.resources import parse_arn

logger = Logger()
tracer = Tracer()


def config_from_environment(requested_by: str) -> TriggerConfig:
    return TriggerConfig(
        cluster_state_machine_arn=os.environ["CLUSTER_STATE_MACHINE_ARN"],
        snapshot_state_machine_arn=os.environ["SNAPSHOT_STATE_MACHINE_ARN"],
        target_key=os.environ["TARGET_KEY"],
        remediation_role_name=os.environ.get("REMEDIATION_ROLE_NAME", "NeptuneGuardRemediation"),
        approval_timeout_seconds=int(os.environ.get("APPROVAL_TIMEOUT_SECONDS", "86400")),
        requested_by=requested_by,
        access_role_name=os.environ.get("TRIGGER_ACCESS_ROLE_NAME", "NeptuneGuardTriggerAccess"),
        findings_role_name=os.environ.get("AUDIT_ROLE_NAME") or DEFAULT_AUDIT_ROLE,
        soak_seconds=int(os.environ.get("SOAK_SECONDS", str(7 * 24 * 3600))),
        metrics_settle_seconds=int(os.environ.get("METRICS_SETTLE_SECONDS", "600")),
    )


@tracer.capture_lambda_handler
@logger.inject_lambda_context
@envelopes.checked(envelopes.EVENTBRIDGE, "a Security Hub custom action event")
@event_source(data_class=EventBridgeEvent)
def handler(event: EventBridgeEvent, context: LambdaContext) -> dict:
    region = parse_arn(os.environ["CLUSTER_STATE_MACHINE_ARN"], "state machine ARN")["region"]
    own_identity = boto3.client("sts", region_name=region, config=CLIENT_CONFIG).get_caller_identity()["Arn"]
    config = config_from_environment(requested_by=own_identity)
    sfn = boto3.client("stepfunctions", region_name=region, config=CLIENT_CONFIG)
    result = trigger(event.detail.get("findings", []), config, sfn)
    logger.info("custom action handled", action=event.detail.get("actionName"), **result)
    return result
