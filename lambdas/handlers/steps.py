"""The remediation workflow's steps: one Lambda, the state machine names the step in the payload."""

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from neptune_guard.remediation import STEPS

logger = Logger()
tracer = Tracer()


@tracer.capture_lambda_handler
@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    state = event.get("state", {})
    logger.append_keys(step=event.get("step"), execution=event.get("execution"),
                       account_id=state.get("account_id"), region=state.get("region"), cluster_id=state.get("cluster_id"))
    step = STEPS.get(event.get("step"))
    if step is None:
        raise ValueError(f"unknown step {event.get('step')!r}")
    return step(event)
