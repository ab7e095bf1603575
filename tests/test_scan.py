"""The scan against the local AWS: accounts, regions, paging, keys, faults."""

import boto3
import pytest

from neptune_guard.detect import inventory
from neptune_guard.models import Status
from neptune_guard.scanner import ScanOptions, scan
from sandbox.aws.server import LoopbackAws
from sandbox.demo.organization import MANAGEMENT_ACCOUNT
from tests.conftest import REGIONS, TWO_ACCOUNTS, member_session



def failed(result):
    return {(e.account_id, e.region, e.resource_id, e.check_id) for e in result.evaluations if e.status is Status.FAILED}


def manual(result):
    """Evaluations of everything but the automated snapshots moto (like AWS) takes at cluster creation."""
    return {k for k in failed(result) if not k[2].startswith("rds:")}


def test_org_scan_covers_every_account_and_region(seeded):
    seeded(TWO_ACCOUNTS)
    result = scan(ScanOptions(accounts="org", regions=REGIONS))
    assert not result.all_errors
    assert {(u.account_id, u.region) for u in result.units} == {
        (a, r) for a in (MANAGEMENT_ACCOUNT, "111111111111", "222222222222") for r in REGIONS
    }
    assert manual(result) == {
        ("111111111111", "us-east-1", "plain", "neptune_cluster_storage_encrypted"),
        ("111111111111", "us-east-1", "plain", "neptune_cluster_uses_cmk"),
        ("111111111111", "us-east-1", "default-key", "neptune_cluster_uses_cmk"),
        ("111111111111", "us-east-1", "plain-snap", "neptune_cluster_snapshot_storage_encrypted"),
        ("111111111111", "us-east-1", "plain-snap", "neptune_cluster_snapshot_uses_cmk"),
        ("111111111111", "us-east-1", "default-snap", "neptune_cluster_snapshot_uses_cmk"),
        ("111111111111", "eu-west-1", "doomed", "neptune_cluster_cmk_enabled"),
        ("222222222222", "us-east-1", "locked", "neptune_cluster_cmk_enabled"),
        ("222222222222", "eu-west-1", "eu-plain", "neptune_cluster_storage_encrypted"),
        ("222222222222", "eu-west-1", "eu-plain", "neptune_cluster_uses_cmk"),
    }
    resources = {e.resource_id for e in result.evaluations}
    assert "aurora-db" not in resources  # other RDS engines are not Neptune
    passed = {(e.resource_id, e.check_id) for e in result.evaluations if e.status is Status.PASSED}
    assert ("borrowed", "neptune_cluster_uses_cmk") in passed  # a CMK shared from another account
    assert ("good", "neptune_cluster_cmk_enabled") in passed


def test_evaluations_carry_the_arns_and_keys_the_api_returned(seeded):
    session = seeded(TWO_ACCOUNTS)
    result = scan(ScanOptions(accounts="111111111111", regions=("us-east-1",)), session)
    neptune = member_session(session, "111111111111").client("neptune", region_name="us-east-1")
    api = {c["DBClusterIdentifier"]: c for c in neptune.describe_db_clusters()["DBClusters"]}
    default_key = next(e for e in result.evaluations if e.resource_id == "default-key")
    assert default_key.resource_arn == api["default-key"]["DBClusterArn"]
    assert default_key.kms_key_id == api["default-key"]["KmsKeyId"]
    assert default_key.resource_type == "AwsRdsDbCluster"
    assert next(e for e in result.evaluations if e.resource_id == "plain").kms_key_id is None


def test_clusters_and_snapshots_past_one_page_are_all_read_one_request_per_page(local_aws):
    neptune = local_aws.client("neptune", region_name="us-east-1")
    for n in range(130):
        neptune.create_db_cluster(DBClusterIdentifier=f"c{n:03}", Engine="neptune", StorageEncrypted=True)
    for n in range(105):
        neptune.create_db_cluster_snapshot(DBClusterSnapshotIdentifier=f"s{n:03}", DBClusterIdentifier=f"c{n:03}")
    calls = []
    for service in ("rds", "neptune", "kms"):
        local_aws.events.register(f"before-call.{service}.*", lambda model, **_: calls.append(model.name))

    result = scan(ScanOptions(regions=("us-east-1",)), local_aws)

    clusters = {e.resource_id for e in result.evaluations if e.resource_type == "AwsRdsDbCluster"}
    snapshots = {e.resource_id for e in result.evaluations if e.resource_type == "AwsRdsDbClusterSnapshot"}
    assert len(clusters) == 130
    assert len(snapshots) == 130 + 105  # the automated snapshot of each cluster and the manual ones
    assert calls.count("DescribeDBClusters") == 2
    assert calls.count("DescribeDBClusterSnapshots") == 3
    assert calls.count("DescribeKey") == 1  # every cluster is on the same aws/rds key: classified once
    assert calls.count("ListTagsForResource") == 0  # every one fails, and its tags came with its description


def test_account_whose_role_cannot_be_assumed_is_reported_and_others_scanned(seeded):
    seeded(TWO_ACCOUNTS)
    result = scan(ScanOptions(accounts="111111111111,444444444444", regions=REGIONS))
    assert [(e.account_id, e.region) for e in result.errors] == [("444444444444", None)]
    assert "AccessDenied" in result.errors[0].message
    assert {u.account_id for u in result.scanned_units} == {"111111111111"}


def test_cross_account_key_that_cannot_be_described_is_customer_managed(local_aws):
    kms = local_aws.client("kms", region_name="us-east-1")
    foreign = "arn:aws:kms:us-east-1:999999999999:key/0f0f0f0f-1111-2222-3333-444444444444"
    info = inventory.KeyDirectory().classify(kms, foreign, MANAGEMENT_ACCOUNT)
    assert info.is_customer_managed and info.state is None and "NotFoundException" in info.lookup_error


def test_same_account_key_that_cannot_be_described_is_reported_not_guessed(local_aws):
    kms = local_aws.client("kms", region_name="us-east-1")
    missing = f"arn:aws:kms:us-east-1:{MANAGEMENT_ACCOUNT}:key/0f0f0f0f-1111-2222-3333-444444444444"
    with pytest.raises(inventory.InventoryError, match="cannot classify key"):
        inventory.KeyDirectory().classify(kms, missing, MANAGEMENT_ACCOUNT)


def test_regions_default_to_those_enabled_for_the_account(seeded):
    seeded({"accounts": {MANAGEMENT_ACCOUNT: {"eu-west-1": {"clusters": {"far": {"encryption": "none"}}}}}})
    result = scan(ScanOptions(concurrency=32))
    regions = {u.region for u in result.units}
    assert {"us-east-1", "eu-west-1"} <= regions
    assert regions <= set(boto3.Session().get_available_regions("neptune"))
    assert ("eu-west-1", "far") in {(e.region, e.resource_id) for e in result.evaluations}


def test_a_region_that_throws_does_not_stop_the_others(monkeypatch):
    with LoopbackAws() as local:
        monkeypatch.setenv("AWS_ENDPOINT_URL", local.endpoint_url)
        from sandbox.demo.organization import seed

        seed(TWO_ACCOUNTS)
        local.network.failing_regions.add("eu-west-1")
        result = scan(ScanOptions(accounts="org", regions=REGIONS, concurrency=4))
    assert {(e.account_id, e.region) for e in result.all_errors} == {
        (a, "eu-west-1") for a in (MANAGEMENT_ACCOUNT, "111111111111", "222222222222")
    }
    assert {(u.account_id, u.region) for u in result.scanned_units} == {
        (a, "us-east-1") for a in (MANAGEMENT_ACCOUNT, "111111111111", "222222222222")
    }
    assert ("222222222222", "us-east-1", "locked", "neptune_cluster_cmk_enabled") in failed(result)


def test_a_snapshot_shared_with_the_account_is_reported_as_its_owners_to_fix(seeded):
    seeded({"accounts": {
        "111111111111": {"us-east-1": {"clusters": {"plain": {"encryption": "none"}},
                                       "snapshots": {"export": {"cluster": "plain", "shared_with": ["222222222222"]}}}},
        "222222222222": {"us-east-1": {}},
    }})
    result = scan(ScanOptions(accounts="222222222222", regions=("us-east-1",)))
    seen = [e for e in result.evaluations if e.resource_id == "export"]
    assert seen and all(e.status is Status.FAILED and e.account_id == "222222222222" for e in seen)
    assert all("shared with this account by 111111111111: only its owner can re-encrypt it" in e.message for e in seen)


def test_neptune_analytics_out_of_scope_is_not_read_and_its_findings_are_left_as_they_are(seeded):
    from neptune_guard.models import GRAPH
    from tests.conftest import findings

    session = seeded({"accounts": {"111111111111": {"us-east-1": {"clusters": {"plain": {"encryption": "none"}},
                                                                  "graphs": {"recs": {}}}}}})
    scan(ScanOptions(accounts="111111111111", regions=("us-east-1",), publish=True))
    calls = []
    session.events.register("before-call.neptune-graph.*", lambda model, **_: calls.append(model.name))
    client = boto3.Session(region_name="us-east-1")
    client.events.register("before-call.neptune-graph.*", lambda model, **_: calls.append(model.name))

    result = scan(ScanOptions(accounts="111111111111", regions=("us-east-1",), publish=True, read_graphs=False), client)

    (unit,) = result.units
    assert unit.read_in_full and GRAPH in unit.unread_types and not calls
    graph_findings = [f for f in findings(session, "111111111111", "us-east-1").values() if ":graph/" in f["Resources"][0]["Id"]]
    assert graph_findings and {f["RecordState"] for f in graph_findings} == {"ACTIVE"}  # out of scope is not gone


def test_sessions_of_their_own_credentials_share_one_loader_that_does_not_grow(local_aws):
    """A step assumes its role into a session of its own: the service models are read once per process, and boto3's
    resource-model path, appended to the loader at every session, is kept once."""
    from neptune_guard import aws

    first = aws.new_session("us-east-1")
    paths = list(first._session.get_component("data_loader").search_paths)
    member = None
    for number in range(3):
        member = aws.new_session("eu-west-1", aws_access_key_id=f"AKIA{number}", aws_secret_access_key="secret", aws_session_token="token")
    loader = member._session.get_component("data_loader")
    assert loader is first._session.get_component("data_loader") and loader.search_paths == paths
    assert member.get_credentials().access_key == "AKIA2" and member.region_name == "eu-west-1"
    assert first.get_credentials().access_key != "AKIA2"


def test_a_session_keeps_what_the_environment_configures_of_botocore(local_aws, monkeypatch, tmp_path):
    """An unknown profile from AWS_PROFILE is refused when the session is made (the CLI's exit 3), and AWS_DATA_PATH's
    models are read, as boto3.Session does."""
    import botocore.exceptions

    from neptune_guard import aws

    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(botocore.exceptions.ProfileNotFound):
        aws.new_session("us-east-1")
    monkeypatch.delenv("AWS_PROFILE")
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    custom = aws.new_session("us-east-1")._session.get_component("data_loader")
    monkeypatch.delenv("AWS_DATA_PATH")
    plain = aws.new_session("us-east-1")._session.get_component("data_loader")
    assert str(tmp_path) in custom.search_paths and str(tmp_path) not in plain.search_paths
