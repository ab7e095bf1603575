"""Calling the approval endpoint as a person: a SigV4-signed HTTPS request (service `lambda`) with the
caller's own credentials, so that AWS, not this client, establishes who is asking.

https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html#urls-invocation-basics
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from botocore.exceptions import HTTPClientError, NoCredentialsError
from botocore.httpsession import URLLib3Session

from neptune_guard.aws import home_region

URL_ENVIRONMENT_VARIABLE = "NEPTUNE_GUARD_APPROVAL_URL"
FUNCTION_URL_HOST = re.compile(r"\A[a-z0-9]+\.lambda-url\.([a-z]{2}(?:-[a-z]+)+-[0-9]+)\.on\.aws\Z")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class EndpointError(Exception):
    """The endpoint could not be reached, or failed: nothing is known to have changed."""


class BadURL(ValueError):
    """Not an approval endpoint URL: refused before anything is signed or sent."""


class EndpointRefused(Exception):
    """The endpoint answered and refused: nothing changed."""

    def __init__(self, status: int, message: str):
        super().__init__(f"the approval endpoint refused (HTTP {status}): {message}")
        self.status = status


def check_url(url: str) -> str:
    """An approval endpoint URL: HTTPS, or plain HTTP to a loopback sandbox only (the body is not secret,
    but the answer that says what was approved must not be open to tampering on the way)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return url
    raise BadURL(f"the approval URL must be https://<url-id>.lambda-url.<region>.on.aws/ (or http:// to a loopback sandbox), got {url!r}")


def signing_region(url: str, session) -> str:
    """A function URL names its region; a sandbox URL is signed for the session's region."""
    match = FUNCTION_URL_HOST.match(urlsplit(url).hostname or "")
    return match.group(1) if match else home_region(session)


def call(session, url: str, body: dict, timeout: float = 60) -> dict:
    credentials = session.get_credentials()
    if credentials is None:
        raise NoCredentialsError()  # exit 3, as any command without credentials
    request = AWSRequest(method="POST", url=check_url(url), data=json.dumps(body).encode(),
                         headers={"Content-Type": "application/json"})
    SigV4Auth(credentials.get_frozen_credentials(), "lambda", signing_region(url, session)).add_auth(request)
    try:
        response = URLLib3Session(timeout=timeout).send(request.prepare())
    except (HTTPClientError, BotocoreConnectionError) as error:  # refused, unresolvable, timed out, TLS
        raise EndpointError(f"could not reach the approval endpoint {url}: {error}") from None
    try:
        answer = json.loads(response.content or b"null")
    except ValueError:
        answer = None
    if 200 <= response.status_code < 300 and isinstance(answer, dict):
        return answer
    message = answer.get("message") or answer.get("Message") if isinstance(answer, dict) else None
    message = message or response.content.decode("utf-8", "replace")[:500] or "no message"
    if 400 <= response.status_code < 500:
        raise EndpointRefused(response.status_code, message)
    raise EndpointError(f"the approval endpoint failed (HTTP {response.status_code}): {message}")
