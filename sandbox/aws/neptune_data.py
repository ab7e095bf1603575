"""Neptune's data plane for the local AWS: moto emulates the control plane only. A small stand-in built from the
Neptune User Guide and the Neptune Data API reference, never from what Neptune Guard expects:

- **One volume per cluster**, keyed by its `DbClusterResourceId` (it follows the cluster through renames). It holds a
  property graph (vertices with labels and set-valued properties, edges with a label, endpoints and single-valued
  properties) and an RDF dataset (quads), as Neptune holds both in one cluster.
- **Endpoints.** `https://<cluster or reader endpoint>:8182` reaches the cluster whose identifier that endpoint names
  *now*: while a cluster is renamed away, its old name resolves to nothing (a connection error), as DNS would.
  A request is served only from inside the cluster's VPC: from a VPC-attached Lambda function each of whose network
  interfaces one of the cluster's security groups admits on the cluster's port (its group, or a range holding its
  address) and one of its own groups lets out (the caller outside any function is the customer's application,
  already in the VPC). https://docs.aws.amazon.com/vpc/latest/userguide/vpc-security-groups.html With IAM database authentication on, a request must be SigV4-signed
  for `neptune-db`, and one from a Lambda function is authorized as its execution role: each `neptune-db` action the
  request needs (`required_actions`) on the cluster's data resource, by the role's policies and boundary (a role
  whose boundary does not exist is refused), with no condition key beyond what the request names: Neptune's list of
  data-access condition keys has none of Lambda's. https://docs.aws.amazon.com/neptune/latest/userguide/iam-data-condition-keys.html
  https://docs.aws.amazon.com/neptune/latest/userguide/feature-overview-endpoints.html
  https://docs.aws.amazon.com/neptune/latest/userguide/get-started-vpc.html
  https://docs.aws.amazon.com/neptune/latest/userguide/iam-auth-connecting.html
- **Writes and reads.** `POST /gremlin` (`{"gremlin": script}`): a subset of TinkerPop Gremlin, listed in `Gremlin`
  below; traversals separated by `;` run as one transaction; results in GraphSON 3.0 (typed numbers and dates, `g:Map`,
  `g:List`), Neptune's default over HTTP; a `datetime()` kept to the millisecond, as Neptune keeps a Date. `POST /sparql` (`update=`): SPARQL 1.1 `INSERT DATA` and
  `DELETE DATA`, operations separated by `;`, one transaction. `POST /openCypher` (`query=`, `parameters=` JSON):
  a vertex's labels set or removed, `[UNWIND $list AS x] MATCH (n) WHERE id(n) = x|$id SET|REMOVE n:A:B`, one
  transaction (a label is a name or a backtick-quoted text; a node keeps one label at least); any other query is
  MalformedQueryException. https://docs.aws.amazon.com/neptune/latest/userguide/access-graph-opencypher-data-model.html
  https://docs.aws.amazon.com/neptune/latest/userguide/access-graph-gremlin-differences.html
  https://www.w3.org/TR/sparql11-update/#insertData
  https://docs.aws.amazon.com/neptune/latest/userguide/access-graph-opencypher-queries.html
  https://docs.aws.amazon.com/neptune/latest/userguide/access-graph-opencypher-parameterized-queries.html
  https://docs.aws.amazon.com/neptune/latest/userguide/feature-opencypher-compliance.html (SET, REMOVE)
- **Streams** (`GET /propertygraph/stream`, `/pg/stream`, `/sparql/stream`): every change a transaction makes is one
  record, in the transaction's commit (`commitNum`, one sequence per cluster) and in operation order (`opNum` from
  1), the transaction's last one with `isLastOp`. Property-graph records: `vl` (vertex label), `vp` (vertex property),
  `e` (edge: `from`, `to`), `ep` (edge property), op `ADD` or `REMOVE`; dropping an element records the removal of
  everything it held; a vertex made with several labels (`addV('a::b')`) records one `vl` per label. RDF records:
  `{"stmt": "<s> <p> <o> <g> .\n"}`, a statement of the default graph as the triple `<s> <p> <o> .\n` (the User
  Guide's example of the NQUADS format). Parameters `iteratorType`
  (AT_SEQUENCE_NUMBER, the default; AFTER_SEQUENCE_NUMBER; TRIM_HORIZON; LATEST, at most one record), `commitNum`
  (required for the first two), `opNum` (default 1), `limit` (1 to 100,000, default 10; it may end a response inside
  a transaction; so may the response's 10 MB cap, which takes precedence, the record that breaches it included: the
  size counted here is each record as JSON). Errors: InvalidParameterException (400), ExpiredStreamException (400: the record asked for is
  older than `neptune_streams_expiry_days` and gone), StreamRecordsNotFoundException (404, nothing at or after the
  position). Records are written only while the cluster's parameter group sets `neptune_streams` to 1.
  https://docs.aws.amazon.com/neptune/latest/userguide/streams-using-api-call.html
  https://docs.aws.amazon.com/neptune/latest/userguide/streams-using-api-reponse.html
  https://docs.aws.amazon.com/neptune/latest/userguide/streams-change-formats.html
  https://docs.aws.amazon.com/neptune/latest/userguide/streams-using-api-exceptions.html
  https://docs.aws.amazon.com/neptune/latest/userguide/parameters.html (neptune_streams, neptune_streams_expiry_days)
- **Snapshots** hold a copy of the volume (graph, dataset and change log: one storage); a cluster restored from one
  starts with that copy. https://docs.aws.amazon.com/neptune/latest/userguide/backup-restore-overview.html

`install()` patches botocore's HTTP session (the layer that sends every signed request), as moto patches botocore
for the AWS APIs: requests to port 8182 come here, everything else goes where it went.
"""

from __future__ import annotations

import bisect
import contextvars
import copy
import datetime
import functools
import ipaddress
import json
import re
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError
from botocore.httpsession import URLLib3Session
from moto.ec2.models import ec2_backends
from moto.iam.exceptions import NotFoundException
from moto.iam.models import iam_backends
from moto.rds import models as rds_models

from sandbox.aws.iam_policy import evaluate

PORT = 8182
DEFAULT_GRAPH = "<http://aws.amazon.com/neptune/vocab/v01/DefaultNamedGraph>"
MAX_LIMIT = 100_000
RESPONSE_CAP_BYTES = 10 * 1024 * 1024  # "a size limit of 10 MB on the response that can't be modified" (streams-using-api-call)

# The Lambda function a request comes from (set by the sandbox's in-process Lambda runtime), for the VPC check.
calling_function: contextvars.ContextVar = contextvars.ContextVar("calling_function", default=None)


class DataPlaneError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Volume:
    vertices: dict = field(default_factory=dict)  # id -> {"labels": set, "props": {key: set((value, dataType))}}
    edges: dict = field(default_factory=dict)     # id -> {"label", "from", "to", "props": {key: (value, dataType)}}
    quads: set = field(default_factory=set)       # "s p o g" with N-Triples terms
    log: dict = field(default_factory=lambda: {"pg": [], "rdf": []})  # model -> [(commitNum, opNum, commitTimestamp ms, model, op, data, isLastOp)]
    commits: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def copy(self) -> "Volume":
        with self.lock:
            return Volume(copy.deepcopy(self.vertices), copy.deepcopy(self.edges), set(self.quads),
                          {model: list(records) for model, records in self.log.items()}, self.commits)


_volumes: dict[str, Volume] = {}       # DbClusterResourceId -> volume
_snapshots: dict[str, Volume] = {}     # snapshot ARN -> volume
_registry = threading.Lock()


def volume(resource_id: str) -> Volume:
    with _registry:
        return _volumes.setdefault(resource_id, Volume())


def reset() -> None:
    with _registry:
        _volumes.clear()
        _snapshots.clear()


# ---------------------------------------------------------------- transactions: the graph and its change log


class Transaction:
    """Changes applied to the volume as they are made; their records join the log at commit, with one commitNum."""

    def __init__(self, vol: Volume, streams: bool):
        self.vol, self.streams, self.records = vol, streams, []
        self.saved: dict = {}  # (table, id) -> the element before this transaction first changed it (None: absent)

    def _save(self, table: str, key: str) -> None:
        if (table, key) not in self.saved:
            self.saved[(table, key)] = copy.deepcopy(getattr(self.vol, table).get(key))

    def rollback(self) -> None:
        """Each element the transaction changed, as it was: a failed query changes nothing."""
        for (table, key), before in self.saved.items():
            if before is None:
                getattr(self.vol, table).pop(key, None)
            else:
                getattr(self.vol, table)[key] = before

    def record(self, model: str, op: str, data: dict) -> None:
        self.records.append((model, op, data))

    def commit(self) -> None:
        if not self.records or not self.streams:
            return
        self.vol.commits += 1
        now = int(time.time() * 1000)
        for n, (model, op, data) in enumerate(self.records, start=1):
            self.vol.log[model].append((self.vol.commits, n, now, model, op, data, n == len(self.records)))

    # property graph
    def add_vertex(self, vid: str, label: str) -> None:
        """A vertex with one label per `::`-separated part, each recorded on its own (Neptune's multi-label vertices)."""
        self._save("vertices", vid)
        self.vol.vertices.setdefault(vid, {"labels": set(), "props": {}})
        self.add_labels(vid, label.split("::"))

    def add_labels(self, vid: str, labels: list[str]) -> None:
        self._save("vertices", vid)
        v = self.vol.vertices[vid]
        for label in labels:
            if label not in v["labels"]:
                v["labels"].add(label)
                self.record("pg", "ADD", {"id": vid, "type": "vl", "key": "label", "value": {"value": label, "dataType": "String"}})

    def remove_labels(self, vid: str, labels: list[str]) -> None:
        """Every node keeps one label at least: removing all of them is an error (User Guide, openCypher data model;
        the error's code is not documented: this stand-in answers ConstraintViolationException)."""
        self._save("vertices", vid)
        v = self.vol.vertices[vid]
        if not v["labels"] - set(labels):
            raise DataPlaneError(400, "ConstraintViolationException", f"cannot remove every label of node {vid}")
        for label in labels:
            if label in v["labels"]:
                v["labels"].discard(label)
                self.record("pg", "REMOVE", {"id": vid, "type": "vl", "key": "label", "value": {"value": label, "dataType": "String"}})

    def set_vertex_property(self, vid: str, key: str, typed: tuple, single: bool) -> None:
        self._save("vertices", vid)
        props = self.vol.vertices[vid]["props"]
        if single:
            for old in sorted(props.get(key, set()) - {typed}, key=repr):
                self.remove_vertex_property(vid, key, old)
        values = props.setdefault(key, set())
        if typed not in values:
            values.add(typed)
            self.record("pg", "ADD", {"id": vid, "type": "vp", "key": key, "value": _value(typed)})

    def remove_vertex_property(self, vid: str, key: str, typed: tuple) -> None:
        self._save("vertices", vid)
        values = self.vol.vertices[vid]["props"].get(key, set())
        if typed in values:
            values.discard(typed)
            if not values:
                del self.vol.vertices[vid]["props"][key]
            self.record("pg", "REMOVE", {"id": vid, "type": "vp", "key": key, "value": _value(typed)})

    def drop_vertex(self, vid: str) -> None:
        self._save("vertices", vid)
        for eid in [e for e, edge in self.vol.edges.items() if vid in (edge["from"], edge["to"])]:
            self.drop_edge(eid)
        vertex = self.vol.vertices[vid]
        for key, values in list(vertex["props"].items()):
            for typed in sorted(values, key=repr):
                self.remove_vertex_property(vid, key, typed)
        for label in sorted(vertex["labels"]):
            self.record("pg", "REMOVE", {"id": vid, "type": "vl", "key": "label", "value": {"value": label, "dataType": "String"}})
        del self.vol.vertices[vid]

    def add_edge(self, eid: str, label: str, source: str, target: str) -> None:
        self._save("edges", eid)
        if eid in self.vol.edges:
            raise DataPlaneError(400, "ConstraintViolationException", f"an edge with id {eid} already exists")
        self.vol.edges[eid] = {"label": label, "from": source, "to": target, "props": {}}
        self.record("pg", "ADD", {"id": eid, "type": "e", "key": "label", "value": {"value": label, "dataType": "String"},
                                  "from": source, "to": target})

    def set_edge_property(self, eid: str, key: str, typed: tuple) -> None:
        self._save("edges", eid)
        props = self.vol.edges[eid]["props"]
        if props.get(key) == typed:
            return
        if key in props:
            self.remove_edge_property(eid, key)
        props[key] = typed
        self.record("pg", "ADD", {"id": eid, "type": "ep", "key": key, "value": _value(typed)})

    def remove_edge_property(self, eid: str, key: str) -> None:
        self._save("edges", eid)
        typed = self.vol.edges[eid]["props"].pop(key)
        self.record("pg", "REMOVE", {"id": eid, "type": "ep", "key": key, "value": _value(typed)})

    def drop_edge(self, eid: str) -> None:
        self._save("edges", eid)
        edge = self.vol.edges[eid]
        for key in sorted(edge["props"]):
            self.remove_edge_property(eid, key)
        self.record("pg", "REMOVE", {"id": eid, "type": "e", "key": "label", "value": {"value": edge["label"], "dataType": "String"},
                                     "from": edge["from"], "to": edge["to"]})
        del self.vol.edges[eid]

    # RDF
    def quad(self, op: str, quad: str) -> None:
        present = quad in self.vol.quads
        if op == "ADD" and not present:
            self.vol.quads.add(quad)
        elif op == "REMOVE" and present:
            self.vol.quads.discard(quad)
        else:
            return
        statement = quad.removesuffix(" " + DEFAULT_GRAPH)  # the default graph's statements are written as triples
        self.record("rdf", op, {"stmt": statement + " .\n"})


def _value(typed: tuple) -> dict:
    return {"value": typed[0], "dataType": typed[1]}


# ---------------------------------------------------------------- Gremlin (a subset of TinkerPop's steps)

TOKEN = re.compile(r"""\s*(?:(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|(?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?[LlDdFf]?)|(?P<name>[A-Za-z_][\w]*)|(?P<sym>[().,;\[\]:]))""")


class Gremlin:
    """Sources `g.V(ids)`, `g.E(ids)`, `g.addV(label)` (`a::b`: a vertex with both labels, as Neptune allows); steps
    `V(ids)` mid-traversal (those vertices once per traverser), `addV`, `addE(label)`, `from`/`to` (a traversal
    `__.V(id)`; one that yields no vertex is an error, as in TinkerPop, and the script's transaction rolls back),
    `where(traversal)`, `property([single|set,] key, value)` (`T.id` on a new element), `properties(keys)`, `hasValue`,
    `hasLabel`, `has(key, value)`, `bothE`, `outV`, `inV`, `drop`, `fold`, `unfold`, `coalesce`, `id`, `label`, `values`, `count`,
    `project(keys).by(...)` (each `by` a traversal, whose first result is the value, or `id`, `label`, `key`, `value`),
    `iterate` (a statement before a script's last runs only when iterated, as in Neptune).
    Literals: strings, `true`/`false`, integers (`L` suffix: Long), decimals (Double; `f`: Float; `d`: Double),
    `datetime('ISO-8601')`. https://tinkerpop.apache.org/docs/current/reference/#graph-traversal-steps"""

    def __init__(self, script: str):
        self.tokens, self.pos, at, end = [], 0, 0, len(script.rstrip())
        while at < end:
            match = TOKEN.match(script, at)
            if not match:
                raise DataPlaneError(400, "MalformedQueryException", f"Failed to interpret Gremlin query at: {script[at:at + 40]!r}")
            self.tokens.append((match.lastgroup, match.group(match.lastgroup)))
            at = match.end()

    def parse(self) -> list:
        traversals = []
        while self.pos < len(self.tokens):
            if self.peek() == ";":
                self.pos += 1
                continue
            traversals.append(self.chain())
        return traversals

    def peek(self):
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None):
        if self.pos >= len(self.tokens):
            raise DataPlaneError(400, "MalformedQueryException", "Failed to interpret Gremlin query: unexpected end")
        kind, text = self.tokens[self.pos]
        if expected is not None and text != expected:
            raise DataPlaneError(400, "MalformedQueryException", f"Failed to interpret Gremlin query: expected {expected}, got {text}")
        self.pos += 1
        return kind, text

    def chain(self) -> list:
        _, head = self.take()
        if head not in ("g", "__"):
            raise DataPlaneError(400, "MalformedQueryException", f"Failed to interpret Gremlin query: {head}")
        steps = [] if head == "g" else [("__", [])]
        while self.peek() == ".":
            self.take(".")
            _, name = self.take()
            self.take("(")
            args = []
            while self.peek() != ")":
                args.append(self.argument())
                if self.peek() == ",":
                    self.take(",")
            self.take(")")
            steps.append((name, args))
        return steps

    def argument(self):
        kind, text = self.tokens[self.pos]
        if kind == "str":
            self.pos += 1
            return ("lit", (re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text[1:-1]), "String"))
        if kind == "num":
            self.pos += 1
            suffix = text[-1].lower() if text[-1].isalpha() else ""
            number = text[:-1] if suffix else text
            if suffix == "l":
                return ("lit", (int(number), "Long"))
            if suffix == "f":
                return ("lit", (float(number), "Float"))
            if suffix == "d" or "." in number or "e" in number.lower():
                return ("lit", (float(number), "Double"))
            return ("lit", (int(number), "Integer"))
        if text in ("true", "false"):
            self.pos += 1
            return ("lit", (text == "true", "Boolean"))
        if text in ("T", "Cardinality", "VertexProperty") and self.tokens[self.pos + 1][1] == ".":
            self.pos += 2
            return ("sym", self.take()[1])
        if text in ("id", "label", "key", "value", "single", "set", "list"):
            self.pos += 1
            return ("sym", text)
        if text == "datetime":
            self.pos += 1
            self.take("(")
            _, value = self.take()
            self.take(")")
            try:
                return ("lit", (date_text(date_millis(value[1:-1])), "Date"))
            except ValueError:
                raise DataPlaneError(400, "MalformedQueryException", f"Failed to interpret Gremlin query: datetime({value})") from None
        if text in ("g", "__"):
            return ("traversal", self.chain())
        if text in ("unfold", "V", "E", "addV", "addE", "fold", "where"):  # an anonymous traversal written without __.
            self.tokens.insert(self.pos, ("name", "__"))
            self.tokens.insert(self.pos + 1, ("sym", "."))
            return ("traversal", self.chain())
        raise DataPlaneError(400, "MalformedQueryException", f"Failed to interpret Gremlin query: {text}")


def _run_traversal(tx: Transaction, steps: list, start: list | None = None) -> list:
    vol = tx.vol
    items: list = list(start or [])
    for index, (name, args) in enumerate(steps):
        values = [a[1] for a in args]
        if name == "__":
            continue
        if name in ("V", "E"):
            table = vol.vertices if name == "V" else vol.edges
            kind = "v" if name == "V" else "e"
            found = [(kind, i) for i in ([v[0] for v in values] or list(table)) if i in table]
            starts = start is None and all(step[0] == "__" for step in steps[:index])
            items = found if starts else [element for _ in items for element in found]
        elif name == "addV":  # a source step makes one vertex; a mid-traversal step one per traverser
            label = values[0][0] if values else "vertex"
            items = [("newv", label, {}) for _ in range(1 if index == 0 and start is None else len(items))]
        elif name == "addE":
            sources = [None] if index == 0 and start is None else items  # a source step; else one edge per vertex
            items = [("newe", values[0][0], {"from": s[1] if s and s[0] == "v" else None}) for s in sources]
        elif name in ("from", "to"):
            ends = _run_traversal(tx, args[0][1]) if args and args[0][0] == "traversal" else []
            if items and not ends:  # TinkerPop refuses an edge whose end traversal finds nothing (apache/tinkerpop#1860)
                raise DataPlaneError(500, "InternalFailureException", f"The provided traverser does not map to a value: addE().{name}()")
            items = [(i[0], i[1], {**i[2], name: ends[0][1]}) for i in items if i[0] == "newe"]
        elif name == "where":
            items = [i for i in items if _run_traversal(tx, args[0][1], [i])]
        elif name == "property":
            cardinality = values[0] if args[0][0] == "sym" and values[0] in ("single", "set", "list") else None
            key, value = (values[1], values[2]) if cardinality else (values[0], values[1])
            new_items = []
            for item in items:
                if item[0] in ("newv", "newe"):
                    item[2].setdefault("props", []).append((key, value, cardinality))
                elif item[0] == "v":
                    tx.set_vertex_property(item[1], key[0], value, single=cardinality == "single")
                elif item[0] == "e":
                    tx.set_edge_property(item[1], key[0], value)
                new_items.append(item)
            items = new_items
        elif name == "properties":
            keys = {v[0] for v in values}
            found = []
            for item in items:
                if item[0] == "v":
                    found += [("vp", item[1], k, t) for k, ts in vol.vertices[item[1]]["props"].items() if not keys or k in keys for t in ts]
                elif item[0] == "e":
                    found += [("ep", item[1], k, t) for k, t in vol.edges[item[1]]["props"].items() if not keys or k in keys]
            items = found
        elif name == "hasValue":
            items = [i for i in items if i[0] in ("vp", "ep") and i[3] in values]
        elif name == "hasLabel":
            labels = {v[0] for v in values}
            items = [i for i in items if (i[0] == "v" and vol.vertices[i[1]]["labels"] & labels)
                     or (i[0] == "e" and vol.edges[i[1]]["label"] in labels)]
        elif name == "has":
            key, value = values[0][0], values[1]
            items = [i for i in items if (i[0] == "v" and value in vol.vertices[i[1]]["props"].get(key, ()))
                     or (i[0] == "e" and vol.edges[i[1]]["props"].get(key) == value)]
        elif name == "drop":
            for item in items:
                if item[0] == "v" and item[1] in vol.vertices:
                    tx.drop_vertex(item[1])
                elif item[0] == "e" and item[1] in vol.edges:
                    tx.drop_edge(item[1])
                elif item[0] == "vp" and item[1] in vol.vertices:
                    tx.remove_vertex_property(item[1], item[2], item[3])
                elif item[0] == "ep" and item[1] in vol.edges and item[2] in vol.edges[item[1]]["props"]:
                    tx.remove_edge_property(item[1], item[2])
            items = []
        elif name == "bothE":  # outE() then inE() of each vertex: a self-loop comes twice, as in TinkerPop
            items = [("e", e) for i in _materialize(tx, items) if i[0] == "v" for end in ("from", "to")
                     for e, edge in vol.edges.items() if edge[end] == i[1]]
        elif name in ("outV", "inV"):
            items = [("v", vol.edges[i[1]]["from" if name == "outV" else "to"]) for i in _materialize(tx, items) if i[0] == "e"]
        elif name == "project":  # its by() modulators taken in turn, cycling (TinkerPop's ProjectStep, a traversal ring)
            count = next((n for n, step in enumerate(steps[index + 1:]) if step[0] != "by"), len(steps) - index - 1)
            modulators = [step[1][0] if step[1] else ("identity", None) for step in steps[index + 1:index + 1 + count]]
            items = [("map", [(key[0], value) for n, key in enumerate(values)
                              if (value := _projected(tx, item, modulators[n % len(modulators)] if modulators else ("identity", None))) is not None])
                     for item in _materialize(tx, items)]
            return _run_traversal(tx, [("__", [])] + steps[index + 1 + count:], items)
        elif name == "fold":
            items = [("list", _materialize(tx, items))]
        elif name == "unfold":
            items = [x for i in items for x in (i[1] if i[0] == "list" else [i])]
        elif name == "coalesce":
            for branch in args:
                result = []
                for item in items:
                    result += _run_traversal(tx, branch[1], [item])
                if result:
                    items = result
                    break
            else:
                items = []
        elif name == "iterate":  # runs the traversal for its side effects, returns nothing
            _materialize(tx, items)
            items = []
        elif name in ("id", "label", "values", "count"):
            items = _materialize(tx, items)
            if name == "id":
                items = [("val", i[1]) for i in items if i[0] in ("v", "e")]
            elif name == "label":
                # A vertex with several labels answers all of them, joined by `::` (Neptune's multi-label vertices).
                items = [("val", "::".join(sorted(vol.vertices[i[1]]["labels"])) if i[0] == "v" else vol.edges[i[1]]["label"]) for i in items]
            elif name == "values":
                keys = {v[0] for v in values}
                items = [("typed", t) for i in items if i[0] == "v" for k, ts in vol.vertices[i[1]]["props"].items()
                         if not keys or k in keys for t in sorted(ts, key=repr)]
            else:
                items = [("val", len(items))]
        else:
            raise DataPlaneError(400, "UnsupportedOperationException", f"the local Neptune does not emulate the {name}() step")
    return _materialize(tx, items)


def _projected(tx: Transaction, item: tuple, by: tuple):
    """One `by()` of `project()`: the element itself, a token of it (T.id, T.label, T.key, T.value) or a traversal's
    first result; None when the traversal yields nothing (the key is left out, as TinkerPop 3.6 does)."""
    kind, what = by
    if kind == "identity":
        return item
    if kind == "traversal":
        found = _run_traversal(tx, what, [item])
        return found[0] if found else None
    if what == "id" and item[0] in ("v", "e"):
        return ("val", item[1])
    if what == "label" and item[0] in ("v", "e"):
        return _run_traversal(tx, [("__", []), ("label", [])], [item])[0]
    if what == "key" and item[0] in ("vp", "ep"):
        return ("val", item[2])
    if what == "value" and item[0] in ("vp", "ep"):
        return ("typed", item[3])
    raise DataPlaneError(500, "InternalFailureException", f"by({what}) does not apply to {item[0]}")


def _materialize(tx: Transaction, items: list) -> list:
    """Elements being built (addV, addE) exist once the traversal reaches a step that reads them, or its end."""
    vol, done = tx.vol, []
    for item in items:
        if item[0] == "newv":
            props = item[2].get("props", [])
            vid = next((v[0] for k, v, _ in props if k == "id"), None) or f"{len(vol.vertices) + 1}-{time.monotonic_ns()}"
            vid = str(vid)
            if vid in vol.vertices:
                raise DataPlaneError(400, "ConstraintViolationException", f"a vertex with id {vid} already exists")
            tx.add_vertex(vid, item[1])
            for key, value, cardinality in props:
                if key != "id":
                    tx.set_vertex_property(vid, key[0], value, single=cardinality == "single")
            done.append(("v", vid))
        elif item[0] == "newe":
            details = item[2]
            if details.get("from") is None or details.get("to") is None:
                raise DataPlaneError(500, "InternalFailureException", "addE() needs both a from and a to vertex")
            props = details.get("props", [])
            eid = str(next((v[0] for k, v, _ in props if k == "id"), None) or f"e{len(vol.edges) + 1}-{time.monotonic_ns()}")
            tx.add_edge(eid, item[1], details["from"], details["to"])
            for key, value, _ in props:
                if key != "id":
                    tx.set_edge_property(eid, key[0], value)
            done.append(("e", eid))
        else:
            done.append(item)
    return done


def run_gremlin(vol: Volume, streams: bool, script: str) -> list:
    traversals = Gremlin(script).parse()
    with vol.lock:
        tx = Transaction(vol, streams)
        try:
            # As Neptune runs a script: a statement before the last is executed only when iterated.
            # https://docs.aws.amazon.com/neptune/latest/userguide/access-graph-gremlin-differences.html (script execution)
            results = [r for n, steps in enumerate(traversals) if n == len(traversals) - 1 or steps[-1][0] == "iterate"
                       for r in _run_traversal(tx, steps)]
        except DataPlaneError:
            tx.rollback()
            raise
        tx.commit()
    return [graphson(vol, r) for r in results]


# GraphSON 3.0, Neptune's default serialization of Gremlin results over HTTP: a type name beside each value that JSON
# cannot tell apart. https://tinkerpop.apache.org/docs/current/dev/io/#graphson-3d0
# https://docs.aws.amazon.com/neptune/latest/userguide/access-graph-gremlin-rest.html
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
GRAPHSON_TYPES = {"Integer": "g:Int32", "Int": "g:Int32", "Long": "g:Int64", "Float": "g:Float", "Double": "g:Double",
                  "Short": "gx:Int16", "Byte": "gx:Byte"}


def graphson(vol: Volume, item):
    kind = item[0]
    if kind == "val":
        return {"@type": "g:Int64", "@value": item[1]} if isinstance(item[1], int) and not isinstance(item[1], bool) else item[1]
    if kind == "typed":
        value, data_type = item[1]
        if data_type == "Date":
            return {"@type": "g:Date", "@value": date_millis(value)}
        return {"@type": GRAPHSON_TYPES[data_type], "@value": value} if data_type in GRAPHSON_TYPES else value
    if kind == "v":
        return {"@type": "g:Vertex", "@value": {"id": item[1], "label": "::".join(sorted(vol.vertices[item[1]]["labels"]))}}
    if kind == "e":
        edge = vol.edges[item[1]]
        labels = {end: "::".join(sorted(vol.vertices[edge[end]]["labels"])) if edge[end] in vol.vertices else "vertex" for end in ("from", "to")}
        return {"@type": "g:Edge", "@value": {"id": item[1], "label": edge["label"], "outVLabel": labels["from"], "inVLabel": labels["to"],
                                             "outV": edge["from"], "inV": edge["to"]}}
    if kind == "vp":  # a vertex property's id: Neptune's are opaque strings
        value = graphson(vol, ("typed", item[3]))
        return {"@type": "g:VertexProperty", "@value": {"id": f"{item[1]}|{item[2]}|{json.dumps(value, sort_keys=True)}",
                                                        "value": value, "label": item[2]}}
    if kind == "ep":
        return {"@type": "g:Property", "@value": {"key": item[2], "value": graphson(vol, ("typed", item[3]))}}
    if kind == "list":
        return {"@type": "g:List", "@value": [graphson(vol, i) for i in item[1]]}
    if kind == "map":
        return {"@type": "g:Map", "@value": [part for key, value in item[1] for part in (key, graphson(vol, value))]}
    return None


def date_millis(text: str) -> int:
    """An ISO-8601 date or time (Neptune's datetime()), as the milliseconds since the epoch Neptune keeps."""
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return (moment - EPOCH) // datetime.timedelta(milliseconds=1)


def date_text(millis: int) -> str:
    return (EPOCH + datetime.timedelta(milliseconds=millis)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- SPARQL 1.1 Update: INSERT DATA, DELETE DATA

TERM = re.compile(r'<[^<>"{}|^`\\\s]*>|_:[A-Za-z0-9_]+|"(?:[^"\\]|\\.)*"(?:@[A-Za-z]+(?:-[A-Za-z0-9]+)*|\^\^<[^<>\s]*>)?')
UPDATE_TOKEN = re.compile(r'\s*(?:(?P<term>' + TERM.pattern + r')|(?P<word>[A-Za-z]+)|(?P<sym>[{}.;]))')
_blank_nodes = iter(range(1, 1 << 62))


def _update_tokens(update: str) -> list[tuple[str, str]]:
    tokens, at, end = [], 0, len(update.rstrip())
    while at < end:
        match = UPDATE_TOKEN.match(update, at)
        if not match:
            raise DataPlaneError(400, "MalformedQueryException", f"Malformed query at: {update[at:at + 40]!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind).upper() if kind == "word" else match.group(kind)))
        at = match.end()
    return tokens


def _sparql_operations(update: str) -> list[tuple[str, list[str]]]:
    """`INSERT DATA { ... }` and `DELETE DATA { ... }`, separated by `;`: each a list of quads "s p o g". Blank nodes
    in INSERT DATA are fresh ones; DELETE DATA refuses them. https://www.w3.org/TR/sparql11-update/#insertData"""
    tokens, pos, operations = _update_tokens(update), 0, []

    def take(kind: str, text: str | None = None) -> str:
        nonlocal pos
        if pos >= len(tokens) or tokens[pos][0] != kind or (text is not None and tokens[pos][1] != text):
            found = tokens[pos][1] if pos < len(tokens) else "the end"
            raise DataPlaneError(400, "MalformedQueryException", f"the local Neptune takes INSERT DATA and DELETE DATA updates only: {found!r}")
        pos += 1
        return tokens[pos - 1][1]

    def triples(graph: str, fresh: dict | None) -> list[str]:
        nonlocal pos
        found = []
        while pos < len(tokens) and tokens[pos][0] == "term":
            terms = [take("term") for _ in range(3)]
            if any(t.startswith("_:") for t in terms):
                if fresh is None:
                    raise DataPlaneError(400, "MalformedQueryException", "Blank nodes are not permitted in DELETE DATA")
                terms = [fresh.setdefault(t, f"_:b{next(_blank_nodes)}") if t.startswith("_:") else t for t in terms]
            found.append(f"{' '.join(terms)} {graph}")
            if pos < len(tokens) and tokens[pos] == ("sym", "."):
                pos += 1
        return found

    while pos < len(tokens):
        op = {"INSERT": "ADD", "DELETE": "REMOVE"}.get(tokens[pos][1]) if tokens[pos][0] == "word" else None
        take("word", "INSERT" if op != "REMOVE" else "DELETE")
        take("word", "DATA")
        take("sym", "{")
        fresh, quads = ({} if op == "ADD" else None), []
        while pos < len(tokens) and tokens[pos] != ("sym", "}"):
            if tokens[pos] == ("word", "GRAPH"):
                pos += 1
                graph = take("term")
                take("sym", "{")
                quads += triples(graph, fresh)
                take("sym", "}")
            elif tokens[pos][0] == "term":
                quads += triples(DEFAULT_GRAPH, fresh)
            else:
                take("term")
        take("sym", "}")
        operations.append((op, quads))
        if pos < len(tokens):
            take("sym", ";")
    return operations


def run_sparql_update(vol: Volume, streams: bool, update: str) -> None:
    operations = _sparql_operations(update)
    with vol.lock:
        tx = Transaction(vol, streams)
        for op, quads in operations:
            for quad in quads:
                tx.quad(op, quad)
        tx.commit()


# ---------------------------------------------------------------- openCypher: a vertex's labels

CYPHER_LABEL = r":(?:[A-Za-z_][A-Za-z0-9_]*|`(?:[^`]|``)*`)"
LABELS_QUERY = re.compile(
    r"\s*(?:UNWIND\s+\$(?P<list>\w+)\s+AS\s+(?P<each>\w+)\s+)?MATCH\s*\(\s*(?P<node>\w+)\s*\)\s*WHERE\s+id\(\s*(?P=node)\s*\)"
    r"\s*=\s*(?:\$(?P<param>\w+)|(?P<var>\w+))\s+(?P<verb>SET|REMOVE)\s+(?P=node)(?P<labels>(?:" + CYPHER_LABEL + r")+)\s*",
    re.IGNORECASE)


def run_opencypher(vol: Volume, streams: bool, query: str, parameters: dict) -> list:
    match = LABELS_QUERY.fullmatch(query)
    if match is None or (match["var"] is not None and match["var"] != match["each"]):
        raise DataPlaneError(400, "MalformedQueryException", f"the local Neptune's openCypher sets or removes labels only: {query[:120]!r}")
    ids = parameters.get(match["list"]) if match["list"] else None
    if match["param"]:
        ids = [parameters.get(match["param"])]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise DataPlaneError(400, "MalformedQueryException", "the query's id parameters are missing or not strings")
    labels = [name[1:-1].replace("``", "`") if name.startswith("`") else name
              for name in re.findall(r"`(?:[^`]|``)*`|[A-Za-z_][A-Za-z0-9_]*", match["labels"])]
    with vol.lock:
        tx = Transaction(vol, streams)
        try:
            for vid in ids:
                if vid in vol.vertices:  # MATCH finds nothing: nothing to set
                    (tx.add_labels if match["verb"].upper() == "SET" else tx.remove_labels)(vid, labels)
        except DataPlaneError:
            tx.rollback()  # the query's transaction rolls back
            raise
        tx.commit()
    return []


# ---------------------------------------------------------------- the Streams API


def read_stream(vol: Volume, model: str, params: dict, expiry_days: int) -> dict:
    iterator = params.get("iteratorType", "AT_SEQUENCE_NUMBER")
    if iterator not in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "TRIM_HORIZON", "LATEST"):
        raise DataPlaneError(400, "InvalidParameterException", f"invalid iteratorType {iterator}")
    try:
        limit = int(params.get("limit", 10))
        commit = int(params["commitNum"]) if "commitNum" in params else None
        op = int(params.get("opNum", 1))
    except ValueError:
        raise DataPlaneError(400, "InvalidParameterException", "commitNum, opNum and limit are numbers") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise DataPlaneError(400, "InvalidParameterException", f"limit must be from 1 to {MAX_LIMIT}")
    if iterator in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER") and commit is None:
        raise DataPlaneError(400, "InvalidParameterException", f"commitNum is required with {iterator}")
    oldest = int((time.time() - expiry_days * 86400) * 1000)
    with vol.lock:  # the log is in commit order, so in time order too: found by bisection, not read whole
        log = vol.log[model]
        if iterator == "LATEST":
            chosen = log[-1:] if log and log[-1][2] >= oldest else []
        elif iterator == "TRIM_HORIZON":
            start = bisect.bisect_left(log, oldest, key=lambda r: r[2])
            chosen = log[start:start + limit]
        else:
            find = bisect.bisect_right if iterator == "AFTER_SEQUENCE_NUMBER" else bisect.bisect_left
            start = find(log, (commit, op), key=lambda r: (r[0], r[1]))
            if start < len(log) and log[start][2] < oldest:  # the record asked for is gone: reading on would skip changes
                raise DataPlaneError(400, "ExpiredStreamException", "All of the requested records exceed the maximum age allowed and have expired.")
            chosen = log[start:start + limit]
    if not chosen:
        raise DataPlaneError(404, "StreamRecordsNotFoundException", "The requested resource could not be found. The stream may not be specified correctly.")
    records, size = [], 0
    for r in chosen[:limit]:  # the 10 MB cap takes precedence over `limit`; the record that breaches it is sent
        records.append({"commitTimestamp": r[2], "eventId": {"commitNum": r[0], "opNum": r[1]}, "data": r[5], "op": r[4],
                        **({"isLastOp": True} if r[6] else {})})
        size += len(json.dumps(records[-1]))
        if size >= RESPONSE_CAP_BYTES:
            break
    return {
        "lastEventId": records[-1]["eventId"],
        "lastTrxTimestamp": records[-1]["commitTimestamp"],
        "format": "PG_JSON" if model == "pg" else "NQUADS",
        "records": records,
        "totalRecords": len(records),
    }


# ---------------------------------------------------------------- the endpoint: which cluster a host reaches, and from where


def _clusters():
    for account, regions in rds_models.rds_backends.items():
        for region, backend in regions.items():
            for cluster in list(backend.clusters.values()):
                if cluster.engine == "neptune":
                    yield account, region, backend, cluster


def resolve(host: str):
    """(account, region, backend, cluster) that the host names now, or None (nothing answers under that name): a
    cluster's endpoints lead to its instances, so one without an available instance answers nothing either.
    https://docs.aws.amazon.com/neptune/latest/userguide/feature-overview-endpoints.html"""
    for account, region, backend, cluster in _clusters():
        if host in (cluster.endpoint, cluster.reader_endpoint) and cluster.status not in ("stopped", "stopping", "renaming", "deleting") \
                and any(getattr(instance, "status", "available") == "available" for instance in cluster._members):
            return account, region, backend, cluster
    return None


def parameters(backend, cluster) -> dict[str, str]:
    group = backend.db_cluster_parameter_groups.get(cluster.parameter_group)
    found = {}
    if group is not None:
        for name, parameter in getattr(group, "parameters", {}).items():
            found[name] = str(parameter.get("ParameterValue", "")) if isinstance(parameter, dict) else str(parameter)
    return found


def streams_enabled(backend, cluster) -> bool:
    return parameters(backend, cluster).get("neptune_streams") == "1"


def expiry_days(backend, cluster) -> int:
    return int(parameters(backend, cluster).get("neptune_streams_expiry_days", "7"))


def _on_port(rule, port: int) -> bool:
    return rule.ip_protocol == "-1" or (rule.ip_protocol == "tcp" and rule.from_port <= port <= rule.to_port)


def _range(rule):
    cidr = (rule.ip_range or {}).get("CidrIp")
    return ipaddress.ip_network(cidr, strict=False) if cidr else None


def _interface_admitted(interface, cluster, cluster_groups: list, cluster_ranges: list) -> bool:
    """A connection from one of the function's interfaces: an ingress rule of the cluster's groups admits its address
    or one of its groups, and an egress rule of its groups lets it out to the cluster's groups or to a range holding
    every subnet the cluster's instances may sit in. Security groups are stateful: the answer needs no rule."""
    address, own = ipaddress.ip_address(interface.private_ip_address), {g.id for g in interface.group_set}
    cluster_ids = {g.id for g in cluster_groups}
    admitted = any(_on_port(rule, cluster.port) and (rule.source_group.get("GroupId") in own or ((r := _range(rule)) is not None and address in r))
                   for group in cluster_groups for rule in group.ingress_rules)
    let_out = any(_on_port(rule, cluster.port) and (rule.source_group.get("GroupId") in cluster_ids or (
                      (r := _range(rule)) is not None and bool(cluster_ranges) and all(c.subnet_of(r) for c in cluster_ranges)))
                  for group in interface.group_set for rule in group.egress_rules)
    return admitted and let_out


def _admitted(account: str, region: str, backend, cluster) -> bool:
    """Lambda may send a request from any of the function's interfaces (one a subnet): each must be admitted."""
    function = calling_function.get()
    if function is None:
        return True  # the customer's application, in the cluster's VPC
    ec2 = ec2_backends[account][region]
    interfaces = [eni for eni in ec2.enis.values() if eni.description == f"AWS Lambda VPC ENI-{function.function_name}"]
    if not interfaces:
        return False
    groups = {gid: g for by_vpc in ec2.groups.values() for gid, g in by_vpc.items()}
    cluster_groups = [groups[g] for g in cluster.vpc_security_group_ids if g in groups]
    subnet_group = backend.subnet_groups.get(cluster.db_subnet_group_name)
    cluster_ranges = [ipaddress.ip_network(s.cidr_block) for s in getattr(subnet_group, "_subnets", [])]
    return all(_interface_admitted(eni, cluster, cluster_groups, cluster_ranges) for eni in interfaces)


# Which data-access actions a request needs (Neptune User Guide, "IAM actions for data access" and "Using query actions":
# every step of a query is judged for what it could do, and the query needs all of it). Read steps are everything else.
# https://docs.aws.amazon.com/neptune/latest/userguide/iam-dp-actions.html
# https://docs.aws.amazon.com/neptune/latest/userguide/iam-data-access-policies.html#iam-data-query-actions
GREMLIN_WRITES, GREMLIN_DELETES, GREMLIN_NEUTRAL = {"addV", "addE", "property"}, {"drop"}, {"__", "iterate", "from", "to"}


def _gremlin_steps(traversal: list):
    for name, args in traversal:
        yield name
        for kind, value in args:
            if kind == "traversal":
                yield from _gremlin_steps(value)


def required_actions(method: str, path: str, body: bytes) -> set[str]:
    """The `neptune-db` actions a request needs."""
    if method == "GET":
        return {"neptune-db:GetStreamRecords"}
    form = {k: v[-1] for k, v in parse_qs((body or b"").decode(errors="replace")).items()}
    if path == "/gremlin":
        steps = {n for t in Gremlin(json.loads(body or b"{}").get("gremlin", "")).parse() for n in _gremlin_steps(t)}
        kinds = {"WriteDataViaQuery" for n in steps if n in GREMLIN_WRITES} | {"DeleteDataViaQuery" for n in steps if n in GREMLIN_DELETES} \
            | {"ReadDataViaQuery" for n in steps if n not in GREMLIN_WRITES | GREMLIN_DELETES | GREMLIN_NEUTRAL}
        return {f"neptune-db:{k}" for k in kinds}
    if path == "/sparql":
        words = set(re.findall(r"\b(INSERT|DELETE)\b", form.get("update", ""), re.IGNORECASE))
        return {"neptune-db:WriteDataViaQuery" if w.upper() == "INSERT" else "neptune-db:DeleteDataViaQuery" for w in words}
    query = form.get("query", "").upper()
    return {"neptune-db:ReadDataViaQuery"} | ({"neptune-db:WriteDataViaQuery"} if " SET " in f" {query} " else set()) \
        | ({"neptune-db:DeleteDataViaQuery"} if " REMOVE " in f" {query} " else set())


def _authorized(account: str, region: str, cluster, method: str, path: str, body: bytes) -> str | None:
    """With IAM database authentication, a request from a Lambda function is made with its execution role's
    credentials: each action it needs on the cluster's data resource must be allowed by the role's policies and,
    when it has one, its permissions boundary (IAM evaluation: sandbox/aws/iam_policy.py). The reason it is not, or
    None. (A request from outside a function is the customer's application, whose identity the local AWS does not
    know: only its SigV4 signature is checked.)
    https://docs.aws.amazon.com/neptune/latest/userguide/iam-data-resources.html
    https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html"""
    function = calling_function.get()
    if function is None:
        return None
    iam = iam_backends[account]["global"]
    try:
        role = iam.get_role_by_arn(function.role)
    except NotFoundException:
        return f"the function's role {function.role} does not exist"
    identity = [json.loads(document) for document in role.policies.values()]
    identity += [json.loads(next(v.document for v in policy.versions if v.is_default)) for policy in role.managed_policies.values()]
    boundary = iam.managed_policies.get(role.permissions_boundary_arn) if role.permissions_boundary_arn else None
    if role.permissions_boundary_arn and boundary is None:
        return f"{role.name}'s permissions boundary {role.permissions_boundary_arn} does not exist"
    partition = function.role.split(":")[1]
    resource = f"arn:{partition}:neptune-db:{region}:{account}:{cluster.db_cluster_resource_id}/*"
    for action in sorted(required_actions(method, path, body)):
        if not evaluate(identity, action, resource).allowed:
            return f"{role.name} is not authorized to perform {action} on {resource}"
        if boundary is not None and not evaluate([json.loads(next(v.document for v in boundary.versions if v.is_default))],
                                                 action, resource).allowed:
            return f"{role.name}'s permissions boundary does not allow {action} on {resource}"
    return None


def handle(method: str, url: str, headers: dict, body: bytes) -> tuple[int, dict]:
    parts = urlsplit(url)
    found = resolve(parts.hostname or "")
    if found is None or parts.port != PORT:
        raise EndpointConnectionError(endpoint_url=url)
    account, region, backend, cluster = found
    if not _admitted(account, region, backend, cluster):
        raise EndpointConnectionError(endpoint_url=url)  # no route from outside the VPC: the connection times out
    if cluster.iam_auth and "neptune-db/aws4_request" not in str(headers.get("Authorization", "")):
        raise DataPlaneError(403, "AccessDeniedException", "Missing Authentication Token")
    if cluster.iam_auth and (denied := _authorized(account, region, cluster, method, urlsplit(url).path.rstrip("/"), body)):
        raise DataPlaneError(403, "AccessDeniedException", denied)
    vol = volume(cluster.db_cluster_resource_id)
    streams = streams_enabled(backend, cluster)
    params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    path = parts.path.rstrip("/")
    if method == "GET" and path in ("/propertygraph/stream", "/pg/stream", "/sparql/stream"):
        if not streams:
            raise DataPlaneError(400, "InvalidParameterException", "Neptune Streams is not enabled on this cluster (neptune_streams)")
        return 200, read_stream(vol, "rdf" if path == "/sparql/stream" else "pg", params, expiry_days(backend, cluster))
    if method == "POST" and path == "/gremlin":
        script = json.loads(body or b"{}").get("gremlin", "")
        data = {"@type": "g:List", "@value": run_gremlin(vol, streams, script)}
        return 200, {"requestId": str(time.monotonic_ns()), "status": {"message": "", "code": 200, "attributes": {"@type": "g:Map", "@value": []}},
                     "result": {"data": data, "meta": {"@type": "g:Map", "@value": []}}}
    if method == "POST" and path == "/sparql":
        form = {k: v[-1] for k, v in parse_qs((body or b"").decode()).items()}
        if "update" not in form:
            raise DataPlaneError(400, "MissingParameterException", "the local Neptune takes SPARQL updates (update=) only")
        run_sparql_update(vol, streams, form["update"])
        return 200, {"type": "commit", "totalElapsedMillis": 0}
    if method == "POST" and path.lower() == "/opencypher":
        form = {k: v[-1] for k, v in parse_qs((body or b"").decode()).items()}
        try:
            parameters = json.loads(form.get("parameters", "{}"))
        except ValueError:
            raise DataPlaneError(400, "MalformedQueryException", "parameters is not JSON") from None
        return 200, {"results": run_opencypher(vol, streams, form.get("query", ""), parameters if isinstance(parameters, dict) else {})}
    raise DataPlaneError(400, "BadRequestException", f"the local Neptune does not emulate {method} {path}")


class _Raw:
    def __init__(self, data: bytes):
        self.data = data

    def stream(self, *args, **kwargs):
        yield self.data


def install() -> None:
    """Route requests to port 8182 here; volumes follow snapshots and restores."""
    if getattr(URLLib3Session.send, "_neptune_data", False):
        return
    original_send = URLLib3Session.send

    @functools.wraps(original_send)
    def send(self, request):
        if urlsplit(request.url).port != PORT:
            return original_send(self, request)
        body = request.body if isinstance(request.body, (bytes, type(None))) else request.body.read()
        try:
            status, payload = handle(request.method, request.url, dict(request.headers), body)
        except DataPlaneError as error:
            status, payload = error.status, {"code": error.code, "requestId": str(time.monotonic_ns()), "detailedMessage": error.message}
        return AWSResponse(request.url, status, {"content-type": "application/json"}, _Raw(json.dumps(payload).encode()))

    send._neptune_data = True
    URLLib3Session.send = send

    original_snapshot = rds_models.RDSBackend.create_db_cluster_snapshot

    @functools.wraps(original_snapshot)
    def create_db_cluster_snapshot(self, db_cluster_identifier, db_cluster_snapshot_identifier, snapshot_type="manual", tags=None):
        snapshot = original_snapshot(self, db_cluster_identifier, db_cluster_snapshot_identifier, snapshot_type, tags)
        _snapshots[snapshot.arn] = volume(snapshot.cluster.db_cluster_resource_id).copy()
        return snapshot

    original_copy = rds_models.RDSBackend.copy_db_cluster_snapshot

    @functools.wraps(original_copy)
    def copy_db_cluster_snapshot(self, source_db_cluster_snapshot_identifier, target_db_cluster_snapshot_identifier, *args, **kwargs):
        copied = original_copy(self, source_db_cluster_snapshot_identifier, target_db_cluster_snapshot_identifier, *args, **kwargs)
        source = self.describe_db_cluster_snapshots(None, source_db_cluster_snapshot_identifier)[0]
        if source.arn in _snapshots:
            _snapshots[copied.arn] = _snapshots[source.arn].copy()
        return copied

    original_restore = rds_models.RDSBackend.restore_db_cluster_from_snapshot

    @functools.wraps(original_restore)
    def restore_db_cluster_from_snapshot(self, from_snapshot_id, overrides):
        cluster = original_restore(self, from_snapshot_id, overrides)
        snapshot = self.describe_db_cluster_snapshots(None, from_snapshot_id)[0]
        if snapshot.arn in _snapshots:
            with _registry:
                _volumes[cluster.db_cluster_resource_id] = _snapshots[snapshot.arn].copy()
        return cluster

    rds_models.RDSBackend.create_db_cluster_snapshot = create_db_cluster_snapshot
    rds_models.RDSBackend.copy_db_cluster_snapshot = copy_db_cluster_snapshot
    rds_models.RDSBackend.restore_db_cluster_from_snapshot = restore_db_cluster_from_snapshot


def endpoint_of(cluster_id: str, account: str, region: str) -> str:
    cluster = rds_models.rds_backends[account][region].clusters[cluster_id.lower()]
    return f"https://{cluster.endpoint}:{PORT}"
