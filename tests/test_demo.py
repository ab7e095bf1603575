"""`demo --scenario FILE --output json`: a seeded Organization remediated end to end through the real ASL."""

import json
import os
from unittest import mock

from neptune_guard.cli import main

SCENARIO = {
    "accounts": {
        "444455556666": {
            "eu-west-1": {
                "keys": {"neptune-cmk": {"state": "Enabled"}},
                "clusters": {
                    "payments": {
                        "encryption": "aws-managed",
                        "instances": {"payments-1": "db.r6g.large", "payments-2": "db.r6g.2xlarge"},
                        "deletion_protection": True, "iam_auth": True, "port": 8199, "backup_retention": 14,
                        "log_exports": ["audit"], "tags": {"cost-centre": "42", "env": "prod"},
                    },
                    "ledger": {"encryption": "none", "instances": {"ledger-1": "db.t4g.medium"}},
                },
                "snapshots": {"ledger-2025": "ledger"},
                "graphs": {"payments-analytics": {"snapshots": ["payments-analytics-daily"]}},
            }
        }
    },
    "target_key": "neptune-cmk",
}


def test_scenario_comes_back_with_every_setting_kept_under_the_original_names(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(SCENARIO))

    with mock.patch.dict(os.environ):  # the demo sets its sandbox environment; keep it from the other tests
        assert main(["demo", "--scenario", str(path), "--output", "json"]) == 0
    document = json.loads(capsys.readouterr().out)

    assert set(document) >= {"before", "remediations", "after", "clusters"}
    assert {(r["resource_id"], r["status"]) for r in document["remediations"]} == {
        ("payments", "SUCCEEDED"), ("ledger", "SUCCEEDED"), ("ledger-2025", "SUCCEEDED")}
    clusters = {c["id"]: c for c in document["clusters"]}
    payments = clusters["payments"]
    assert payments["storage_encrypted"] and ":key/" in payments["kms_key_id"]
    assert (payments["deletion_protection"], payments["iam_auth"], payments["port"], payments["backup_retention"]) == (True, True, 8199, 14)
    assert payments["log_exports"] == ["audit"] and {k: v for k, v in payments["tags"].items() if not k.startswith("neptune-guard:")} == {"cost-centre": "42", "env": "prod"}
    assert payments["tags"]["neptune-guard:remediated-by"].startswith("arn:aws:states:")
    assert payments["instances"] == {"payments-1": "db.r6g.large", "payments-2": "db.r6g.2xlarge"}
    assert not [c for c in clusters if c.startswith("payments-")]  # the original was decommissioned
    assert {(d["resource_id"], d["status"]) for d in document["decommissions"]} == {("payments", "DECOMMISSIONED"), ("ledger", "DECOMMISSIONED")}
    failed_after = {(e["resource_id"], e["check_id"]) for e in document["after"] if e["status"] == "FAILED"}
    # A graph on the AWS owned key is found before and after: AWS offers no restore under another key to automate.
    graph_failures = {("payments-analytics", "neptune_graph_uses_cmk"), ("payments-analytics-daily", "neptune_graph_snapshot_uses_cmk")}
    assert failed_after == graph_failures
    assert graph_failures <= {(e["resource_id"], e["check_id"]) for e in document["before"] if e["status"] == "FAILED"}
    assert next(e for e in document["before"] if e["resource_id"] == "payments-analytics")["kms_key_id"] == "AWS_OWNED_KEY"
    assert clusters["ledger"]["storage_encrypted"] and clusters["ledger"]["instances"] == {"ledger-1": "db.t4g.medium"}
    after = {(e["resource_id"], e["check_id"]): e["status"] for e in document["after"]}
    assert after[("payments", "neptune_cluster_uses_cmk")] == "PASSED"
    assert after[("ledger", "neptune_cluster_storage_encrypted")] == "PASSED"
    replacement = next(s for s in document["snapshots"] if s["id"].startswith("ledger-2025-cmk-"))
    assert after[(replacement["id"], "neptune_cluster_snapshot_uses_cmk")] == "PASSED"
    assert ("ledger-2025", "neptune_cluster_snapshot_uses_cmk") not in after


def test_a_global_database_member_seeds_in_any_region(seeded):
    from tests.conftest import member_session

    session = seeded({"accounts": {"111111111111": {"eu-west-1": {"clusters": {
        "worldwide-primary": {"encryption": "none", "instances": {}, "global_cluster": "worldwide"}}}}}})
    neptune = member_session(session, "111111111111").client("neptune", region_name="eu-west-1")
    assert neptune.describe_db_clusters(DBClusterIdentifier="worldwide-primary")["DBClusters"][0]["GlobalClusterIdentifier"]


def test_a_demo_failure_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    from sandbox.demo import demo

    def broken(*args, **kwargs):
        raise RuntimeError("the local AWS went away")

    monkeypatch.setattr(demo, "_run", broken)
    assert main(["demo"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "neptune-guard demo: failed: RuntimeError: the local AWS went away" and "Traceback" not in err


WRITES = {"accounts": {"111111111111": {"us-east-1": {
    "keys": {"neptune-cmk": {"state": "Enabled"}},
    "clusters": {"busy": {"encryption": "none", "instances": {"busy-1": "db.t4g.medium"}, "writes_during_remediation": True}},
}}}, "target_key": "neptune-cmk"}


def test_writes_at_the_cutover_end_the_demo_cleanly_with_the_original_serving(tmp_path, capsys, monkeypatch):
    """The demo's on-call rejects a cutover with writes detected, as a person would: no traceback, exit 0, the
    original keeps its name, unencrypted as it was, and nothing the execution made is left behind."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    path = tmp_path / "writes.json"
    path.write_text(json.dumps(WRITES))
    with mock.patch.dict(os.environ):
        assert main(["demo", "--scenario", str(path), "--output", "json"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    document = json.loads(captured.out)
    (remediation,) = document["remediations"]
    assert remediation["status"] == "FAILED" and remediation["outcome"] == "writes detected"
    assert remediation["path"] == "freeze" and remediation["writes_acknowledged"] > 0 and remediation["writes_missing"] == 0
    clusters = {c["id"]: c for c in document["clusters"]}
    assert set(clusters) == {"busy"} and clusters["busy"]["storage_encrypted"] is False
    assert document["decommissions"] == []


LIVE = {"accounts": {"111111111111": {"us-east-1": {
    "keys": {"neptune-cmk": {"state": "Enabled"}},
    "clusters": {"orders": {"encryption": "aws-managed", "instances": {"orders-1": "db.r6g.large"}, "streams": True,
                            "data_model": "property-graph", "writes_during_remediation": True},
                 "facts": {"encryption": "none", "instances": {"facts-1": "db.r6g.large"}, "streams": True,
                           "data_model": "rdf", "writes_during_remediation": True}},
}}}, "target_key": "neptune-cmk"}


def test_live_clusters_are_remediated_on_the_streams_path_with_every_acknowledged_write_kept(tmp_path, capsys, monkeypatch):
    """The application writes through the whole remediation (both data models); the JSON says which path each took,
    the write pause and nameless window it cost, and that no acknowledged write is missing from what serves the name."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    path = tmp_path / "live.json"
    path.write_text(json.dumps(LIVE))
    with mock.patch.dict(os.environ):
        assert main(["demo", "--scenario", str(path), "--output", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    remediations = {r["resource_id"]: r for r in document["remediations"]}
    for cluster_id in ("orders", "facts"):
        remediation = remediations[cluster_id]
        assert remediation["status"] == "SUCCEEDED" and remediation["path"] == "streams", remediation
        assert remediation["writes_acknowledged"] > 10 and remediation["writes_missing"] == 0
        assert 0 < remediation["write_pause_seconds"] < 60 and 0 < remediation["nameless_seconds"] < 60
    clusters = {c["id"]: c for c in document["clusters"]}
    assert set(clusters) == {"orders", "facts"} and all(c["storage_encrypted"] for c in clusters.values())
