"""The detector Lambda, invoked with an EventBridge scheduled event against the local AWS."""

import json

from neptune_guard import scanner

from tests.conftest import ORG, LambdaContext as Context, findings

SCHEDULED_EVENT = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-11-22T06:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/NeptuneGuardDailyScan"],
    "detail": {},
}


def test_scheduled_event_scans_publishes_and_reports(seeded, monkeypatch, capsys):
    session = seeded(ORG)
    monkeypatch.setenv("REGIONS", "us-east-1,eu-west-1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "NeptuneGuard")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "detector")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")
    from neptune_guard.handlers import detector

    summary = detector.handler(SCHEDULED_EVENT, Context())

    assert summary["account_regions_scanned"] == 6
    assert summary["account_regions_failed"] == 0
    assert summary["errors"] == 3  # Security Hub off in the management account and one member region
    assert summary["findings_failed"] > 0
    assert findings(session, "111111111111", "us-east-1")  # published through the audit role

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    units = [line for line in lines if line.get("message") == "account-region scanned"]
    assert {(u["account_id"], u["region"]) for u in units} >= {("111111111111", "us-east-1"), ("222222222222", "eu-west-1")}
    emf = [line for line in lines if "_aws" in line]
    names = {m["Name"] for line in emf for d in line["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"accounts_scanned", "account_regions_scanned", "account_regions_failed", "findings"} <= names
    by_check = [line for line in emf if line.get("check_id") == "neptune_cluster_uses_cmk" and line.get("status") == "FAILED"]
    assert by_check and by_check[0]["findings"] == [4.0]  # plain, default-key, other and unwatched


def test_near_its_time_limit_the_detector_reports_every_account_region_it_did_not_start(seeded, monkeypatch, capsys):
    session = seeded(ORG)
    monkeypatch.setenv("REGIONS", "us-east-1,eu-west-1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "NeptuneGuard")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    from neptune_guard.handlers import detector

    summary = detector.handler(SCHEDULED_EVENT, Context(remaining_ms=(scanner.FINISHING_RESERVE_SECONDS - 1) * 1000))

    assert summary["account_regions_scanned"] == 0 and summary["account_regions_not_reached"] == 6  # 3 accounts x 2 regions
    assert not findings(session, "111111111111", "us-east-1")  # nothing half-published
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{") and "_aws" in line]
    assert any(line.get("account_regions_not_reached") == [6.0] for line in emf)
