"""The remediation workflows' steps: one Lambda, the state machine names the step in the payload."""

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from neptune_guard import remediation, snapshot_remediation

STEPS = {**remediation.STEPS, **snapshot_remediation.STEPS}

logger = Logger()
tracer = Tracer()


@tracer.capture_lambda_handler
@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    state = event.get("state", {})
    logger.append_keys(step=event.get("step"), execution=event.get("execution"),
                       account_id=state.get("account_id"), region=state.get("region"), resource=state.get("cluster_id") or state.get("snapshot_id"))
    step = STEPS.get(event.get("step"))
    if step is None:
        raise ValueError(f"unknown step {event.get('step')!r}")
    return step(event)
