"""Replicating a live Neptune cluster into its re-encrypted copy through Neptune Streams, and proving the copy
complete by stream position.

What the proof rests on (Neptune User Guide, "Capturing graph changes in real time using Neptune streams"): the
change log is written in the same transaction and storage as the graph, in commit order, with no duplicates and
nothing omitted; each change is one record identified by (`commitNum`, `opNum`), the last of a transaction marked
`isLastOp`. So:

- **Start.** The original's latest event is read *before* the snapshot is requested, and again once the snapshot is
  available. Every change up to the first is in the snapshot, none after the second; where in between it was taken is
  not documented. Replication reads from just after the first.
- **Whole transactions.** A response may end inside a transaction (`limit` counts records, and a response holds 10 MB
  at most); the records after the last `isLastOp` read are held and the stream read on until it comes, and only whole
  transactions are applied. So a position is always a commit's end.
- **Idempotent apply.** Every property-graph record is a set-membership change (a vertex label, a vertex property
  value, an edge, an edge property value is added or removed), and so is every RDF quad. Each is applied as "make it
  present" or "make it absent", a no-op when it already is, and a no-op when the element it hangs on is not there
  (a later record in the log removes that element anyway). A vertex's `vl` records of one commit make it with all of
  them (`addV('a::b')`) when it is new, and add them to it when it lives already (openCypher `SET n:Label`: Gremlin
  has no step that adds a label); a `vl` REMOVE of some of the labels the vertex has removes those labels
  (openCypher `REMOVE n:Label`), of every label is the vertex's drop, made only where it can lose nothing that a
  later record does not put back (`Neptune._remove_labels`). A label holding `::` is refused: Gremlin would read it as
  two. Replaying a suffix of the log over a state that already
  holds part of it therefore ends in the same state as the original: the final presence of each item is decided by
  the last record that touches it, and every such record is replayed. Applying a batch twice changes nothing.
- **Except a vertex's existence.** Whether a `vl` REMOVE of every label the copy's vertex shows is the vertex's drop
  cannot always be told over a copy that is ahead (`_remove_labels` decides from what it sees, and may lose
  properties no later record gives back). A copy is ahead only within an *overlap*: the range between the two
  positions read around the snapshot, and the range a run that never returned (a crash, a timeout) may have applied,
  which the next run sees as the copy's own stream having moved since the last run returned (`target_position`). At
  the drain, with the source still, every vertex a `vl` REMOVE of an overlap touches is read whole on both clusters
  (labels, property values with their types, edges with theirs) and the copy's rewritten where it differs
  (`reconcile`); read again after, any difference left stops the cutover.
- **What cannot be replayed exactly is refused, not approximated:** an RDF blank node (SPARQL's INSERT DATA makes a
  fresh one each time and DELETE DATA refuses them), a property value of a type this module does not write, and a
  stream whose records after the position have expired (`ExpiredStreamException`): replication stops, the workflow
  rolls back and says why.
- **Proof.** At the cutover, with writes stopped, replication drains to the original's latest event, the overlaps'
  vertices are reconciled, and the copy's applied position must equal the original's latest, for the property-graph
  and the RDF stream alike; and reading the stream after that position finds nothing
  (`StreamRecordsNotFoundException`): no commit past it, so the source was still while it was reconciled.

This module runs in two places: inside the member account's VPC (`handler`, the replicator function that
live_cutover.py creates per execution; it imports nothing but the standard library and botocore, which the Lambda
runtime has), and in the workflow's steps, which only invoke that function. The function reads and writes only the
hosts its environment names (`NotItsCluster` otherwise), set by the workflow when it makes the function, and writes
only clusters under the names derived for its execution (`WRITABLE`).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import time
from urllib.parse import urlencode

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ConnectionError as ConnectionFailed
from botocore.exceptions import HTTPClientError
from botocore.httpsession import URLLib3Session

MODELS = {"pg": "/propertygraph/stream", "rdf": "/sparql/stream"}
PAGE = 1000  # records a stream read asks for
MAX_PAGE = 100_000  # the most one read may ask for (the API's limit)
REQUEST_RECORDS = 1000  # records one write request carries: far below Neptune's 150 MB request limit for any value Gremlin takes
HELD_BYTES = 200 * 1024 * 1024  # a transaction's records held to apply it whole (as the stream sends them): inside the function's 1 GB
RECONCILE_BATCH = 200  # vertices read in one query when the copy is reconciled with the source
CLOCK_SKEW_MS = 60_000  # between two clusters' commit timestamps (each its writer's clock): a wide margin
NEPTUNE_PORT = 8182
GRAPHSON_3 = "application/vnd.gremlin-v3.0+json"


class DataPlaneError(Exception):
    """Neptune answered an error (its `code`), or could not be reached."""

    def __init__(self, code: str, message: str, status: int = 0):
        super().__init__(f"{code}: {message}")
        self.code, self.status = code, status


class UnsupportedChange(Exception):
    """A stream record this replicator cannot apply exactly: replication stops rather than diverge."""


class StreamExpired(Exception):
    """The records after the position are gone (older than neptune_streams_expiry_days): the copy cannot be completed."""


class NotReconciled(Exception):
    """A vertex of the copy still differs from the source's after it was rewritten from it: no swap."""


class NotItsCluster(Exception):
    """An endpoint outside the hosts fixed in the function's configuration when it was made for its execution."""


class Neptune:
    """One cluster's HTTP endpoint, SigV4-signed (service `neptune-db`) when it uses IAM database authentication."""

    def __init__(self, endpoint: str, region: str, iam_auth: bool, port: int = NEPTUNE_PORT, timeout: float = 30):
        self.base, self.region, self.iam_auth = f"https://{endpoint}:{port}", region, iam_auth
        self.http = URLLib3Session(timeout=timeout)
        self.credentials = botocore.session.get_session().get_credentials() if iam_auth else None

    def call(self, method: str, path: str, params: dict | None = None, body: bytes | None = None, content_type: str | None = None,
             accept: str | None = None) -> dict:
        url = self.base + path + (f"?{urlencode(params)}" if params else "")
        headers = {**({"Content-Type": content_type} if content_type else {}), **({"Accept": accept} if accept else {})}
        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        if self.iam_auth:
            SigV4Auth(self.credentials.get_frozen_credentials(), "neptune-db", self.region).add_auth(request)
        try:
            response = self.http.send(request.prepare())
        except (HTTPClientError, ConnectionFailed) as error:  # a refused or timed-out connection too
            raise DataPlaneError("Unreachable", f"{self.base}: {error}") from error
        try:
            payload = json.loads(response.content or b"{}")
        except ValueError:
            payload = {"code": "MalformedResponse", "detailedMessage": response.content[:200].decode(errors="replace")}
        if response.status_code >= 400:
            raise DataPlaneError(payload.get("code", str(response.status_code)), payload.get("detailedMessage", ""), response.status_code)
        return payload

    def stream(self, model: str, **params) -> dict | None:
        """One page of the model's stream, or None where there is nothing at or after the position."""
        try:
            return self.call("GET", MODELS[model], {k: v for k, v in params.items() if v is not None})
        except DataPlaneError as error:
            if error.code == "StreamRecordsNotFoundException":
                return None
            if error.code == "ExpiredStreamException":
                raise StreamExpired(f"{self.base} {MODELS[model]}: {error}") from error
            raise

    def after(self, model: str, position: dict | None, limit: int = 1000) -> dict | None:
        """The records after a position (None: from the oldest the stream still holds), or None when there are none."""
        if position is None:
            return self.stream(model, iteratorType="TRIM_HORIZON", limit=limit)
        return self.stream(model, iteratorType="AFTER_SEQUENCE_NUMBER", commitNum=position["commitNum"], opNum=position["opNum"], limit=limit)

    def latest(self, model: str) -> dict | None:
        """The model's latest event id and its commit time, or None for an empty stream."""
        page = self.stream(model, iteratorType="LATEST", limit=1)
        return None if page is None else {**page["lastEventId"], "timestamp": page["lastTrxTimestamp"]}

    def gremlin(self, script: str) -> list:
        """Results in GraphSON 3, asked for: its values carry their types (access-graph-gremlin-rest.html)."""
        data = self.call("POST", "/gremlin", body=json.dumps({"gremlin": script}).encode(), content_type="application/json",
                         accept=GRAPHSON_3)["result"]["data"]
        return data.get("@value", []) if isinstance(data, dict) else data  # GraphSON 3's typed list, or a plain one

    def opencypher(self, query: str, parameters: dict) -> list:
        """https://docs.aws.amazon.com/neptune/latest/userguide/access-graph-opencypher-queries.html (parameters:
        access-graph-opencypher-parameterized-queries.html)."""
        body = urlencode({"query": query, "parameters": json.dumps(parameters)}).encode()
        return self.call("POST", "/openCypher", body=body, content_type="application/x-www-form-urlencoded").get("results", [])

    def apply(self, model: str, records: list[dict]) -> None:
        """Records of whole transactions, in order, in requests of at most REQUEST_RECORDS (each record is idempotent,
        so a transaction may take several; Neptune refuses a request of 150 MB or more)."""
        if model == "pg":
            chunk, merged = [], with_vertex_labels(records)
            about = records_about_vertices(merged)
            for at, record in enumerate(merged):
                if not (record["op"] == "REMOVE" and record["data"]["type"] == "vl"):
                    chunk.append(record)
                    if len(chunk) == REQUEST_RECORDS:
                        self._run(chunk)
                        chunk = []
                    continue
                self._run(chunk)
                chunk = []
                self._remove_labels(record, what_became_of(merged, at, about))
            self._run(chunk)
        else:
            for start in range(0, len(records), REQUEST_RECORDS):
                self.call("POST", "/sparql", body=urlencode({"update": ";\n".join(sparql(r) for r in records[start:start + REQUEST_RECORDS])}).encode(),
                          content_type="application/x-www-form-urlencoded")


    def _run(self, records: list[dict]) -> None:
        if not records:
            return
        # Neptune runs a script's earlier statements only when they end in iterate() (Gremlin's script execution)
        self.gremlin(";\n".join(gremlin(r) + ".iterate()" for r in records))
        # A `vl` ADD of a vertex that lived already (the addV above found it) adds the label: openCypher, one query per
        # set of labels. Nothing between the two reads labels: the chunk ends before any `vl` REMOVE.
        adds: dict[tuple, list] = {}
        for record in records:
            if record["data"]["type"] == "vl" and record["op"] == "ADD":
                adds.setdefault(tuple(record["labels"]), []).append(record["data"]["id"])
        for labels, ids in adds.items():
            self.opencypher(f"UNWIND $ids AS vid MATCH (n) WHERE id(n) = vid SET n{cypher_labels(labels)}", {"ids": ids})

    def _remove_labels(self, record: dict, became: str | None) -> None:
        """A commit's `vl` REMOVEs of one vertex. Neptune never leaves a vertex without a label (removing the last one is
        an error: User Guide, openCypher data model), so on the source they were either some of its labels (openCypher
        `REMOVE n:Label`) or all of them, its drop, whose commit also removes each property and edge it had.

        On the copy: labels left after the removal, it was a label removal: those labels go. None left: the copy may be
        ahead of this commit (a retried run, or the records between the position and the snapshot), showing labels,
        properties and edges that later records gave the vertex, and a drop would lose what no later record puts back.
        So it is dropped only when the commit is a drop (`became` "dropped": it removes the vertex's properties or
        edges too, applied by now), or when the copy's vertex holds nothing a drop could lose and the batch does not
        show it living on after the commit. Else nothing is done: the later records, replayed in turn, bring the copy
        where the source is."""
        vid = record["data"]["id"]
        element = _string(vid)
        found = self.gremlin(f"g.V({element}).label()")
        if not found:
            return
        if set(str(found[0]).split("::")) - set(record["labels"]):
            self.opencypher(f"MATCH (n) WHERE id(n) = $vid REMOVE n{cypher_labels(record['labels'])}", {"vid": vid})
        elif became == "dropped" or (became != "lives" and not (
                self._count(f"g.V({element}).properties().count()") or self._count(f"g.V({element}).bothE().count()"))):
            self.gremlin(f"g.V({element}).drop()")

    def _count(self, script: str) -> int:
        found = self.gremlin(script)
        value = found[0] if found else 0
        return int(value["@value"] if isinstance(value, dict) else value)  # GraphSON 3 types a count (g:Int64)


def _string(text) -> str:
    return _literal({"value": text, "dataType": "String"})


def _literal(value: dict) -> str:
    kind, raw = value.get("dataType", "String"), value.get("value")
    if kind == "String":
        return "'" + str(raw).replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"
    if kind == "Boolean":
        return "true" if raw in (True, "true") else "false"
    if kind in ("Short", "Byte"):  # Gremlin's script literals have no such integer: it would arrive an Int
        raise UnsupportedChange(f"a {kind} property value of {raw}: Gremlin cannot write one with its type")
    if kind in ("Integer", "Int"):
        return str(int(raw))
    if kind == "Long":
        return f"{int(raw)}L"
    if kind in ("Double", "Float") and not math.isfinite(float(raw)):
        raise UnsupportedChange(f"a {kind} property value of {raw}: Gremlin has no literal for it")
    if kind == "Double":
        return f"{float(raw)!r}d"
    if kind == "Float":
        return f"{float(raw)!r}f"
    if kind == "Date":
        return f"datetime('{raw}')"
    raise UnsupportedChange(f"property value of type {kind}")


def records_about_vertices(records: list[dict]) -> dict[str, list[int]]:
    """Each vertex's records, by index: its labels and properties, and the edges it ends."""
    about: dict[str, list[int]] = {}
    for at, record in enumerate(records):
        data = record["data"]
        ends = [data["id"]] if data["type"] in ("vl", "vp") else {data["from"], data["to"]} if data["type"] == "e" else []
        for vid in ends:
            about.setdefault(vid, []).append(at)
    return about


def what_became_of(records: list[dict], at: int, about: dict[str, list[int]]) -> str | None:
    """What the batch shows of the vertex whose labels the commit of `records[at]` removes: "dropped" (the commit
    removes its properties or edges too: a drop), "lives" (a later record changes a property or an edge of it before
    any makes it again: the commit removed some of its labels), "made again" (the next record about it gives it a
    label), or None. `about` is records_about_vertices(records)."""
    removal = records[at]
    vid, commit = removal["data"]["id"], removal["eventId"]["commitNum"]
    mine = [records[n] for n in about.get(vid, [])]
    if any(r["op"] == "REMOVE" and r["eventId"]["commitNum"] == commit and r["data"]["type"] != "vl" for r in mine):
        return "dropped"
    later = next((r for r in mine if r["eventId"]["commitNum"] > commit), None)
    if later is None:
        return None
    return "made again" if later["data"]["type"] == "vl" and later["op"] == "ADD" else "lives"


# GraphSON 3.0 scalar types (Neptune's Gremlin results over HTTP) as the stream's dataType names.
# https://tinkerpop.apache.org/docs/current/dev/io/#graphson-3d0
GRAPHSON_SCALARS = {"g:Int32": "Int", "g:Int64": "Long", "g:Float": "Float", "g:Double": "Double", "gx:Int16": "Short", "gx:Byte": "Byte"}


def from_graphson(value):
    """A Gremlin result as Python: lists and maps as such, a typed number or date as the stream writes a value
    (`{"value", "dataType"}`); a JSON string or boolean is itself."""
    if isinstance(value, list):
        return [from_graphson(v) for v in value]
    if not isinstance(value, dict) or "@type" not in value:
        return value
    kind, inner = value["@type"], value.get("@value")
    if kind in ("g:List", "g:Set"):
        return [from_graphson(v) for v in inner]
    if kind == "g:Map":
        return {from_graphson(inner[n]): from_graphson(inner[n + 1]) for n in range(0, len(inner), 2)}
    if kind in GRAPHSON_SCALARS:
        return {"value": inner, "dataType": GRAPHSON_SCALARS[kind]}
    if kind == "g:Date":
        moment = datetime.datetime.fromtimestamp(inner / 1000, datetime.timezone.utc)
        return {"value": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"), "dataType": "Date"}
    raise UnsupportedChange(f"a property value of GraphSON type {kind}")


def _typed(value) -> dict:
    """A property value as the stream writes one. A number without a GraphSON type cannot say whether it is an Int or
    a Long, a Double or a Float or a Date: refused rather than guessed (the queries ask for GraphSON 3)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, bool):
        return {"value": value, "dataType": "Boolean"}
    if isinstance(value, str):
        return {"value": value, "dataType": "String"}
    raise UnsupportedChange(f"a property value without its type ({value!r}): the cluster did not answer in GraphSON 3")


# A vertex as a whole: its labels, each property value, and each edge it ends (label, ends, properties).
VERTEX_STATE = (".project('id','label','properties','edges').by(id).by(label)"
                ".by(__.properties().project('key','value').by(key).by(value).fold())"
                ".by(__.bothE().project('id','label','from','to','properties').by(id).by(label).by(__.outV().id()).by(__.inV().id())"
                ".by(__.properties().project('key','value').by(key).by(value).fold()).fold())")


def vertex_states(cluster: Neptune, ids: list[str]) -> dict[str, dict]:
    """The vertices that exist among `ids`, each as a whole, read in one query (one consistent view of the graph)."""
    states = {}
    for vertex in from_graphson(cluster.gremlin(f"g.V({', '.join(_string(i) for i in ids)}){VERTEX_STATE}")):
        states[vertex["id"]] = {
            "labels": sorted(str(vertex["label"]).split("::")),
            "properties": sorted(json.dumps([p["key"], _typed(p["value"])], sort_keys=True) for p in vertex["properties"]),
            "edges": {e["id"]: {"label": e["label"], "from": e["from"], "to": e["to"],
                                "properties": {p["key"]: _typed(p["value"]) for p in e["properties"]}} for e in vertex["edges"]}}
    return states


def vertices_to_reconcile(source: Neptune, overlaps: list[dict]) -> set[str]:
    """The vertices whose labels a property-graph record within the ranges removes: the records `_remove_labels` may
    have misread there, replayed over a copy that already held later changes. A range ends at its `to` position, and
    at its `until_ms` commit time when it has one."""
    found = set()
    for span in overlaps:
        found |= _label_removals(source, span["from"], position_key(span["to"]), span.get("until_ms", math.inf))
    return found


def _label_removals(source: Neptune, read: dict | None, end: tuple, until_ms: float) -> set[str]:
    found = set()
    while position_key(read) < end:
        page = source.after("pg", read, MAX_PAGE)
        if page is None or not page["records"]:
            break
        for record in page["records"]:
            if position_key(position_of(record["eventId"])) > end or record["commitTimestamp"] > until_ms:
                return found
            if record["op"] == "REMOVE" and record["data"]["type"] == "vl":
                found.add(record["data"]["id"])
        read = position_of(page["records"][-1]["eventId"])
    return found


def _state_records(vid: str, want: dict, have: dict | None) -> tuple[list[dict], list[dict]]:
    """Stream-like records that bring a copy's vertex from `have` to `want`: the vertex and its properties, then its
    edges (made once every vertex is)."""
    def record(op, data, **extra):
        return {"op": op, "data": data, "eventId": {"commitNum": 0, "opNum": 0}, **extra}
    have = have or {"labels": [], "properties": [], "edges": {}}
    vertex = [record("ADD", {"id": vid, "type": "vl", "value": {"value": label, "dataType": "String"}}, labels=[label])
              for label in want["labels"] if label not in have["labels"]]
    wanted, held = set(want["properties"]), set(have["properties"])
    for item, op in [(i, "REMOVE") for i in sorted(held - wanted)] + [(i, "ADD") for i in sorted(wanted - held)]:
        key, value = json.loads(item)
        vertex.append(record(op, {"id": vid, "type": "vp", "key": key, "value": value}))
    edges = []
    for eid, edge in have["edges"].items():
        kept = want["edges"].get(eid)
        if kept is None or (kept["label"], kept["from"], kept["to"]) != (edge["label"], edge["from"], edge["to"]):
            edges.append(record("REMOVE", {"id": eid, "type": "e", "value": {"value": edge["label"], "dataType": "String"},
                                           "from": edge["from"], "to": edge["to"]}))
    for eid, edge in want["edges"].items():
        held_edge = have["edges"].get(eid)
        if held_edge is None or (held_edge["label"], held_edge["from"], held_edge["to"]) != (edge["label"], edge["from"], edge["to"]):
            held_edge = None
            edges.append(record("ADD", {"id": eid, "type": "e", "value": {"value": edge["label"], "dataType": "String"},
                                        "from": edge["from"], "to": edge["to"]}))
        held_properties = (held_edge or {}).get("properties", {})
        for key, value in held_properties.items():
            if want["edges"][eid]["properties"].get(key) != value:
                edges.append(record("REMOVE", {"id": eid, "type": "ep", "key": key, "value": value}))
        for key, value in edge["properties"].items():
            if held_properties.get(key) != value:
                edges.append(record("ADD", {"id": eid, "type": "ep", "key": key, "value": value}))
    return vertex, edges


def reconcile(source: Neptune, target: Neptune, overlaps: list[dict], seconds: float | None = None, after: str | None = None) -> dict:
    """Each vertex a record within the overlapping ranges removed labels of is read whole on both clusters, and the
    copy's rewritten where it differs; read again after, a difference left is NotReconciled (no swap).

    With the source still (at the drain, before the proof that shows it was), that ends the overlaps. With writes
    flowing (before the cutover question, `seconds` at a time, resuming after the vertex id `after`), each vertex is
    set to the source's state at some commit between the two latest positions read around its query: the records
    from the applied position up to `source_latest`, read after, are then replayed over vertices that may be ahead
    of them, a new and smaller overlap."""
    deadline = None if seconds is None else time.monotonic() + seconds
    vertices = [vid for vid in sorted(vertices_to_reconcile(source, overlaps)) if after is None or vid > after]
    changed, checked = 0, 0
    for start in range(0, len(vertices), RECONCILE_BATCH):
        batch = vertices[start:start + RECONCILE_BATCH]
        changed += _reconcile_batch(source, target, batch)
        checked += len(batch)
        if deadline is not None and time.monotonic() >= deadline and start + RECONCILE_BATCH < len(vertices):
            return {"done": False, "after": batch[-1], "reconciled": checked, "changed": changed,
                    "target_position": {"pg": position_of(target.latest("pg"))}}
    return {"done": True, "after": None, "reconciled": checked, "changed": changed, "source_latest": position_of(source.latest("pg")),
            "target_position": {"pg": position_of(target.latest("pg"))}}


def _reconcile_batch(source: Neptune, target: Neptune, batch: list[str]) -> int:
    want, have = vertex_states(source, batch), vertex_states(target, batch)
    wrong = [vid for vid in batch if want.get(vid) != have.get(vid)]
    if not wrong:
        return 0
    gone = [vid for vid in wrong if vid not in want]
    if gone:
        target.gremlin(f"g.V({', '.join(_string(vid) for vid in gone)}).drop()")
    made = [_state_records(vid, want[vid], have.get(vid)) for vid in wrong if vid in want]
    target.apply("pg", [r for vertex, _ in made for r in vertex] + [r for _, edges in made for r in edges])
    for vid in wrong:
        extra = [label for label in (have.get(vid) or {}).get("labels", []) if vid in want and label not in want[vid]["labels"]]
        if extra:
            target.opencypher(f"MATCH (n) WHERE id(n) = $vid REMOVE n{cypher_labels(extra)}", {"vid": vid})
    again = vertex_states(target, wrong)
    still = [vid for vid in wrong if again.get(vid) != want.get(vid)]
    if still:
        raise NotReconciled(f"{len(still)} vertices of the copy still differ from the source's after being rewritten from it "
                            f"(first: {still[0]}): an edge to a vertex the copy lacks, or a change the copy cannot take")
    return len(wrong)


def cypher_labels(labels) -> str:
    """`:a:b`, each label a quoted name (a backtick inside one doubled): openCypher's syntax for labels of any text."""
    return "".join(":`" + label.replace("`", "``") + "`" for label in labels)


def with_vertex_labels(records: list[dict]) -> list[dict]:
    """Consecutive `vl` records of one vertex, one op and one commit as one record carrying all their labels: a vertex
    is made with its labels (`a::b`) or given them in one query, and dropped with all of them. Only consecutive ones: a commit may drop and make the same vertex again, and each is its own."""
    merged = []
    for record in records:
        data, last = record["data"], merged[-1] if merged else None
        if data["type"] == "vl":
            if "::" in data["value"]["value"]:
                raise UnsupportedChange(f"label {data['value']['value']!r} of vertex {data['id']}: Gremlin reads `::` as two labels")
            if (last is not None and last["op"] == record["op"] and last["data"]["type"] == "vl" and last["data"]["id"] == data["id"]
                    and last["eventId"]["commitNum"] == record["eventId"]["commitNum"]):
                last["labels"].append(data["value"]["value"])
                continue
            merged.append({**record, "labels": [data["value"]["value"]]})
        else:
            merged.append(record)
    return merged


def gremlin(record: dict) -> str:
    """One property-graph record as an idempotent Gremlin traversal (a `vl` REMOVE is `Neptune._remove_labels`'s)."""
    data, op = record["data"], record["op"]
    element, kind = _string(data["id"]), data["type"]
    if kind == "vl":
        labels = _string("::".join(record.get("labels") or [data["value"]["value"]]))
        return f"g.V({element}).fold().coalesce(unfold(), addV({labels}).property(T.id, {element}))"
    if kind == "vp":
        key, value = _string(data["key"]), _literal(data["value"])
        if op == "ADD":
            return f"g.V({element}).property(set, {key}, {value})"
        return f"g.V({element}).properties({key}).hasValue({value}).drop()"
    if kind == "e":
        if op == "ADD":
            label, source, target = _literal(data["value"]), _string(data["from"]), _string(data["to"])
            # Only between two vertices that exist: addE() with an end that finds nothing is an error in TinkerPop,
            # and a vertex missing here is one a later record of the log drops.
            return (f"g.E({element}).fold().coalesce(unfold(), __.V({source}).where(__.V({target})).addE({label})"
                    f".to(__.V({target})).property(T.id, {element}))")
        return f"g.E({element}).drop()"
    if kind == "ep":
        key, value = _string(data["key"]), _literal(data["value"])
        if op == "ADD":
            return f"g.E({element}).property({key}, {value})"
        return f"g.E({element}).properties({key}).hasValue({value}).drop()"
    raise UnsupportedChange(f"property-graph record of type {kind}")


# N-Quads terms (https://www.w3.org/TR/n-quads/#sec-grammar): an IRI, a blank node, a literal with its language or type.
NQUADS_TERM = re.compile(r'\s*(<[^<>"{}|^`\\\x00-\x20]*>|_:[^\s<>"]+|"(?:[^"\\\n\r]|\\.)*"(?:@[A-Za-z]+(?:-[A-Za-z0-9]+)*|\^\^<[^<>"{}|^`\\\x00-\x20]*>)?)')


def nquad_terms(statement: str) -> list[str]:
    """The three or four terms of one N-Quads statement (three: the default graph)."""
    terms, at = [], 0
    while (match := NQUADS_TERM.match(statement, at)) is not None:
        terms.append(match.group(1))
        at = match.end()
    if statement[at:].strip() != "." or len(terms) not in (3, 4):
        raise UnsupportedChange(f"not an N-Quads statement: {statement[:80]!r}")
    return terms


def sparql(record: dict) -> str:
    """One RDF record (an N-Quads statement) as a SPARQL 1.1 INSERT DATA or DELETE DATA."""
    terms = nquad_terms(record["data"]["stmt"])
    if any(term.startswith("_:") for term in terms):
        raise UnsupportedChange("an RDF blank node cannot be replicated exactly: INSERT DATA makes a new one each time and "
                                "DELETE DATA refuses them (SPARQL 1.1 Update, 3.1.1 and 3.1.2)")
    triple = " ".join(terms[:3]) + " ."
    body = f"GRAPH {terms[3]} {{ {triple} }}" if len(terms) == 4 else triple
    return f"{'INSERT' if record['op'] == 'ADD' else 'DELETE'} DATA {{ {body} }}"


def position_of(event: dict | None) -> dict | None:
    return None if event is None else {"commitNum": event["commitNum"], "opNum": event["opNum"]}


def position_key(position: dict | None) -> tuple:
    return (0, 0) if position is None else (position["commitNum"], position["opNum"])


def whole_transactions(records: list[dict]) -> list[dict]:
    """The records up to the last transaction's end among them: the rest wait for the records that complete it."""
    ends = [n for n, record in enumerate(records) if record.get("isLastOp")]
    return records[:ends[-1] + 1] if ends else []


def replicate(source: Neptune, target: Neptune, positions: dict, seconds: float, overlaps: list | None = None,
              target_position: dict | None = None) -> dict:
    """Apply the source's changes after `positions` (model -> applied event id, None: from the start of the stream)
    to the target for about `seconds`, shared between the models; the new positions, what was applied, and the lag to
    the source's latest. A response may end inside a transaction (`limit`, or the response's 10 MB cap): its records
    are held and the stream read on, past the budget if need be, until the transaction's last operation, then it is
    applied whole (one larger than HELD_BYTES is refused: the function could not hold it).

    `overlaps` are the ranges of the source's stream replayed over a copy that may already hold them (reconcile()
    settles their vertices), `target_position` where the target's own stream stood when the last run returned: a
    target that moved since was written by a run that never returned (a crash, a timeout), so from `positions` to
    the source's latest is replayed over what that run applied, and joins the overlaps; so does it when where the
    target stood is not known (None)."""
    overlaps = list(overlaps or [])
    target_latest = target.latest("pg")
    if target_position is None or position_of(target_latest) != target_position.get("pg"):
        # What that run changed on the target came from source records committed before the target's last commit.
        bound = {} if target_position is None or target_latest is None else {"until_ms": target_latest["timestamp"] + CLOCK_SKEW_MS}
        overlaps.append({"from": positions.get("pg"), "to": position_of(source.latest("pg")), **bound})
    positions, applied, started = dict(positions), dict.fromkeys(MODELS, 0), time.monotonic()
    for number, model in enumerate(MODELS):
        deadline = started + seconds * (number + 1) / len(MODELS) if number + 1 < len(MODELS) else started + seconds
        read, held, held_bytes = positions.get(model), [], 0
        while held or time.monotonic() < deadline:
            page = source.after(model, read, MAX_PAGE if held else PAGE)
            if page is None or not page["records"]:
                break
            held += page["records"]
            read = position_of(page["records"][-1]["eventId"])
            if not any(r.get("isLastOp") for r in page["records"]):
                held_bytes += sum(len(json.dumps(r)) for r in page["records"])  # only while holding: measuring costs
                if held_bytes > HELD_BYTES:
                    raise UnsupportedChange(f"a transaction of more than {HELD_BYTES // 2**20} MB of stream records: more than the "
                                            "replicator holds to apply it whole")
                continue
            records = whole_transactions(held)
            target.apply(model, records)
            held, held_bytes = held[len(records):], 0  # what is left is less than one response
            positions[model] = position_of(records[-1]["eventId"])
            applied[model] += len(records)
    return {"positions": positions, "applied": applied, "overlaps": overlaps,
            "target_position": {"pg": position_of(target.latest("pg"))}, **lag(source, positions)}


def lag(source: Neptune, positions: dict) -> dict:
    """How far the copy is behind: records not yet applied (counted in one read: at least that many when the read stops
    short of the latest, at `limit` or the 10 MB cap) and the age of the oldest of them, per model."""
    behind, seconds, latest, counted = {}, 0.0, {}, True
    for model in MODELS:
        latest[model] = source.latest(model)
        page = source.after(model, positions.get(model), MAX_PAGE)
        behind[model] = len(page["records"]) if page else 0
        if page and page["records"]:
            seconds = max(seconds, time.time() - page["records"][0]["commitTimestamp"] / 1000)
            counted = counted and position_key(position_of(page["records"][-1]["eventId"])) >= position_key(position_of(latest[model]))
    return {"latest": {m: position_of(e) for m, e in latest.items()}, "lag_records": sum(behind.values()), "lag_counted": counted,
            "lag_seconds": round(seconds, 3), "caught_up": all(behind[m] == 0 for m in MODELS)}


def proof(source: Neptune, positions: dict) -> dict:
    """Whether the copy has applied everything the source committed: nothing in its stream after the applied
    position, model by model (an expired stream is no proof: StreamExpired)."""
    past = {m: source.after(m, positions.get(m), 1) for m in MODELS}
    return {"source_latest": {m: position_of(source.latest(m)) for m in MODELS}, "applied": positions,
            "past_position": {m: position_of(p["records"][0]["eventId"]) for m, p in past.items() if p and p["records"]},
            "proven": all(p is None or not p["records"] for p in past.values())}


READ_HOSTS, WRITE_HOSTS = "NEPTUNE_GUARD_READ", "NEPTUNE_GUARD_WRITE"  # the function's environment, set when it is made
# Whatever its environment says, the function writes only clusters under the names the workflow derives for the
# execution it is named for (naming.py: `<base>-cmk-ng<token>`, `<base>-retired-ng<token>`; the function is
# `neptune-guard-replicator-<token>`). Its code is signed (replicator_package.py), but its environment is whoever made
# it: this keeps a replicator made with other settings off a customer's cluster.
WRITABLE = re.compile(r"\A[a-z0-9-]+-(?:cmk|retired)-ng(?P<token>[0-9a-f]{8})\.")


def _cluster(spec: dict, allowed: str, function_name: str) -> Neptune:
    """The cluster an event names, only if its host is one the function was made for: whoever may invoke it cannot
    aim it at another cluster its network reaches (the function's environment cannot be changed by that role)."""
    endpoint = spec["endpoint"]
    if endpoint not in os.environ.get(allowed, "").split(","):
        raise NotItsCluster(f"{endpoint} is not among the clusters this replicator may {'write' if allowed == WRITE_HOSTS else 'read'}")
    writable = WRITABLE.match(endpoint)
    if allowed == WRITE_HOSTS and (writable is None or writable["token"] != function_name.rsplit("-", 1)[-1]):
        raise NotItsCluster(f"{endpoint} is not a cluster the execution of {function_name} made or retired: never written")
    return Neptune(endpoint, spec["region"], bool(spec.get("iam_auth")), int(spec.get("port", NEPTUNE_PORT)))


def handler(event: dict, context) -> dict:
    """The replicator function's entry point, invoked by the workflow's steps with the member role:
    `{"action": "position"|"replicate"|"reconcile"|"prove", "source": {endpoint, region, iam_auth, port}, "target": {...},
    "positions": {...}, "seconds": N, "overlaps": [...], "target_position": {...}, "after": vertex id}`."""
    action = event.get("action")
    source = _cluster(event["source"], READ_HOSTS, context.function_name)
    if action == "position":
        return {"positions": {m: position_of(source.latest(m)) for m in MODELS}, "read_at": time.time()}
    if action == "replicate":
        seconds = min(float(event.get("seconds", 60)), max(1.0, context.get_remaining_time_in_millis() / 1000 - 30))
        return replicate(source, _cluster(event["target"], WRITE_HOSTS, context.function_name), event.get("positions") or {}, seconds,
                         event.get("overlaps"), event.get("target_position"))
    if action == "reconcile":
        seconds = event.get("seconds")
        return reconcile(source, _cluster(event["target"], WRITE_HOSTS, context.function_name), event.get("overlaps") or [],
                         None if seconds is None else float(seconds), event.get("after"))
    if action == "prove":
        return proof(source, event.get("positions") or {})
    raise ValueError(f"unknown replicator action {action!r}")
