"""The remediation workflows' steps: one Lambda, the state machine names the step in the payload.

The event is validated against a schema, then the execution it names is read from Step Functions
(running, ours, started with this request, past the approval the step needs, with this plan) before
the step runs. Only the two state machines' role may invoke this function."""

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from aws_lambda_powertools.utilities.validation import SchemaValidationError, validate

from neptune_guard.aws import CLIENT_CONFIG
from neptune_guard.remediate import cluster, guard, snapshot
from neptune_guard.remediate.resources import Step, parse_arn

STEPS = {**cluster.STEPS, **snapshot.STEPS}
STEP_ARGUMENTS = {guard.APPROVAL_STEP: ("stage", "task_token"), "notify": ("outcome",)}
EVENT_SCHEMA = {
    "type": "object",
    "required": ["step", "execution", "state"],
    "properties": {
        "step": {"enum": sorted(STEPS)},
        "execution": {"type": "string", "pattern": r"^arn:aws[\w-]*:states:[a-z0-9-]+:\d{12}:execution:[\w-]+:[\w-]+$"},
        "stage": {"enum": list(guard.ALL_STAGES)},
        "task_token": {"type": "string", "minLength": 1, "maxLength": 8192},
        "outcome": {"type": "string", "pattern": r"^[A-Z_]{1,40}$"},
        "state": {"type": "object", "required": ["request"], "properties": {"request": {"type": "object"}, "plan": {"type": "object"}}},
    },
    "additionalProperties": False,
}

logger = Logger()
tracer = Tracer()


class InvalidStepEvent(Exception):
    """The event is not one our state machines send."""


@tracer.capture_lambda_handler
@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    try:
        validate(event=event, schema=EVENT_SCHEMA)
    except SchemaValidationError as error:
        raise InvalidStepEvent(f"not a Neptune Guard step event: {error}") from None
    state, name = event["state"], event["step"]
    request = state["request"]
    logger.append_keys(step=name, execution=event["execution"], account_id=request.get("account_id"), region=request.get("region"),
                       resource=request.get("cluster_id") or request.get("snapshot_id"))
    function, needs_approval = STEPS[name]
    execution_arn = parse_arn(event["execution"], "execution ARN")
    sfn = boto3.client("stepfunctions", region_name=execution_arn["region"], config=CLIENT_CONFIG)
    own_account = parse_arn(context.invoked_function_arn, "function ARN")["account"]
    record = guard.read_execution(sfn, event["execution"], own_account)
    guard.authorize_step(record, event, needs_approval)
    step = Step(request=request, execution=event["execution"], plan=state.get("plan"), state=state, answered=record.answered_at)
    arguments = STEP_ARGUMENTS.get(name, ())
    missing = [a for a in arguments if a not in event]
    if missing:
        raise InvalidStepEvent(f"step {name} needs {', '.join(missing)}")
    return function(step, **{a: event[a] for a in arguments})
