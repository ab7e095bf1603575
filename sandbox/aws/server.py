"""moto as a server on loopback, for black-box runs: the CLI and boto3 reach it through AWS_ENDPOINT_URL.

The WSGI middleware here stands for the real network: it can add a fixed latency to every request
(the benchmark's stand-in for the AWS APIs), count requests by service and action, and make every
request to chosen regions fail as a region not enabled does (fault injection for the "one region throws" cases).
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import re
import threading
import time
import urllib.request
from urllib.parse import parse_qs

from werkzeug.serving import WSGIRequestHandler, make_server

from sandbox.aws import moto_fixes

CONTROL_PATH = "/_neptune_guard/"
CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")


class NetworkStandIn:
    def __init__(self, app, latency: float = 0.0):
        self.app = app
        self.latency = latency
        self.failing_regions: set[str] = set()
        self.failing_actions: set[tuple[str, str]] = set()  # (region, "service:Action")
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith(CONTROL_PATH):
            return self._control(environ, start_response)
        match = CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        region, service = match.groups() if match else ("", "")
        action = self._action(environ)
        with self._lock:
            self.counts[f"{service}:{action}"] += 1
        if self.latency:
            time.sleep(self.latency)
        if region in self.failing_regions or (region, f"{service}:{action}") in self.failing_actions:
            # What AWS answers in a region the account has not enabled (not retried by botocore).
            body = (
                b"<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code>"
                b"<Message>The security token included in the request is invalid.</Message></Error></ErrorResponse>"
            )
            start_response("403 Forbidden", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
            return [body]
        return self.app(environ, start_response)

    @staticmethod
    def _action(environ) -> str:
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target:
            return target.split(".")[-1]
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if "Action" in query:
            return query["Action"][0]
        if environ.get("REQUEST_METHOD") == "POST":
            # Query-protocol APIs (RDS, STS, EC2) send the action in the form body: read and put it back.
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            form = parse_qs(body.decode("utf-8", "replace"))
            if "Action" in form:
                return form["Action"][0]
        return environ.get("PATH_INFO", "")

    def _control(self, environ, start_response):
        """For a server in another process: GET counts, POST reset, POST latency?ms=N."""
        command = environ["PATH_INFO"][len(CONTROL_PATH):]
        if command == "latency":
            self.latency = float(parse_qs(environ.get("QUERY_STRING", ""))["ms"][0]) / 1000
        elif command == "reset":
            self.counts.clear()
        body = json.dumps(dict(self.counts)).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def requests(self, prefix: str = "") -> int:
        return sum(n for key, n in self.counts.items() if key.startswith(prefix))


class QuietRequestHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        pass


class LoopbackAws:
    """`with LoopbackAws() as aws: ...` serves moto on 127.0.0.1 and exposes `aws.endpoint_url`."""

    def __init__(self, latency: float = 0.0, threads: bool = True, port: int = 0):
        from moto.server import DomainDispatcherApplication, create_backend_app

        moto_fixes.apply()
        self.network = NetworkStandIn(DomainDispatcherApplication(create_backend_app), latency)
        self._server = make_server("127.0.0.1", port, self.network, threaded=threads, request_handler=QuietRequestHandler)
        self.endpoint_url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "LoopbackAws":
        self._thread.start()
        # moto's backends are global to the process: start from an empty AWS, as moto's reset API does.
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST"), timeout=30).close()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="moto, corrected, on loopback (control: /_neptune_guard/counts|reset|latency?ms=N)")
    parser.add_argument("--port", type=int, default=5000)
    with LoopbackAws(port=parser.parse_args().port) as server:
        print(server.endpoint_url, flush=True)
        server._thread.join()
