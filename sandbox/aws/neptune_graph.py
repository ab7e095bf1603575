"""Neptune Analytics (`neptune-graph`) for the local AWS: moto has no such service. A small stand-in built from the
Neptune Analytics API reference, covering what Neptune Guard calls and what the sandbox seeds with:

- `CreateGraph`: a graph named `graphName` (unique in the account and region, else ConflictException), id
  `g-` and 10 lowercase letters or digits, ARN `arn:<partition>:neptune-graph:<region>:<account>:graph/<id>`.
  `kmsKeyIdentifier`, when given, must be a KMS key ARN (the API's pattern) and is reported as given; without it
  the graph reports `AWS_OWNED_KEY`, as AWS does (the CreateGraph response in the CloudTrail example of
  monitoring-cloudtrail-understanding.html below). It is `AVAILABLE` at once: the local AWS has nothing to wait for.
- `CreateGraphSnapshot`: a snapshot `gs-...` of an existing graph (ResourceNotFoundException otherwise), ARN
  `...:graph-snapshot/<id>`. A snapshot reports its graph's `kmsKeyIdentifier`: RestoreGraphFromSnapshot takes no
  key, so a snapshot stays under the key of the graph it was taken from.
- `ListGraphs`, `ListGraphSnapshots` (optionally for one `graphIdentifier`): at most `maxResults` (1 to 100)
  summaries a page and a `nextToken` for the rest; a token this service did not issue is a ValidationException.
- `ListTagsForResource` on a graph or snapshot ARN (ResourceNotFoundException for anything else).
- `DeleteGraph` with `skipSnapshot=true` (refused under `deletionProtection`, which is on unless CreateGraph turns it
  off, as the AWS::NeptuneGraph::Graph schema documents its default); a final snapshot
  (`skipSnapshot=false`) is not emulated and is refused with a ValidationException saying so. `DeleteGraphSnapshot`.

The account is the request's, as for every moto service (its credentials); the region is the endpoint's
(`neptune-graph.<region>.amazonaws.com`). Requests go through moto's request handling, so its authorization hook
(sandbox/iam/executed.py) evaluates them like any other service's. `install()` registers the service with moto: its
URL pattern for in-process mocks, and the backend module moto imports by service name, for both mock_aws and the
loopback server (sandbox/aws/server.py).

https://docs.aws.amazon.com/neptune-analytics/latest/apiref/API_CreateGraph.html
https://docs.aws.amazon.com/neptune-analytics/latest/apiref/API_CreateGraphSnapshot.html
https://docs.aws.amazon.com/neptune-analytics/latest/apiref/API_ListGraphs.html
https://docs.aws.amazon.com/neptune-analytics/latest/apiref/API_ListGraphSnapshots.html
https://docs.aws.amazon.com/neptune-analytics/latest/apiref/API_GraphSummary.html
https://docs.aws.amazon.com/neptune-analytics/latest/apiref/API_GraphSnapshotSummary.html
https://docs.aws.amazon.com/neptune-analytics/latest/apiref/API_ListTagsForResource.html
https://docs.aws.amazon.com/neptune-analytics/latest/apiref/API_DeleteGraph.html
https://docs.aws.amazon.com/neptune-analytics/latest/apiref/API_DeleteGraphSnapshot.html
https://docs.aws.amazon.com/neptune-analytics/latest/userguide/monitoring-cloudtrail-understanding.html
https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-neptunegraph-graph.html
"""

from __future__ import annotations

import re
import sys
import types

from moto import backend_index
from moto.core.base_backend import BackendDict, BaseBackend
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult, BaseResponse
from moto.core.utils import utcnow
from moto.moto_api._internal import mock_random as random

SERVICE = "neptune-graph"
AWS_OWNED_KEY = "AWS_OWNED_KEY"
GRAPH_NAME = re.compile(r"^(?!g-)[a-z][a-z0-9]*(-[a-z0-9]+)*$")
SNAPSHOT_NAME = re.compile(r"^(?!gs-)[a-z][a-z0-9]*(-[a-z0-9]+)*$")
KMS_KEY_ARN = re.compile(r"^arn:aws(|-cn|-us-gov):kms:[a-zA-Z0-9-]*:[0-9]{12}:key/[a-zA-Z0-9-]{36}$")
MAX_RESULTS = 100


class ResourceNotFoundException(ServiceException):
    code = "ResourceNotFoundException"


class ValidationException(ServiceException):
    code = "ValidationException"


class ConflictException(ServiceException):
    code = "ConflictException"


def _identifier(prefix: str) -> str:
    return prefix + "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(10))


class NeptuneGraphBackend(BaseBackend):
    def __init__(self, region_name: str, account_id: str):
        super().__init__(region_name, account_id)
        self.graphs: dict[str, dict] = {}
        self.snapshots: dict[str, dict] = {}
        self.tags: dict[str, dict[str, str]] = {}

    # moto derives a backend's URLs from a sibling urls module; this one keeps them here.
    url_bases = [r"https?://neptune-graph\.(.+)\.amazonaws\.com"]

    @property
    def _url_module(self):
        return types.SimpleNamespace(url_bases=self.url_bases, url_paths=URL_PATHS)

    def _arn(self, kind: str, identifier: str) -> str:
        return f"arn:{self.partition}:neptune-graph:{self.region_name}:{self.account_id}:{kind}/{identifier}"

    def create_graph(self, name: str, provisioned_memory: int, kms_key: str | None, tags: dict[str, str],
                     deletion_protection: bool, replica_count: int, public_connectivity: bool) -> dict:
        if not name or not GRAPH_NAME.match(name) or len(name) > 63:
            raise ValidationException(f"Invalid graphName {name!r}")
        if any(g["name"] == name for g in self.graphs.values()):
            raise ConflictException(f"A graph named {name} already exists")
        if kms_key is not None and not KMS_KEY_ARN.match(kms_key):
            raise ValidationException("kmsKeyIdentifier must be the ARN of a KMS key")
        graph_id = _identifier("g-")
        graph = {
            "id": graph_id, "name": name, "arn": self._arn("graph", graph_id), "status": "AVAILABLE",
            "createTime": utcnow(), "provisionedMemory": provisioned_memory,
            "endpoint": f"{graph_id}.{self.region_name}.neptune-graph.amazonaws.com",
            "publicConnectivity": public_connectivity, "replicaCount": replica_count,
            "kmsKeyIdentifier": kms_key or AWS_OWNED_KEY, "deletionProtection": deletion_protection,
        }
        self.graphs[graph_id] = graph
        self.tags[graph["arn"]] = dict(tags)
        return graph

    def _graph(self, identifier: str) -> dict:
        if identifier not in self.graphs:
            raise ResourceNotFoundException(f"Graph {identifier} not found")
        return self.graphs[identifier]

    def create_graph_snapshot(self, graph_identifier: str, name: str, tags: dict[str, str]) -> dict:
        graph = self._graph(graph_identifier)
        if not name or not SNAPSHOT_NAME.match(name) or len(name) > 63:
            raise ValidationException(f"Invalid snapshotName {name!r}")
        if any(s["name"] == name for s in self.snapshots.values()):
            raise ConflictException(f"A snapshot named {name} already exists")
        snapshot_id = _identifier("gs-")
        snapshot = {"id": snapshot_id, "name": name, "arn": self._arn("graph-snapshot", snapshot_id),
                    "sourceGraphId": graph["id"], "snapshotCreateTime": utcnow(), "status": "AVAILABLE",
                    "kmsKeyIdentifier": graph["kmsKeyIdentifier"]}
        self.snapshots[snapshot_id] = snapshot
        self.tags[snapshot["arn"]] = dict(tags)
        return snapshot

    def delete_graph(self, identifier: str, skip_snapshot: bool) -> dict:
        graph = self._graph(identifier)
        if graph["deletionProtection"]:
            raise ValidationException(f"Graph {identifier} has deletion protection enabled")
        if not skip_snapshot:
            raise ValidationException("a final snapshot (skipSnapshot=false) is not emulated by the sandbox")
        del self.graphs[identifier]
        self.tags.pop(graph["arn"], None)
        return {**graph, "status": "DELETING"}

    def delete_graph_snapshot(self, identifier: str) -> dict:
        if identifier not in self.snapshots:
            raise ResourceNotFoundException(f"Snapshot {identifier} not found")
        snapshot = self.snapshots.pop(identifier)
        self.tags.pop(snapshot["arn"], None)
        return {**snapshot, "status": "DELETING"}

    def list_tags(self, arn: str) -> dict[str, str]:
        if arn not in self.tags:
            raise ResourceNotFoundException(f"Resource {arn} not found")
        return self.tags[arn]


def _page(items: list[dict], max_results, token) -> dict:
    size = MAX_RESULTS if max_results is None else int(max_results)
    if not 1 <= size <= MAX_RESULTS:
        raise ValidationException(f"maxResults must be between 1 and {MAX_RESULTS}")
    try:
        start = int(token) if token else 0
    except ValueError:
        raise ValidationException("Invalid nextToken") from None
    page = {"items": items[start:start + size]}
    if start + size < len(items):
        page["nextToken"] = str(start + size)
    return page


GRAPH_SUMMARY = ("id", "name", "arn", "status", "provisionedMemory", "publicConnectivity", "endpoint", "replicaCount",
                 "kmsKeyIdentifier", "deletionProtection")


class NeptuneGraphResponse(BaseResponse):
    def __init__(self) -> None:
        super().__init__(service_name=SERVICE)
        self.automated_parameter_parsing = True

    @property
    def backend(self) -> NeptuneGraphBackend:
        return neptunegraph_backends[self.current_account][self.region]

    def create_graph(self) -> ActionResult:
        graph = self.backend.create_graph(
            self._get_param("graphName"), int(self._get_param("provisionedMemory") or 16), self._get_param("kmsKeyIdentifier"),
            self._get_param("tags") or {}, bool(self._get_param("deletionProtection", True)),
            int(self._get_param("replicaCount", 1)), bool(self._get_param("publicConnectivity", False)))
        return ActionResult(graph)

    def create_graph_snapshot(self) -> ActionResult:
        return ActionResult(self.backend.create_graph_snapshot(self._get_param("graphIdentifier"), self._get_param("snapshotName"),
                                                               self._get_param("tags") or {}))

    def list_graphs(self) -> ActionResult:
        graphs = [{k: g[k] for k in GRAPH_SUMMARY} for g in self.backend.graphs.values()]
        page = _page(graphs, self._get_param("maxResults"), self._get_param("nextToken"))
        return ActionResult({"graphs": page.pop("items"), **page})

    def list_graph_snapshots(self) -> ActionResult:
        snapshots = list(self.backend.snapshots.values())
        if self._get_param("graphIdentifier"):
            snapshots = [s for s in snapshots if s["sourceGraphId"] == self._get_param("graphIdentifier")]
        page = _page(snapshots, self._get_param("maxResults"), self._get_param("nextToken"))
        return ActionResult({"graphSnapshots": page.pop("items"), **page})

    def list_tags_for_resource(self) -> ActionResult:
        return ActionResult({"tags": self.backend.list_tags(self._get_param("resourceArn"))})

    def delete_graph(self) -> ActionResult:
        skip = str(self._get_param("skipSnapshot")).lower() == "true"
        return ActionResult(self.backend.delete_graph(self._get_param("graphIdentifier"), skip))

    def delete_graph_snapshot(self) -> ActionResult:
        return ActionResult(self.backend.delete_graph_snapshot(self._get_param("snapshotIdentifier")))


URL_PATHS = {
    "{0}/graphs$": NeptuneGraphResponse.dispatch,
    "{0}/graphs/(?P<graphIdentifier>[^/]+)$": NeptuneGraphResponse.dispatch,
    "{0}/snapshots$": NeptuneGraphResponse.dispatch,
    "{0}/snapshots/(?P<snapshotIdentifier>[^/]+)$": NeptuneGraphResponse.dispatch,
    "{0}/tags/(?P<resourceArn>.+)$": NeptuneGraphResponse.dispatch,
}

# botocore's endpoint data lists no regions for neptune-graph (its endpoints come from a rule set): the emulation
# serves every region moto knows for Neptune.
neptunegraph_backends = BackendDict(NeptuneGraphBackend, "neptune")

_installed = False


def install() -> None:
    """Register the service with moto: the URL pattern its in-process stubber matches, and the backend module it
    imports by name (`moto.neptunegraph`, with `neptunegraph_backends`) for mocks and for the server alike."""
    global _installed
    if _installed:
        return
    sys.modules["moto.neptunegraph"] = sys.modules[__name__]
    backend_index.backend_url_patterns.append((SERVICE, re.compile(NeptuneGraphBackend.url_bases[0])))
    _installed = True
