"""Replication through Neptune Streams, on its own: a source cluster takes a mixed workload of both data models, its
position is read, it keeps changing, it is snapshotted (holding part of what came after the position), it keeps
changing, and the copy restored from the snapshot is replayed from the position. The copy must end equal to the
source whatever the interleaving, applying twice changes nothing, and what cannot be replayed exactly is refused.
The data plane is sandbox/aws/neptune_data.py (built from the Neptune reference), the replicator the real module."""

import json
import random
import time
from urllib.parse import urlencode

import pytest

from neptune_guard.remediate import replication
from sandbox.aws import neptune_data
from sandbox.demo import organization

ACCOUNT, REGION = "123456789012", "us-east-1"
GRAPHS = ("<urn:graph:a>", None)  # a named graph and the default graph


@pytest.fixture
def clusters(local_aws):
    """(source client, restore(snapshot) -> copy client, volume of a client's cluster)."""
    neptune = local_aws.client("neptune", region_name=REGION)
    organization.seed_region(local_aws, REGION, {"clusters": {"live": {"encryption": "none", "instances": {"live-1": "db.r6g.large"}, "streams": True}}}, ACCOUNT)
    source = neptune.describe_db_clusters(DBClusterIdentifier="live")["DBClusters"][0]

    def restore(snapshot_id: str, copy_id: str):
        copy = neptune.restore_db_cluster_from_snapshot(DBClusterIdentifier=copy_id, SnapshotIdentifier=snapshot_id, Engine="neptune",
                                                        DBClusterParameterGroupName=source["DBClusterParameterGroup"])["DBCluster"]
        neptune.create_db_instance(DBInstanceIdentifier=f"{copy_id}-1", DBClusterIdentifier=copy_id, Engine="neptune",
                                   DBInstanceClass="db.r6g.large")  # a cluster answers through an instance
        return replication.Neptune(copy["Endpoint"], REGION, False), copy["DbClusterResourceId"]

    def snapshot(snapshot_id: str) -> None:
        neptune.create_db_cluster_snapshot(DBClusterSnapshotIdentifier=snapshot_id, DBClusterIdentifier="live")

    return replication.Neptune(source["Endpoint"], REGION, False), source["DbClusterResourceId"], snapshot, restore


def gremlin(cluster, script: str) -> None:
    cluster.call("POST", "/gremlin", body=json.dumps({"gremlin": script}).encode(), content_type="application/json")


def sparql(cluster, update: str) -> None:
    cluster.call("POST", "/sparql", body=urlencode({"update": update}).encode(), content_type="application/x-www-form-urlencoded")


def cypher(cluster, query: str, **parameters) -> None:
    cluster.opencypher(query, parameters)


class Workload:
    """Random changes of every kind the stream records, each one transaction, on elements that exist."""

    def __init__(self, cluster, seed: int):
        self.cluster, self.random, self.n = cluster, random.Random(seed), 0
        self.vertices, self.edges, self.quads = set(), set(), set()
        self.label_changes = 0

    def _literal(self) -> str:
        return self.random.choice(['"plain"', '"two words } GRAPH { ."', '"quote \\" inside"@en', '"7"^^<http://www.w3.org/2001/XMLSchema#int>',
                                   f'"v{self.random.randrange(5)}"'])

    def step(self) -> None:
        self.n += 1
        r, n = self.random, self.n
        choice = r.randrange(14)
        vertices, edges = sorted(self.vertices), sorted(self.edges)
        if choice < 2 or not vertices:
            labels = r.choice(["Person", "Person::Employee", "Account::Frozen::Audited"])
            gremlin(self.cluster, f"g.addV('{labels}').property(T.id, 'v{n}').property('name', 'n{n}').property(set, 'tag', 't{n % 3}')")
            self.vertices.add(f"v{n}")
        elif choice == 2:
            gremlin(self.cluster, f"g.V('{r.choice(vertices)}').property(single, 'name', 'renamed {n}')")
        elif choice == 3:
            gremlin(self.cluster, f"g.V('{r.choice(vertices)}').property(set, 'tag', 't{n % 4}')")
        elif choice == 4:
            gremlin(self.cluster, f"g.V('{r.choice(vertices)}').properties('tag').hasValue('t{n % 4}').drop()")
        elif choice in (5, 6) and len(vertices) > 1:
            source, target = r.sample(vertices, 2)
            gremlin(self.cluster, f"g.V('{source}').addE('knows').to(__.V('{target}')).property(T.id, 'e{n}').property('since', {n})")
            self.edges.add(f"e{n}")
        elif choice == 7 and edges:
            gremlin(self.cluster, f"g.E('{r.choice(edges)}').property('since', {n}L)")
        elif choice == 8 and edges:
            edge = r.choice(edges)
            gremlin(self.cluster, f"g.E('{edge}').drop()")
            self.edges.discard(edge)
        elif choice == 9:
            vertex = r.choice(vertices)
            gremlin(self.cluster, f"g.V('{vertex}').drop()")
            self.vertices.discard(vertex)
            self.edges = {e for e in self.edges if e in neptune_data_edges(self.cluster)}
        elif choice == 12:  # a label added to a vertex that lives already (openCypher: Gremlin has no such step)
            label = r.choice(["Audited", "VIP", "Odd ``one``"])
            cypher(self.cluster, f"MATCH (n) WHERE id(n) = $vid SET n:`{label}`", vid=r.choice(vertices))
            self.label_changes += 1
        elif choice == 13:  # a label removed from a vertex that keeps another
            vertex = r.choice(vertices)
            labels = sorted(neptune_data_vertices(self.cluster)[vertex]["labels"])
            if len(labels) > 1:
                cypher(self.cluster, f"MATCH (n) WHERE id(n) = $vid REMOVE n:`{r.choice(labels).replace('`', '``')}`", vid=vertex)
                self.label_changes += 1
        elif choice == 10 or not self.quads:
            graph = r.choice(GRAPHS)
            triple = f"<urn:s:{r.randrange(8)}> <urn:p:{r.randrange(3)}> {self._literal() if r.random() < 0.6 else f'<urn:o:{n}>'} ."
            sparql(self.cluster, f"INSERT DATA {{ GRAPH {graph} {{ {triple} }} }}" if graph else f"INSERT DATA {{ {triple} }}")
            self.quads.add((graph, triple))
        else:
            graph, triple = r.choice(sorted(self.quads, key=repr))
            sparql(self.cluster, f"DELETE DATA {{ GRAPH {graph} {{ {triple} }} }}" if graph else f"DELETE DATA {{ {triple} }}")
            self.quads.discard((graph, triple))

    def run(self, count: int) -> "Workload":
        for _ in range(count):
            self.step()
        return self


def neptune_data_edges(cluster) -> set:
    return set(_volume_of(cluster).edges)


def neptune_data_vertices(cluster) -> dict:
    return _volume_of(cluster).vertices


def _volume_of(cluster):
    found = neptune_data.resolve(cluster.base.split("//")[1].rsplit(":", 1)[0])
    return neptune_data.volume(found[3].db_cluster_resource_id)


def contents(resource_id: str) -> tuple:
    volume = neptune_data.volume(resource_id)
    with volume.lock:
        return (json.dumps(volume.vertices, default=lambda values: sorted(values, key=repr), sort_keys=True), json.dumps(volume.edges, sort_keys=True), sorted(volume.quads))


def replicate_until_caught_up(source, target, positions: dict) -> dict:
    for _ in range(50):
        result = replication.replicate(source, target, positions, 30)
        positions = result["positions"]
        if result["caught_up"]:
            return result
    raise AssertionError("replication never caught up")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_copy_replayed_from_the_position_read_before_its_snapshot_ends_equal_to_the_source(clusters, monkeypatch, seed):
    monkeypatch.setattr(replication, "PAGE", 7)  # pages end inside transactions: only whole ones may be applied
    source, source_id, snapshot, restore = clusters
    workload = Workload(source, seed).run(40)
    position = {m: replication.position_of(source.latest(m)) for m in replication.MODELS}
    workload.run(30)
    snapshot("snap")  # holds part of what came after the position
    workload.run(60)
    target, target_id = restore("snap", "copy")
    result = replicate_until_caught_up(source, target, position)
    assert contents(target_id) == contents(source_id)
    assert replication.proof(source, result["positions"])["proven"]
    replicate_until_caught_up(source, target, position)  # applied twice: nothing changes
    assert contents(target_id) == contents(source_id)
    multi = [v for v in neptune_data.volume(source_id).vertices.values() if len(v["labels"]) > 1]
    assert multi, "the workload made no vertex with several labels"
    assert workload.label_changes, "the workload changed no label of a live vertex"


def test_an_edge_to_a_vertex_the_log_drops_later_is_skipped_not_an_error(clusters):
    source, source_id, snapshot, restore = clusters
    gremlin(source, "g.addV('A').property(T.id, 'a').iterate(); g.addV('B').property(T.id, 'b')")
    position = {m: replication.position_of(source.latest(m)) for m in replication.MODELS}
    gremlin(source, "g.V('a').addE('to').to(__.V('b')).property(T.id, 'ab')")
    gremlin(source, "g.V('b').drop()")
    snapshot("after-drop")  # the copy starts without b: replaying the edge finds no target
    target, target_id = restore("after-drop", "copy")
    replicate_until_caught_up(source, target, position)
    assert contents(target_id) == contents(source_id)


def test_a_proof_fails_while_the_source_holds_a_commit_past_the_applied_position(clusters):
    source, _, snapshot, restore = clusters
    gremlin(source, "g.addV('A').property(T.id, 'a')")
    snapshot("base")
    target, _ = restore("base", "copy")
    result = replicate_until_caught_up(source, target, {m: None for m in replication.MODELS})
    assert replication.proof(source, result["positions"])["proven"]
    sparql(source, "INSERT DATA { <urn:late> <urn:p> <urn:o> }")
    late = replication.proof(source, result["positions"])
    assert not late["proven"] and "rdf" in late["past_position"]


def test_a_blank_node_is_refused_rather_than_replayed_as_a_new_node(clusters):
    source, _, snapshot, restore = clusters
    snapshot("empty")
    target, target_id = restore("empty", "copy")
    sparql(source, "INSERT DATA { <urn:s> <urn:p> _:anonymous }")
    with pytest.raises(replication.UnsupportedChange, match="blank node"):
        replication.replicate(source, target, {m: None for m in replication.MODELS}, 30)
    assert contents(target_id)[2] == []


def test_records_expired_past_the_position_stop_replication(clusters, monkeypatch):
    source, _, snapshot, restore = clusters
    gremlin(source, "g.addV('A').property(T.id, 'a')")
    position = {m: replication.position_of(source.latest(m)) for m in replication.MODELS}
    gremlin(source, "g.addV('A').property(T.id, 'b')")
    snapshot("s")
    target, _ = restore("s", "copy")
    eight_days_on = time.time() + 8 * 86400  # the default neptune_streams_expiry_days is 7
    monkeypatch.setattr(neptune_data.time, "time", lambda: eight_days_on)
    with pytest.raises(replication.StreamExpired):
        replication.replicate(source, target, position, 30)


def test_a_vertex_dropped_and_made_again_twice_in_one_commit_is_made_again(clusters):
    source, source_id, snapshot, restore = clusters
    snapshot("empty")
    target, target_id = restore("empty", "copy")
    gremlin(source, "g.addV('Person').property(T.id, 'x').property('n', 1)")
    gremlin(source, "g.V('x').drop().iterate(); g.addV('Person').property(T.id, 'x').property('n', 1).iterate(); "
                    "g.V('x').drop().iterate(); g.addV('Person').property(T.id, 'x').property('n', 2)")
    replicate_until_caught_up(source, target, {m: None for m in replication.MODELS})
    assert contents(target_id) == contents(source_id)
    assert neptune_data.volume(target_id).vertices["x"]["props"]["n"] == {(2, "Integer")}


def test_a_label_changed_on_a_vertex_that_lives_on_is_replayed_as_that_change_not_as_its_drop_or_making(clusters):
    """openCypher's `SET n:Label` and `REMOVE n:Label` record a `vl` ADD or REMOVE for a vertex that lives on: the label
    is added or removed (a drop would delete the vertex with its properties and edges; a making would do nothing)."""
    source, source_id, snapshot, restore = clusters
    gremlin(source, "g.addV('Person::Temp').property(T.id, 'x').property('n', 1)")
    snapshot("s")
    target, target_id = restore("s", "copy")

    def removal(*labels):
        return [{"op": "REMOVE", "eventId": {"commitNum": 9, "opNum": n}, "commitTimestamp": 0,
                 "data": {"id": "x", "type": "vl", "key": "label", "value": {"value": label, "dataType": "String"}}}
                for n, label in enumerate(labels, start=1)]

    target.apply("pg", removal("Temp"))  # labels left: a label removal, not a drop
    assert neptune_data.volume(target_id).vertices["x"] == {"labels": {"Person"}, "props": {"n": {(1, "Integer")}}}
    cypher(source, "MATCH (n) WHERE id(n) = $vid SET n:Manager:`Odd ``label```", vid="x")
    cypher(source, "MATCH (n) WHERE id(n) = $vid REMOVE n:Temp", vid="x")
    replicate_until_caught_up(source, target, {m: None for m in replication.MODELS})
    assert neptune_data.volume(target_id).vertices["x"]["labels"] == {"Person", "Manager", "Odd `label`"}
    assert contents(target_id) == contents(source_id)
    gremlin(source, "g.V('x').drop()")  # every label, with its property: the vertex's drop
    replicate_until_caught_up(source, target, {m: None for m in replication.MODELS})
    assert "x" not in neptune_data.volume(target_id).vertices and contents(target_id) == contents(source_id)


def test_the_local_neptune_keeps_a_label_on_every_node_and_labels_with_double_colons_are_refused(clusters):
    """Removing every label of a node is an error in Neptune (openCypher data model), and rolls the query back; a label
    holding `::` (openCypher can write one) would be read as two by Gremlin, so the replicator refuses it."""
    source, source_id, snapshot, restore = clusters
    gremlin(source, "g.addV('A').property(T.id, 'x')")
    with pytest.raises(replication.DataPlaneError, match="ConstraintViolation"):
        cypher(source, "MATCH (n) WHERE id(n) = $vid REMOVE n:A", vid="x")
    assert neptune_data.volume(source_id).vertices["x"]["labels"] == {"A"}
    snapshot("s")
    target, _ = restore("s", "copy")
    position = {m: replication.position_of(source.latest(m)) for m in replication.MODELS}
    cypher(source, "MATCH (n) WHERE id(n) = $vid SET n:`x::y`", vid="x")
    with pytest.raises(replication.UnsupportedChange, match="::"):
        replication.replicate(source, target, position, 30)


@pytest.mark.parametrize("snapshot_first", [False, True])
def test_a_label_removal_the_copy_sees_as_every_label_is_not_taken_for_a_drop(clusters, snapshot_first):
    """`x` loses label A, gets it back and loses B. The copy is ahead when the first removal is replayed (it was
    snapshotted after the three, or a retried run replays them): it has only A then. A drop there would take the
    property set before the position, which no later record puts back."""
    source, source_id, snapshot, restore = clusters
    gremlin(source, "g.addV('A::B').property(T.id, 'x').property('kept', 1)")
    position = {m: replication.position_of(source.latest(m)) for m in replication.MODELS}
    cypher(source, "MATCH (n) WHERE id(n) = $vid REMOVE n:A", vid="x")
    cypher(source, "MATCH (n) WHERE id(n) = $vid SET n:A", vid="x")
    if snapshot_first:
        snapshot("s")
    cypher(source, "MATCH (n) WHERE id(n) = $vid REMOVE n:A", vid="x")
    cypher(source, "MATCH (n) WHERE id(n) = $vid SET n:A", vid="x")
    cypher(source, "MATCH (n) WHERE id(n) = $vid REMOVE n:B", vid="x")
    if not snapshot_first:
        snapshot("s")
    target, target_id = restore("s", "copy")
    replicate_until_caught_up(source, target, position)
    replicate_until_caught_up(source, target, position)  # a retried run replays them over the copy that holds them
    assert neptune_data.volume(target_id).vertices["x"] == {"labels": {"A"}, "props": {"kept": {(1, "Integer")}}}
    assert contents(target_id) == contents(source_id)


@pytest.mark.parametrize("snapshot_first", [False, True])
def test_a_label_removal_over_a_copy_left_bare_by_an_earlier_record_keeps_the_vertex(clusters, snapshot_first):
    """`v` loses its property, then label a, gets the property back, then a, then loses x (review finding). Replayed
    over a copy that holds the end state, the property's removal leaves the copy's vertex bare when the label
    removal comes: the next record about it sets a property, so it lived on the source, and no drop is made."""
    source, source_id, snapshot, restore = clusters
    gremlin(source, "g.addV('a::x').property(T.id, 'v').property('p', 1)")
    position = {m: replication.position_of(source.latest(m)) for m in replication.MODELS}
    if snapshot_first:
        snapshot("s")
    gremlin(source, "g.V('v').properties('p').drop()")
    cypher(source, "MATCH (n) WHERE id(n) = $vid REMOVE n:a", vid="v")
    gremlin(source, "g.V('v').property('p', 1)")
    cypher(source, "MATCH (n) WHERE id(n) = $vid SET n:a", vid="v")
    cypher(source, "MATCH (n) WHERE id(n) = $vid REMOVE n:x", vid="v")
    if not snapshot_first:
        snapshot("s")
    target, target_id = restore("s", "copy")
    replicate_until_caught_up(source, target, position)
    replicate_until_caught_up(source, target, position)  # a retried run
    assert contents(target_id) == contents(source_id)
    assert neptune_data.volume(target_id).vertices["v"] == {"labels": {"a"}, "props": {"p": {(1, "Integer")}}}


def test_a_bare_vertex_dropped_is_dropped_and_one_made_again_after_ends_as_the_source(clusters):
    source, source_id, snapshot, restore = clusters
    gremlin(source, "g.addV('a').property(T.id, 'bare').iterate(); g.addV('b').property(T.id, 'again')")
    snapshot("s")
    target, target_id = restore("s", "copy")
    position = {m: replication.position_of(source.latest(m)) for m in replication.MODELS}
    gremlin(source, "g.V('bare').drop()")
    gremlin(source, "g.V('again').drop()")
    gremlin(source, "g.addV('c').property(T.id, 'again').property('n', 1)")
    replicate_until_caught_up(source, target, position)
    assert contents(target_id) == contents(source_id) and "bare" not in neptune_data.volume(target_id).vertices


def test_a_vertex_dropped_and_made_again_between_the_position_and_the_snapshot_ends_as_the_source(clusters):
    """A real drop in that window: its commit removes the vertex's properties, so the drop is replayed over the copy
    that already holds the vertex made again, and the records after it make it again."""
    source, source_id, snapshot, restore = clusters
    gremlin(source, "g.addV('A').property(T.id, 'y').property('n', 1)")
    position = {m: replication.position_of(source.latest(m)) for m in replication.MODELS}
    gremlin(source, "g.V('y').drop()")
    gremlin(source, "g.addV('A').property(T.id, 'y').property('n', 2)")
    snapshot("s")
    target, target_id = restore("s", "copy")
    replicate_until_caught_up(source, target, position)
    assert contents(target_id) == contents(source_id)
    assert neptune_data.volume(target_id).vertices["y"]["props"]["n"] == {(2, "Integer")}


def test_a_cluster_answers_through_its_instances_only(clusters, local_aws):
    """The local Neptune as the endpoints work: a cluster endpoint leads to an instance, so a cluster whose instances
    are gone answers nothing (the decommission step must prove before it deletes them, never after)."""
    source, _, snapshot, restore = clusters
    snapshot("s")
    target, _ = restore("s", "copy")
    assert source.latest("pg") is None and target.latest("pg") is None
    local_aws.client("neptune", region_name=REGION).delete_db_instance(DBInstanceIdentifier="copy-1", SkipFinalSnapshot=True)
    with pytest.raises(replication.DataPlaneError, match="Unreachable"):
        target.latest("pg")


def test_a_transaction_larger_than_one_response_is_read_on_and_applied_whole(clusters):
    """A response holds 10 MB at most, whatever `limit` asks (the cap takes precedence, the record that breaches it
    included): a transaction past it spans responses, and the copy must still take all of it, once."""
    source, source_id, snapshot, restore = clusters
    snapshot("empty")
    target, target_id = restore("empty", "copy")
    blob = "x" * 20000
    gremlin(source, ";\n".join(f"g.addV('Doc').property(T.id, 'd{n}').property('body', '{blob}').iterate()" for n in range(600)))
    first = source.after("pg", None, replication.MAX_PAGE)
    size = sum(len(json.dumps(r)) for r in first["records"])
    assert len(first["records"]) < 2 * 600 and not first["records"][-1].get("isLastOp")
    assert size >= neptune_data.RESPONSE_CAP_BYTES > size - len(json.dumps(first["records"][-1]))
    behind = replication.lag(source, {m: None for m in replication.MODELS})  # one read counts what fits: a lower bound, said so
    assert (behind["lag_records"], behind["lag_counted"], behind["caught_up"]) == (len(first["records"]), False, False)
    result = replicate_until_caught_up(source, target, {m: None for m in replication.MODELS})
    assert contents(target_id) == contents(source_id) and len(neptune_data.volume(target_id).vertices) == 600
    assert replication.proof(source, result["positions"])["proven"]


def test_a_transaction_begun_is_read_to_its_end_even_past_the_budget(clusters, monkeypatch):
    """A run whose budget ends inside a transaction would throw away what it holds and start it again next run, for
    ever if reading it takes longer than a run: once begun, a transaction is read to its last operation."""
    monkeypatch.setattr(replication, "PAGE", 7)
    source, source_id, snapshot, restore = clusters
    snapshot("empty")
    target, target_id = restore("empty", "copy")
    gremlin(source, ";\n".join(f"g.addV('A').property(T.id, 'v{n}').property('n', {n}).iterate()" for n in range(40)))
    read = source.after
    monkeypatch.setattr(source, "after", lambda *args: time.sleep(0.02) or read(*args))  # 12 reads: longer than the budget
    result = replication.replicate(source, target, {m: None for m in replication.MODELS}, 0.05)
    assert result["applied"]["pg"] == 80 and result["caught_up"]
    assert contents(target_id) == contents(source_id)


VERTEX_V = ("g.addV('w').property(T.id, 'u').iterate(); g.addV('a::x').property(T.id, 'v').iterate(); " + "; ".join(
    ["g.V('v').property('p', 1).property(set, 'd', datetime('2024-05-01T10:00:00Z')).property(set, 'd', 3L).iterate()",
     "g.V('v').addE('knows').to(__.V('u')).property(T.id, 'e1').property('since', 2.5d).iterate()"]))


def _label_dance(source) -> None:
    """`v` loses its properties and edge, then label a, gets them back, then a, then loses x: replayed one transaction
    at a time over a copy that holds the end state, the label removal meets a bare vertex whose next record lies
    beyond what was read with it, and is taken for a drop (the properties and edge given back after it are lost)."""
    gremlin(source, "g.V('v').properties().drop().iterate(); g.E('e1').drop()")
    cypher(source, "MATCH (n) WHERE id(n) = $vid REMOVE n:a", vid="v")
    gremlin(source, VERTEX_V.split("; ", 2)[2])
    cypher(source, "MATCH (n) WHERE id(n) = $vid SET n:a", vid="v")
    cypher(source, "MATCH (n) WHERE id(n) = $vid REMOVE n:x", vid="v")


def test_vertices_misread_in_the_overlap_are_reconciled_from_the_still_source(clusters, monkeypatch):
    monkeypatch.setattr(replication, "PAGE", 1)  # one transaction a batch: the label removal's next record is not in it
    monkeypatch.setattr(replication, "MAX_PAGE", 1)
    source, source_id, snapshot, restore = clusters
    gremlin(source, VERTEX_V)
    position = {m: replication.position_of(source.latest(m)) for m in replication.MODELS}
    _label_dance(source)
    snapshot("s")
    bound = replication.position_of(source.latest("pg"))
    target, target_id = restore("s", "copy")
    result = replicate_until_caught_up(source, target, position)
    assert contents(target_id) != contents(source_id), "the overlap was not misread: this test shows nothing"
    reconciled = replication.reconcile(source, target, [{"from": position["pg"], "to": bound}])
    assert reconciled["changed"] == 1 and contents(target_id) == contents(source_id)
    assert replication.proof(source, result["positions"])["proven"]
    assert replication.reconcile(source, target, [{"from": position["pg"], "to": bound}])["changed"] == 0


def test_a_run_that_never_returned_makes_its_range_an_overlap(clusters, monkeypatch):
    """A crashed run applied part of the range past the recorded position; the retried run replays it over that copy.
    The target's own stream shows it moved since the last run returned: the range joins the overlaps."""
    monkeypatch.setattr(replication, "PAGE", 1)
    monkeypatch.setattr(replication, "MAX_PAGE", 1)
    source, source_id, snapshot, restore = clusters
    gremlin(source, VERTEX_V)
    snapshot("s")
    target, target_id = restore("s", "copy")
    position = {m: replication.position_of(source.latest(m)) for m in replication.MODELS}
    returned = replication.replicate(source, target, position, 30, [], {"pg": replication.position_of(target.latest("pg"))})
    assert returned["overlaps"] == [] and returned["caught_up"]
    _label_dance(source)
    crashed = replication.replicate(source, target, returned["positions"], 30, [], returned["target_position"])  # its result is lost
    assert crashed["caught_up"]
    time.sleep(0.01)
    cypher(source, "MATCH (n) WHERE id(n) = $vid SET n:z", vid="u")  # after the crash, a label removed elsewhere
    cypher(source, "MATCH (n) WHERE id(n) = $vid REMOVE n:z", vid="u")
    retried = replicate_until_caught_up_from(source, target, returned)
    [overlap] = retried["overlaps"]
    assert (overlap["from"], overlap["to"]) == (returned["positions"]["pg"], replication.position_of(source.latest("pg")))
    # bounded by what the crashed run could have applied: nothing the source committed after the target's last commit
    assert replication.vertices_to_reconcile(source, retried["overlaps"]) == {"v", "u"}
    assert replication.vertices_to_reconcile(source, [{**overlap, "until_ms": overlap["until_ms"] - replication.CLOCK_SKEW_MS}]) == {"v"}
    assert contents(target_id) != contents(source_id), "the replay was not misread: this test shows nothing"
    replication.reconcile(source, target, retried["overlaps"])
    assert contents(target_id) == contents(source_id)


def replicate_until_caught_up_from(source, target, last: dict) -> dict:
    result = replication.replicate(source, target, last["positions"], 30, last["overlaps"], last["target_position"])
    while not result["caught_up"]:
        result = replication.replicate(source, target, result["positions"], 30, result["overlaps"], result["target_position"])
    return result


def test_a_function_reaches_an_iam_auth_cluster_only_as_far_as_its_role_and_boundary_allow(local_aws):
    """The local Neptune authorizes a Lambda function's request as its execution role (Neptune's data-access actions,
    each step of a query judged for what it could do), so the replicator's own policy is exercised, not assumed."""
    from types import SimpleNamespace

    iam = local_aws.client("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                                "Action": "sts:AssumeRole"}]})
    data = "arn:aws:neptune-db:us-east-1:123456789012:cluster-A/*"
    boundary = iam.create_policy(PolicyName="no-writes", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "NotAction": "neptune-db:WriteDataViaQuery", "Resource": "*"}]}))["Policy"]["Arn"]
    for name, extra in (("replicator", {}), ("bounded", {"PermissionsBoundary": boundary})):
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust, **extra)
        iam.put_role_policy(RoleName=name, PolicyName="data", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["neptune-db:GetStreamRecords", "neptune-db:ReadDataViaQuery", "neptune-db:WriteDataViaQuery"],
             "Resource": data}]}))

    def denied(role: str, cluster: str, method: str, path: str, body: bytes = b"") -> str | None:
        token = neptune_data.calling_function.set(SimpleNamespace(role=f"arn:aws:iam::123456789012:role/{role}"))
        try:
            return neptune_data._authorized("123456789012", "us-east-1", SimpleNamespace(db_cluster_resource_id=cluster), method, path, body)
        finally:
            neptune_data.calling_function.reset(token)

    add, drop = json.dumps({"gremlin": "g.addV('a').property(T.id, 'x')"}).encode(), json.dumps({"gremlin": "g.V('x').drop()"}).encode()
    assert denied("replicator", "cluster-A", "GET", "/propertygraph/stream") is None
    assert "GetStreamRecords" in denied("replicator", "cluster-B", "GET", "/propertygraph/stream")
    assert denied("replicator", "cluster-A", "POST", "/gremlin", add) is None
    assert "DeleteDataViaQuery" in denied("replicator", "cluster-A", "POST", "/gremlin", drop)
    assert "DeleteDataViaQuery" in denied("replicator", "cluster-A", "POST", "/sparql", urlencode({"update": "DELETE DATA { <a:s> <a:p> <a:o> }"}).encode())
    assert "boundary" in denied("bounded", "cluster-A", "POST", "/gremlin", add)
    assert denied("bounded", "cluster-A", "GET", "/sparql/stream") is None


def test_a_value_keeps_its_type_or_is_refused(clusters):
    """Gremlin results are asked for in GraphSON 3 and read with their types; a number without one is refused, not
    guessed; a Short or Byte cannot be written with its type and is refused; dates keep their millisecond."""
    source, source_id, _, _ = clusters
    with pytest.raises(replication.UnsupportedChange, match="without its type"):
        replication._typed(7)
    with pytest.raises(replication.UnsupportedChange, match="Short"):
        replication.gremlin({"op": "ADD", "data": {"id": "v", "type": "vp", "key": "k", "value": {"value": 3, "dataType": "Short"}}})
    gremlin(source, "g.addV('a').property(T.id, 'v').property('at', datetime('2038-06-13T14:51:45.081Z'))"
                    ".property('tiny', " + replication._literal({"value": 1e-05, "dataType": "Double"}) + ")")
    state = replication.vertex_states(source, ["v"])["v"]
    assert sorted(json.loads(p)[1]["dataType"] for p in state["properties"]) == ["Date", "Double"]
    assert json.dumps(["at", {"dataType": "Date", "value": "2038-06-13T14:51:45.081Z"}], sort_keys=True) in state["properties"]
    assert neptune_data.volume(source_id).vertices["v"]["props"]["tiny"] == {(1e-05, "Double")}


def test_overlaps_are_settled_a_budget_at_a_time_while_writes_flow_then_what_was_replayed_meanwhile(clusters, monkeypatch):
    """Before the cutover question the source keeps changing: each vertex is set to the source's state as one query
    reads it, a batch a call, resuming after the last; the records replayed meanwhile are the next, smaller overlap,
    settled at the drain with the source still."""
    monkeypatch.setattr(replication, "PAGE", 1)
    monkeypatch.setattr(replication, "MAX_PAGE", 1)
    monkeypatch.setattr(replication, "RECONCILE_BATCH", 1)
    source, source_id, snapshot, restore = clusters
    gremlin(source, VERTEX_V)
    gremlin(source, "g.addV('a::x').property(T.id, 'v2').property('p', 1)")
    position = {m: replication.position_of(source.latest(m)) for m in replication.MODELS}
    _label_dance(source)
    gremlin(source, "g.V('v2').properties('p').drop()")
    cypher(source, "MATCH (n) WHERE id(n) = $vid REMOVE n:a", vid="v2")
    gremlin(source, "g.V('v2').property('p', 2)")
    cypher(source, "MATCH (n) WHERE id(n) = $vid SET n:a", vid="v2")
    cypher(source, "MATCH (n) WHERE id(n) = $vid REMOVE n:x", vid="v2")
    snapshot("s")
    bound = replication.position_of(source.latest("pg"))
    target, target_id = restore("s", "copy")
    result = replicate_until_caught_up(source, target, position)
    overlaps, after, calls = [{"from": position["pg"], "to": bound}], None, 0
    applied = result["positions"]
    while True:
        calls += 1
        settled = replication.reconcile(source, target, overlaps, 0, after)
        gremlin(source, f"g.addV('w').property(T.id, 'meanwhile{calls}')")  # writes keep flowing
        cypher(source, "MATCH (n) WHERE id(n) = $vid SET n:b", vid="v")
        if settled["done"]:
            break
        after = settled["after"]
    assert calls == 2 and settled["reconciled"] == 1  # one vertex a call, the second resumed after the first
    cypher(source, "MATCH (n) WHERE id(n) = $vid REMOVE n:b", vid="v")
    result = replicate_until_caught_up(source, target, applied)
    replication.reconcile(source, target, [{"from": applied["pg"], "to": settled["source_latest"]}])
    assert contents(target_id) == contents(source_id)
    assert replication.proof(source, result["positions"])["proven"]
