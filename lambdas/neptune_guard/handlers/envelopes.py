"""The shapes of the events each function is invoked with, checked before anything reads them: an event of another
shape (`{}`, a list, a test event typed by hand) is refused with one line naming what is wrong, never a KeyError deep
in the handler. Only the envelope is checked here; what it carries is the library's to validate.

https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-events-structure.html
https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html (the event's Records)
https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html#urls-request-payload
"""

from __future__ import annotations

import functools

from aws_lambda_powertools.utilities.validation import SchemaValidationError, validate

EVENTBRIDGE = {
    "type": "object",
    "required": ["detail-type", "source", "detail"],
    "properties": {"detail-type": {"type": "string"}, "source": {"type": "string"}, "detail": {"type": "object"},
                   "resources": {"type": "array", "items": {"type": "string"}}},
}
EXECUTION_STATUS_CHANGE = {  # https://docs.aws.amazon.com/step-functions/latest/dg/cw-events.html
    **EVENTBRIDGE,
    "properties": {**EVENTBRIDGE["properties"],
                   "detail": {"type": "object", "required": ["executionArn"], "properties": {"executionArn": {
                       "type": "string", "maxLength": 2048, "pattern": r"^arn:aws[a-z-]*:states:[a-z0-9-]+:[0-9]{12}:execution:[A-Za-z0-9_-]+:[A-Za-z0-9_-]+\Z"}}}},
}
SQS = {
    "type": "object",
    "required": ["Records"],
    "properties": {"Records": {"type": "array", "items": {"type": "object", "required": ["messageId", "body"],
                                                          "properties": {"messageId": {"type": "string"}, "body": {"type": "string"}}}}},
}
CUSTOM_RESOURCE = {  # https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-requests.html
    "type": "object",
    "required": ["RequestType"],
    "properties": {"RequestType": {"enum": ["Create", "Update", "Delete"]}, "PhysicalResourceId": {"type": "string"}},
    "if": {"properties": {"RequestType": {"const": "Delete"}}}, "then": {"required": ["PhysicalResourceId"]},
}
FUNCTION_URL = {
    "type": "object",
    "required": ["requestContext"],
    "properties": {
        "requestContext": {"type": "object", "required": ["http"],
                           "properties": {"http": {"type": "object", "required": ["method"], "properties": {"method": {"type": "string"}}},
                                          "authorizer": {"type": "object"}}},
        "body": {"type": ["string", "null"]},
        "isBase64Encoded": {"type": "boolean"},
    },
}


class InvalidEvent(Exception):
    """The function was invoked with an event of another shape than its source sends."""


def problem(event, schema: dict, what: str) -> str | None:
    """Why `event` is not a `what` event, in one line; None when it is."""
    try:
        validate(event=event, schema=schema)
    except SchemaValidationError as error:
        return f"not {what}: {error}".replace("\n", " ")
    return None


def checked(schema: dict, what: str):
    """Refuse an event of another shape with InvalidEvent before the handler reads it."""
    def decorate(handler):
        @functools.wraps(handler)
        def wrapper(event, context):
            reason = problem(event, schema, what)
            if reason:
                raise InvalidEvent(reason)
            return handler(event, context)
        return wrapper
    return decorate
