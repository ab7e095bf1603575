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
