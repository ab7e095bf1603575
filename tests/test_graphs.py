"""Neptune Analytics graphs and graph snapshots: read through neptune-graph, published as ASFF Type Other, archived when
gone, and a neptune-graph fault confined to its account-region."""

import boto3
import pytest

from neptune_guard.approve import trigger
from neptune_guard.detect import checks, graphs
from neptune_guard.findings import asff
from neptune_guard.models import Status
from neptune_guard.scanner import ScanOptions, scan
from sandbox.aws.server import LoopbackAws
from sandbox.demo.organization import DEMO_SCENARIO, seed
from tests.conftest import REGIONS, findings, member_session
from tests.test_checks import graph

ACCOUNT = "111111111111"
SCENARIO = {"accounts": {ACCOUNT: {
    "us-east-1": {
        "keys": {"cmk": {"state": "Enabled"}},
        "clusters": {"plain": {"encryption": "none"}},
        "graphs": {"recs": {"encryption": "aws-owned", "tags": {"team": "recs"}, "snapshots": ["recs-weekly"]},
                   "fraud": {"encryption": "cmk", "snapshots": ["fraud-weekly"]}},
    },
    "eu-west-1": {"clusters": {"eu-plain": {"encryption": "none"}, "eu-old": {"encryption": "none"}}, "graphs": {"eu-recs": {}}},
}}}


def verdicts(result):
    return {(e.region, e.resource_id, e.check_id): e.status for e in result.evaluations if "graph_" in e.check_id}


def publish():
    return scan(ScanOptions(accounts="org", regions=REGIONS, publish=True))


def test_graphs_and_snapshots_past_one_page_are_all_read_one_request_per_page(local_aws):
    client = local_aws.client("neptune-graph", region_name="us-east-1")
    key = local_aws.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["Arn"]
    created = [client.create_graph(graphName=f"graph-{n:03}", provisionedMemory=16, kmsKeyIdentifier=key)["id"] for n in range(105)]
    for n in range(101):
        client.create_graph_snapshot(graphIdentifier=created[n], snapshotName=f"snap-{n:03}")
    calls = []
    local_aws.events.register("before-call.neptune-graph.*", lambda model, **_: calls.append(model.name))
    local_aws.events.register("before-call.kms.*", lambda model, **_: calls.append(model.name))

    result = scan(ScanOptions(regions=("us-east-1",)), local_aws)

    assert {e.resource_id for e in result.evaluations if e.check_id == "neptune_graph_uses_cmk"} == {f"graph-{n:03}" for n in range(105)}
    assert len([e for e in result.evaluations if e.check_id == "neptune_graph_snapshot_uses_cmk"]) == 101
    assert {e.status for e in result.evaluations if "graph_" in e.check_id} == {Status.PASSED}
    assert (calls.count("ListGraphs"), calls.count("ListGraphSnapshots"), calls.count("DescribeKey")) == (2, 2, 1)


def test_the_scan_finds_graphs_on_the_aws_owned_key_and_passes_those_on_a_cmk(seeded):
    seeded(SCENARIO)
    result = scan(ScanOptions(accounts="org", regions=REGIONS))
    assert not result.all_errors
    assert verdicts(result) == {
        ("us-east-1", "recs", "neptune_graph_uses_cmk"): Status.FAILED,
        ("us-east-1", "recs-weekly", "neptune_graph_snapshot_uses_cmk"): Status.FAILED,
        ("us-east-1", "fraud", "neptune_graph_uses_cmk"): Status.PASSED,
        ("us-east-1", "fraud-weekly", "neptune_graph_snapshot_uses_cmk"): Status.PASSED,
        ("eu-west-1", "eu-recs", "neptune_graph_uses_cmk"): Status.FAILED,
    }


def test_no_graph_is_asked_for_where_neptune_analytics_is_not_offered(local_aws):
    calls = []
    local_aws.events.register("before-call.neptune-graph.*", lambda model, **_: calls.append(model.name))
    result = scan(ScanOptions(regions=("us-west-1",)), local_aws)
    assert "us-west-1" not in graphs.REGIONS and not result.all_errors and calls == []


def test_graph_findings_are_type_other_with_details_and_a_deleted_graph_is_archived(seeded):
    session = seeded(SCENARIO)
    result = publish()
    recs = next(e for e in result.evaluations if e.resource_id == "recs")
    finding = findings(session, ACCOUNT, "us-east-1")[asff.finding_id(recs.resource_arn, "neptune_graph_uses_cmk")]
    resource = finding["Resources"][0]
    assert (resource["Type"], resource["Id"]) == ("Other", recs.resource_arn)
    other = resource["Details"]["Other"]
    assert other["ResourceType"] == "AWS::NeptuneGraph::Graph" and other["GraphName"] == "recs"
    assert other["KmsKeyIdentifier"] == "AWS_OWNED_KEY" and other["GraphId"] == recs.resource_arn.rsplit("/", 1)[1]
    assert len(other) <= 50 and all(len(k) < 128 and isinstance(v, str) and len(v) < 1024 for k, v in other.items())
    assert resource["Tags"] == {"team": "recs"}  # read for the failing graph through neptune-graph
    assert finding["Compliance"]["Status"] == "FAILED" and finding["ProductFields"]["neptune-guard/Remediation"] == "none"
    assert "(Neptune Analytics graph recs)" in finding["Title"] and "AWS owned key" in finding["Description"]

    client = member_session(session, ACCOUNT).client("neptune-graph", region_name="us-east-1")
    client.delete_graph(graphIdentifier=other["GraphId"], skipSnapshot=True)
    publish()

    after = findings(session, ACCOUNT, "us-east-1")
    assert after[finding["Id"]]["RecordState"] == "ARCHIVED"
    kept = [f for f in after.values() if f["Id"] != finding["Id"]]
    assert kept and {f["RecordState"] for f in kept} == {"ACTIVE"}  # its snapshot, the other graph, the cluster


def test_a_neptune_graph_fault_in_one_region_leaves_its_graphs_as_they_were_and_its_clusters_read(monkeypatch):
    with LoopbackAws() as local:
        monkeypatch.setenv("AWS_ENDPOINT_URL", local.endpoint_url)
        session = boto3.Session(region_name="us-east-1")
        seed(SCENARIO, session)
        publish()
        client = member_session(session, ACCOUNT).client("neptune-graph", region_name="eu-west-1")
        client.delete_graph(graphIdentifier=client.list_graphs()["graphs"][0]["id"], skipSnapshot=True)
        member_session(session, ACCOUNT).client("neptune", region_name="eu-west-1").delete_db_cluster(
            DBClusterIdentifier="eu-old", SkipFinalSnapshot=True)
        local.network.failing_actions.add(("eu-west-1", "neptune-graph:/graphs"))  # ListGraphs fails in eu-west-1 only
        result = publish()
        eu_findings = findings(session, ACCOUNT, "eu-west-1")

    errors = [(e.region, e.message) for e in result.all_errors if e.account_id == ACCOUNT]  # the management account has no hub
    assert [r for r, _ in errors] == ["eu-west-1"] and errors[0][1].startswith("Neptune Analytics: ")
    # An Organization whose SCPs deny Neptune Analytics still has its clusters covered and archived.
    assert {(u.account_id, u.region) for u in result.scanned_units} >= {(ACCOUNT, "us-east-1"), (ACCOUNT, "eu-west-1")}
    assert ("eu-west-1", "eu-plain") in {(e.region, e.resource_id) for e in result.evaluations}  # its clusters still judged
    assert ("us-east-1", "recs", "neptune_graph_uses_cmk") in verdicts(result)
    gone = [f for f in eu_findings.values() if "eu-recs" in f["Title"]]
    assert gone and {f["RecordState"] for f in gone} == {"ACTIVE"}  # graphs unread: their findings are left as they were
    old = [f for f in eu_findings.values() if f["Resources"][0]["Id"].endswith(":cluster:eu-old")]
    assert old and {f["RecordState"] for f in old} == {"ARCHIVED"}  # the clusters were read in full: the gone one archived


def test_the_demo_organization_has_a_graph_on_the_aws_owned_key_and_the_scan_finds_it(seeded):
    seeded(DEMO_SCENARIO)
    result = scan(ScanOptions(accounts="org", regions=REGIONS))
    found = [e for e in result.evaluations if e.check_id == "neptune_graph_uses_cmk" and e.status is Status.FAILED]
    assert [(e.account_id, e.region, e.resource_id, e.kms_key_id) for e in found] == [
        ("111111111111", "us-east-1", "recs-analytics", "AWS_OWNED_KEY")]
    assert "encrypted with an AWS owned key" in found[0].message


def test_the_remediate_action_refuses_a_graph_finding_before_reading_anything():
    resource = graph()
    finding = asff.build(checks.evaluate(resource)[0], resource, "aws", "2026-12-02T00:00:00.000Z", None)
    with pytest.raises(trigger.NotRemediable, match="'Other' has no re-encryption workflow"):
        trigger.claimed_resource(finding)


class _Answers:
    """A neptune-graph client (and its factory) that answers every page with `page`."""

    def __init__(self, page):
        self.page = page

    def client(self, service, region):
        return self

    def get_paginator(self, operation):
        return self

    def paginate(self, **_):
        return [self.page]


@pytest.mark.parametrize("page", [{"graphs": [{"id": "g-0123456789"}], "graphSnapshots": []}, {"nothing": []}, {"graphs": None}])
def test_a_malformed_neptune_graph_answer_is_the_units_error_not_a_crash(page):
    with pytest.raises(graphs.GraphsUnreadable, match="^Neptune Analytics: malformed response from AWS"):
        graphs.read_region(_Answers(page), ACCOUNT, "us-east-1", None)
