"""Lambda function URLs (AuthType AWS_IAM) for the local AWS, which moto configures but does not serve.

Not an AWS correction: a small stand-in built from the AWS reference, so that the approval endpoint is
reached as people reach it in AWS, by a SigV4-signed HTTP request, and learns who calls from the request
context Lambda fills in. `serve()` runs one function's URL on a loopback port. For each request it

1. verifies the SigV4 signature (`Authorization: AWS4-HMAC-SHA256 ...`, `X-Amz-Date` within 15 minutes,
   credential scope `<date>/<the function's region>/lambda/aws4_request`, `host` among the signed headers)
   with the secret of the access key moto issued: an IAM user's active access key, or an assumed role's
   temporary credentials (unexpired, with their `X-Amz-Security-Token`). Anything else is 403 and never
   reaches the function;
2. resolves the caller as GetCallerIdentity does (the user's ARN, or the assumed-role session ARN);
3. builds the documented request payload (version 2.0, `requestContext.authorizer.iam`: accessKey,
   accountId, callerId, userArn, userId) and invokes the function through moto's Lambda (whose handlers
   run in-process, see moto_fixes.lambda_runs_handlers_in_process);
4. maps the function's answer to the HTTP response as Lambda does: a `statusCode` object as given, any
   other JSON as a 200 JSON body, a function error as 502.

The caller's IAM authorization of `lambda:InvokeFunctionUrl` and `lambda:InvokeFunction` is evaluated only
while sandbox/iam/executed.py is active. Not emulated: `principalOrgId` (null), CORS, response streaming. It looks credentials up in moto's
in-process backends, so it runs in the process that holds the local AWS (tests, the demo).

https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html (request and response payloads)
https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html (AWS_IAM: every request signed with SigV4)
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qsl, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import ArnParser
from moto.core.utils import utcnow
from moto.iam.models import iam_backends
from moto.sts.models import sts_backends

MAX_SKEW = timedelta(minutes=15)
AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,\s*"
    r"SignedHeaders=(?P<headers>[a-z0-9;-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$")
TEXT_TYPES = ("application/json", "text/", "application/xml", "application/x-www-form-urlencoded")

# The caller's identity policies, evaluated by whoever knows them (the executed-IAM harness, sandbox/iam/executed.py,
# sets this while it is active): raises PermissionError when IAM would deny. None: the resource policy alone decides.
identity_authorization: Callable[[str, str], None] | None = None


class Denied(Exception):
    """The request is not authenticated: 403, the function is not invoked."""


@dataclass(frozen=True)
class Principal:
    """A caller known to the local AWS, with the secret its requests are signed with."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None
    arn: str
    user_id: str
    account_id: str


def principal_for(access_key_id: str) -> Principal | None:
    """The holder of an access key moto issued: an assumed role's session, or an IAM user's active key."""
    for account_backends in list(sts_backends.values()):
        for backend in list(account_backends.values()):
            for role in backend.assumed_roles:
                if role.access_key_id == access_key_id:
                    if role.expiration <= utcnow():
                        return None
                    return Principal(access_key_id, role.secret_access_key, role.session_token, role.arn, role.user_id,
                                     role.account_id)
    for account_backends in list(iam_backends.values()):
        for backend in list(account_backends.values()):
            user = backend.get_user_from_access_key_id(access_key_id)
            if user is None:
                continue
            key = next(k for k in backend.list_access_keys(user.name) if k.access_key_id == access_key_id)
            if key.status != "Active":
                return None
            return Principal(access_key_id, key.secret_access_key, None, user.arn, user.id, user.account_id)
    return None


def authenticate(method: str, target: str, headers: dict[str, str], body: bytes, region: str, now: datetime) -> Principal:
    """The principal whose SigV4 signature this request carries, or Denied."""
    match = AUTHORIZATION.match(headers.get("authorization", ""))
    if not match:
        raise Denied("Missing or malformed Authorization header (AWS_IAM function URLs need a SigV4 signature)")
    if (match["region"], match["service"]) != (region, "lambda"):
        raise Denied(f"Credential scope must be for region {region} and service lambda, not {match['region']}/{match['service']}")
    amz_date = headers.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise Denied("Missing or malformed X-Amz-Date header") from None
    if not amz_date.startswith(match["date"]) or abs(now - signed_at) > MAX_SKEW:
        raise Denied("Signature expired or not yet valid: X-Amz-Date must be within 15 minutes of the server's time")
    signed_headers = match["headers"].split(";")
    if "host" not in signed_headers or any(name not in headers for name in signed_headers):
        raise Denied("The signed headers must include host, and every signed header must be sent")
    principal = principal_for(match["key"])
    if principal is None:
        raise Denied("The security token included in the request is invalid (unknown, inactive or expired access key)")
    if principal.session_token is not None and not hmac.compare_digest(headers.get("x-amz-security-token", ""), principal.session_token):
        raise Denied("The security token included in the request is invalid (temporary credentials need their session token)")

    request = AWSRequest(method=method, url=f"http://{headers['host']}{target}", data=body,
                         headers={name: headers[name] for name in signed_headers})
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(principal.access_key_id, principal.secret_access_key, principal.session_token), "lambda", region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, match["signature"]):
        raise Denied("The request signature we calculated does not match the signature you provided")
    return principal


def request_event(method: str, target: str, headers: dict[str, str], body: bytes, principal: Principal, function_account: str,
                  url_id: str, region: str, source_ip: str, now: datetime) -> dict:
    """The function URL request payload (format version 2.0), as documented."""
    path, _, query = target.partition("?")
    content_type = headers.get("content-type", "")
    text = content_type.startswith(TEXT_TYPES)
    parameters: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        parameters[name] = f"{parameters[name]},{value}" if name in parameters else value
    domain = f"{url_id}.lambda-url.{region}.on.aws"
    event = {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": {name: value for name, value in headers.items() if name != "cookie"},
        "requestContext": {
            "accountId": function_account, "apiId": url_id, "authentication": None,
            "authorizer": {"iam": {
                "accessKey": principal.access_key_id, "accountId": principal.account_id, "callerId": principal.user_id,
                "cognitoIdentity": None, "principalOrgId": None, "userArn": principal.arn, "userId": principal.user_id}},
            "domainName": domain, "domainPrefix": url_id,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                     "userAgent": headers.get("user-agent", "")},
            "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"), "timeEpoch": int(now.timestamp() * 1000),
        },
        "body": body.decode("utf-8") if text else base64.b64encode(body).decode(),
        "isBase64Encoded": not text,
    }
    if parameters:
        event["queryStringParameters"] = parameters
    if "cookie" in headers:
        event["cookies"] = [c.strip() for c in headers["cookie"].split(";")]
    return event


def http_response(result) -> tuple[int, dict[str, str], bytes]:
    """How Lambda turns the function's answer into the HTTP response."""
    if isinstance(result, dict) and "statusCode" in result:
        body = result.get("body") or ""
        data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
        return int(result["statusCode"]), {k.lower(): str(v) for k, v in (result.get("headers") or {}).items()}, data
    return 200, {"content-type": "application/json"}, json.dumps(result).encode()


def _json(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"content-type": "application/json"}, json.dumps({"Message": message}).encode()


class FunctionUrl:
    """One function's URL on loopback (`url`), for as long as the context lasts."""

    def __init__(self, session, function_name: str, region: str):
        self.lambda_client = session.client("lambda", region_name=region)
        config = self.lambda_client.get_function_url_config(FunctionName=function_name)
        if config["AuthType"] != "AWS_IAM":
            raise ValueError(f"the sandbox serves AWS_IAM function URLs only; {function_name} has {config['AuthType']}")
        self.function_arn = config["FunctionArn"]
        self.function_account = ArnParser().parse_arn(self.function_arn)["account"]
        self.url_id = urlsplit(config["FunctionUrl"]).hostname.split(".")[0]
        self.region = region
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"function-url-{function_name}", daemon=True)

    def __enter__(self) -> "FunctionUrl":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def respond(self, method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str) -> tuple[int, dict, bytes]:
        now = datetime.now(timezone.utc)
        try:
            principal = authenticate(method, target, headers, body, self.region, now)
        except Denied as denied:
            return _json(403, str(denied))
        if identity_authorization is not None:
            try:
                identity_authorization(principal.access_key_id, self.function_arn)
            except PermissionError as denied:
                return _json(403, str(denied))
        event = request_event(method, target, headers, body, principal, self.function_account, self.url_id, self.region,
                              source_ip, now)
        answer = self.lambda_client.invoke(FunctionName=self.function_arn, Payload=json.dumps(event).encode())
        if answer.get("FunctionError"):
            return _json(502, "Internal Server Error")
        return http_response(json.loads(answer["Payload"].read() or b"null"))

    def _handler_class(self):
        function_url = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers: dict[str, str] = {}
                for name, value in self.headers.items():
                    name = name.lower()
                    headers[name] = f"{headers[name]},{value}" if name in headers else value
                status, response_headers, data = function_url.respond(self.command, self.path, headers, body, self.client_address[0])
                self.send_response(status)
                for name, value in {**response_headers, "content-length": str(len(data))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, *args):  # quiet: tests and the demo print their own story
                pass

        return Handler


def serve(session, function_name: str, region: str = "us-east-1") -> FunctionUrl:
    """`with serve(session, name) as url: ... url.url ...`"""
    return FunctionUrl(session, function_name, region)

