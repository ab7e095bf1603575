"""The customer's application for the local AWS: it writes to the cluster's production endpoint (the name that the
cutover keeps) and counts every write the database acknowledged, so that a test can say which acknowledged writes
the cluster serving the name holds at the end. Property graph writes are Gremlin `addV`; RDF writes SPARQL
`INSERT DATA`. It runs in the cluster's VPC (no Lambda function around it: the data plane admits it), and signs its
requests for `neptune-db` when the cluster uses IAM database authentication.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from urllib.parse import urlencode

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.httpsession import URLLib3Session
from moto.rds import models as rds_models

from sandbox.aws import neptune_data


class Writer:
    def __init__(self, account: str, region: str, cluster_id: str, data_model: str = "property-graph", interval: float = 0.02):
        cluster = rds_models.rds_backends[account][region].clusters[cluster_id.lower()]
        self.account, self.region, self.cluster_id, self.model = account, region, cluster_id, data_model
        self.url = f"https://{cluster.endpoint}:{cluster.port}"  # the production name: it follows the identifier
        self.credentials = botocore.session.get_session().get_credentials() if cluster.iam_auth else None
        self.interval, self.acknowledged, self.failed = interval, [], 0
        self.name = f"{cluster_id}-{uuid.uuid4().hex[:6]}"  # each writer's own element ids
        self._running = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"writer-{cluster_id}")
        self.paused_at: float | None = None
        self.pauses: list[float] = []

    def start(self) -> "Writer":
        self._running.set()
        self._thread.start()
        return self

    def pause(self) -> None:
        """The application stops writing (on-call's first move at a streams cutover)."""
        self._running.clear()
        self.paused_at = time.monotonic()

    def resume(self) -> None:
        if self.paused_at is not None:
            self.pauses.append(time.monotonic() - self.paused_at)
            self.paused_at = None
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()
        self._thread.join(timeout=10)

    def _write(self, n: int) -> bool:
        key = f"w-{self.name}-{n}"
        if self.model == "rdf":
            body, path, kind = urlencode({"update": f'INSERT DATA {{ <urn:write:{key}> <urn:p:n> "{n}" }}'}).encode(), "/sparql", "application/x-www-form-urlencoded"
        else:
            body, path, kind = json.dumps({"gremlin": f"g.addV('Write').property(T.id, '{key}').property('n', {n})"}).encode(), "/gremlin", "application/json"
        request = AWSRequest("POST", self.url + path, data=body, headers={"Content-Type": kind})
        if self.credentials is not None:
            SigV4Auth(self.credentials.get_frozen_credentials(), "neptune-db", self.region).add_auth(request)
        try:
            response = URLLib3Session(timeout=5).send(request.prepare())
        except Exception:  # the name resolves to nothing during a rename: not acknowledged
            return False
        return response.status_code == 200

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            self._running.wait()
            if self._stop.is_set():
                break
            n += 1
            if self._write(n):
                self.acknowledged.append(n)
            else:
                self.failed += 1
            time.sleep(self.interval)

    def missing(self) -> list[int]:
        """Acknowledged writes that the cluster now serving the production name does not hold."""
        backend = rds_models.rds_backends[self.account][self.region]
        serving = backend.clusters.get(self.cluster_id.lower())
        if serving is None:
            return list(self.acknowledged)
        volume = neptune_data.volume(serving.db_cluster_resource_id)
        with volume.lock:
            if self.model == "rdf":
                held = {q.split(" ", 1)[0] for q in volume.quads}
                return [n for n in self.acknowledged if f"<urn:write:w-{self.name}-{n}>" not in held]
            return [n for n in self.acknowledged if f"w-{self.name}-{n}" not in volume.vertices]
