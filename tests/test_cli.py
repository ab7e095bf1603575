"""The scan command: its JSON contract, its exit codes, and a black-box run against a loopback server."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neptune_guard.cli import main
from sandbox.aws.server import LoopbackAws
from sandbox.demo.organization import seed
from tests.conftest import TWO_ACCOUNTS

ROOT = Path(__file__).resolve().parent.parent
EVALUATION_FIELDS = {"check_id", "status", "severity", "account_id", "region", "resource_type", "resource_id",
                     "resource_arn", "kms_key_id", "message", "retained"}


def test_json_output_is_the_documented_contract(seeded, capsys):
    seeded(TWO_ACCOUNTS)
    code = main(["scan", "--accounts", "org", "--regions", "us-east-1,eu-west-1", "--output", "json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    assert set(document) == {"evaluations", "errors"}
    assert document["errors"] == []
    for evaluation in document["evaluations"]:
        assert set(evaluation) == EVALUATION_FIELDS
        assert evaluation["status"] in ("PASSED", "FAILED")
        assert evaluation["resource_type"] in ("AwsRdsDbCluster", "AwsRdsDbClusterSnapshot")
        assert evaluation["resource_arn"].startswith("arn:aws:rds:")
    plain = [e for e in document["evaluations"] if e["resource_id"] == "plain"]
    assert {(e["check_id"], e["status"], e["severity"]) for e in plain} == {
        ("neptune_cluster_storage_encrypted", "FAILED", "HIGH"),
        ("neptune_cluster_uses_cmk", "FAILED", "HIGH"),
    }


def test_table_groups_failures_by_account_with_a_summary(seeded, capsys):
    seeded(TWO_ACCOUNTS)
    assert main(["scan", "--accounts", "org", "--regions", "us-east-1,eu-west-1"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("Neptune Guard scan: 3 accounts, 6/6 account-regions scanned")
    assert "Account 111111111111:" in out and "Account 222222222222:" in out
    assert "CRITICAL" in out and "locked" in out


def test_exit_code_is_1_when_nothing_could_be_scanned(seeded, capsys):
    seeded(TWO_ACCOUNTS)
    assert main(["scan", "--accounts", "444444444444", "--regions", "us-east-1", "--output", "json"]) == 1
    assert json.loads(capsys.readouterr().out)["errors"][0]["account_id"] == "444444444444"


@pytest.mark.parametrize(
    "arguments, complaint",
    [
        (["--accounts", "12345"], "12-digit"),
        (["--accounts", "org,111111111111"], "12-digit"),
        (["--regions", "Mars"], "region"),
        (["--concurrency", "0"], "1 to 64"),
        (["--output", "xml"], "invalid choice"),
    ],
)
def test_bad_usage_exits_2_with_a_clear_message(arguments, complaint, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["scan", *arguments])
    assert exit_info.value.code == 2
    assert complaint in capsys.readouterr().err


def test_black_box_scan_against_a_loopback_server(monkeypatch):
    with LoopbackAws() as local:
        monkeypatch.setenv("AWS_ENDPOINT_URL", local.endpoint_url)
        seed(TWO_ACCOUNTS)
        completed = subprocess.run(
            [sys.executable, "-m", "neptune_guard", "scan", "--accounts", "org", "--regions", "us-east-1,eu-west-1",
             "--output", "json"],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": f"{ROOT / 'lambdas'}{os.pathsep}{ROOT}"},
        )
    assert completed.returncode == 0, completed.stderr
    failed = {(e["account_id"], e["resource_id"], e["check_id"])
              for e in json.loads(completed.stdout)["evaluations"] if e["status"] == "FAILED"}
    assert ("222222222222", "locked", "neptune_cluster_cmk_enabled") in failed
    assert ("111111111111", "default-key", "neptune_cluster_uses_cmk") in failed


def test_black_box_publish_lands_findings_once_and_archives_what_is_gone(monkeypatch):
    import boto3

    from tests.conftest import member_session

    def run_scan():
        completed = subprocess.run(
            [sys.executable, "-m", "neptune_guard", "scan", "--accounts", "org", "--regions", "us-east-1,eu-west-1",
             "--publish", "--output", "json"],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": f"{ROOT / 'lambdas'}{os.pathsep}{ROOT}"},
        )
        assert completed.returncode == 0, completed.stderr
        return json.loads(completed.stdout)

    def hub_findings(account):
        hub = member_session(session, account).client("securityhub", region_name="us-east-1")
        return [f for page in hub.get_paginator("get_findings").paginate() for f in page["Findings"]]

    with LoopbackAws() as local:
        monkeypatch.setenv("AWS_ENDPOINT_URL", local.endpoint_url)
        session = boto3.Session(region_name="us-east-1")
        seed(TWO_ACCOUNTS, session)
        run_scan()
        first = {account: hub_findings(account) for account in ("111111111111", "222222222222")}
        run_scan()
        assert {a: len(hub_findings(a)) for a in first} == {a: len(f) for a, f in first.items()}
        assert all(first.values())
        member_session(session, "111111111111").client("neptune", region_name="us-east-1").delete_db_cluster_snapshot(
            DBClusterSnapshotIdentifier="plain-snap")
        run_scan()
        archived = [f for f in hub_findings("111111111111") if f["RecordState"] == "ARCHIVED"]
    assert {f["Resources"][0]["Details"]["AwsRdsDbClusterSnapshot"]["DbClusterSnapshotIdentifier"] for f in archived} == {"plain-snap"}


def test_aws_cli_habits_profile_region_output_and_exit_codes(capsys, monkeypatch):
    from neptune_guard.cli import main

    assert main(["scan", "--profile", "no-such-profile", "--no-progress"]) == 3
    assert "no usable AWS credentials or configuration" in capsys.readouterr().err
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    assert main(["plan", "--account", "111111111111", "--region", "us-east-1", "--cluster", "orders",
                 "--target-key", "alias/k", "--output", "table"]) == 3
    with pytest.raises(SystemExit) as help_:
        main(["scan", "--help"])
    out = capsys.readouterr().out
    assert help_.value.code == 0 and all(flag in out for flag in ("--profile", "--region", "--debug", "--output", "--no-progress"))
    assert "exit status: 0 done" in out


WIDE = {"accounts": {"111111111111": {"us-east-1": {"clusters": {
    "a-cluster-identifier-of-sixty-three-characters-which-rds-allows": {"encryption": "none", "instances": {}},
    "short": {"encryption": "aws-managed", "instances": {}}}}}}}


def test_table_columns_are_sized_to_their_data_and_counted_by_severity(seeded, capsys):
    seeded(WIDE)
    assert main(["scan", "--accounts", "111111111111", "--regions", "us-east-1"]) == 0
    out = capsys.readouterr().out
    assert "\033[" not in out  # not a terminal: no colour codes in a pipe or a file
    assert "Failed checks by severity: HIGH 4, MEDIUM 2" in out
    lines = out.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("SEVERITY"))
    rows = lines[lines.index(header) + 1:lines.index(header) + 7]
    for column in ("REGION", "RESOURCE", "CHECK", "DETAIL"):
        at = header.index(column)
        assert all(row[at - 2:at] == "  " and row[at] != " " for row in rows), (column, rows)
    assert len(rows) == 6 and all(row.startswith("  ") and len(row) < 400 for row in rows)


def test_severities_are_coloured_on_a_terminal_only(seeded):
    from neptune_guard.findings import report
    from neptune_guard.scanner import ScanOptions, scan

    session = seeded(TWO_ACCOUNTS)
    result = scan(ScanOptions(accounts="org", regions=("us-east-1", "eu-west-1")), session)
    coloured, plain = report.table(result, color=True, width=300), report.table(result)
    assert "\033[" in coloured and "\033[" not in plain
    assert "\033[1;37;41mCRITICAL" in coloured  # bold white on red


def test_checks_lists_every_check_with_its_severity(capsys):
    from neptune_guard.detect.checks import CHECKS

    assert main(["checks"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["SEVERITY", "CHECK", "RESOURCE", "TITLE"]
    for check in CHECKS:
        assert any(line.split()[:2] == [check.severity, check.id] for line in out.splitlines()), check.id
    assert main(["checks", "--output", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {c["id"] for c in listed} == {c.id for c in CHECKS} and listed[0]["severity"] == "CRITICAL"
