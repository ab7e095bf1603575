"""Publishing to Security Hub: ASFF, one finding per resource and check, PASSED, ARCHIVED, faults."""

from moto.securityhub import models as securityhub_models

from neptune_guard.findings import asff
from neptune_guard.scanner import ScanOptions, scan
from sandbox.aws.server import LoopbackAws
from sandbox.demo.organization import seed
from tests.conftest import ORG, REGIONS, findings, member_session



def publish(**options):
    return scan(ScanOptions(accounts="org", regions=REGIONS, publish=True, **options))


def test_findings_land_in_each_member_accounts_own_security_hub(seeded):
    session = seeded(ORG)
    result = publish()
    # Security Hub is off in the management account and in one member region: reported, not a crash.
    assert {(e.account_id, e.region) for e in result.all_errors} == {
        ("123456789012", "us-east-1"), ("123456789012", "eu-west-1"), ("222222222222", "eu-west-1")}
    assert all("Security Hub is not enabled" in e.message for e in result.all_errors)

    ours = findings(session, "111111111111", "us-east-1")
    expected = {asff.finding_id(e.resource_arn, e.check_id) for e in result.evaluations
                if (e.account_id, e.region) == ("111111111111", "us-east-1")}
    assert set(ours) == expected
    plain_arn = next(e.resource_arn for e in result.evaluations if e.resource_id == "plain")
    finding = ours[asff.finding_id(plain_arn, "neptune_cluster_uses_cmk")]
    assert finding["ProductArn"] == "arn:aws:securityhub:us-east-1:111111111111:product/111111111111/default"
    assert finding["AwsAccountId"] == "111111111111"
    assert finding["GeneratorId"] == "neptune-guard/neptune_cluster_uses_cmk"
    assert finding["Severity"]["Label"] == "HIGH"
    assert finding["Compliance"]["Status"] == "FAILED" and "NIST.800-53.r5 SC-28" in finding["Compliance"]["RelatedRequirements"]
    assert "plain" in finding["Title"] and "not encrypted" in finding["Description"]
    assert finding["Remediation"]["Recommendation"]["Url"].startswith("https://")
    resource = finding["Resources"][0]
    assert (resource["Type"], resource["Id"], resource["Region"], resource["Partition"]) == ("AwsRdsDbCluster", plain_arn, "us-east-1", "aws")
    assert resource["Details"]["AwsRdsDbCluster"]["StorageEncrypted"] is False
    assert finding["ProductFields"]["neptune-guard/Remediation"] == "NeptuneGuardClusterRemediation"
    good = [f for f in ours.values() if "(cluster good)" in f["Title"]]
    assert {f["Compliance"]["Status"] for f in good} == {"PASSED"} and len(good) == 3
    assert findings(session, "222222222222", "us-east-1")  # the other member's findings stay in its own hub
    assert not any(f["AwsAccountId"] == "222222222222" for f in ours.values())


def test_rescan_keeps_one_finding_per_resource_and_check_and_its_first_sighting(seeded):
    session = seeded(ORG)
    publish()
    first = findings(session, "111111111111", "us-east-1")
    publish()
    second = findings(session, "111111111111", "us-east-1")
    assert set(first) == set(second)
    for finding_id, finding in second.items():
        assert finding["CreatedAt"] == first[finding_id]["CreatedAt"]
        assert finding["FirstObservedAt"] == first[finding_id]["FirstObservedAt"]
        assert finding["UpdatedAt"] > first[finding_id]["UpdatedAt"]
        assert finding["RecordState"] == "ACTIVE"


def test_a_deleted_resource_has_its_findings_archived_and_others_are_not_touched(seeded):
    session = seeded(ORG)
    publish()
    hub = member_session(session, "111111111111").client("securityhub", region_name="us-east-1")
    foreign = {**next(iter(findings(session, "111111111111", "us-east-1").values())),
               "Id": "someone-else/1", "GeneratorId": "other-tool/check", "UpdatedAt": "2030-01-01T00:00:00.000Z"}
    hub.batch_import_findings(Findings=[foreign])
    neptune = member_session(session, "111111111111").client("neptune", region_name="us-east-1")
    neptune.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier="plain-snap")

    publish()

    after = findings(session, "111111111111", "us-east-1")
    snapshot_findings = [f for f in after.values() if "plain-snap" in f["Title"]]
    assert len(snapshot_findings) == 2 and {f["RecordState"] for f in snapshot_findings} == {"ARCHIVED"}
    assert after["someone-else/1"]["RecordState"] == "ACTIVE"
    assert {f["RecordState"] for f in after.values() if "(cluster plain)" in f["Title"]} == {"ACTIVE"}


def test_an_account_region_whose_scan_failed_archives_nothing(monkeypatch):
    with LoopbackAws() as local:
        monkeypatch.setenv("AWS_ENDPOINT_URL", local.endpoint_url)
        import boto3

        session = boto3.Session(region_name="us-east-1")
        seed(ORG, session)
        publish()
        neptune = member_session(session, "111111111111").client("neptune", region_name="us-east-1")
        neptune.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier="plain-snap")
        local.network.failing_actions.add(("us-east-1", "kms:DescribeKey"))  # the scan of us-east-1 is incomplete
        result = publish()
        assert ("111111111111", "us-east-1") not in {(u.account_id, u.region) for u in result.scanned_units}
        after = findings(session, "111111111111", "us-east-1")
    assert {f["RecordState"] for f in after.values() if "plain-snap" in f["Title"]} == {"ACTIVE"}


def test_resolved_checks_turn_passed(seeded):
    session = seeded(ORG)
    publish()
    kms = member_session(session, "222222222222").client("kms", region_name="us-east-1")
    kms.enable_key(KeyId=kms.describe_key(KeyId="alias/off")["KeyMetadata"]["KeyId"])
    publish()
    statuses = {f["GeneratorId"]: (f["Compliance"]["Status"], f["Severity"]["Label"], f["RecordState"])
                for f in findings(session, "222222222222", "us-east-1").values() if "(cluster locked)" in f["Title"]}
    assert statuses["neptune-guard/neptune_cluster_cmk_enabled"] == ("PASSED", "INFORMATIONAL", "ACTIVE")


def test_failed_findings_are_retried_and_permanent_failures_reported(seeded, monkeypatch):
    session = seeded(ORG)
    original = securityhub_models.SecurityHubBackend.batch_import_findings
    attempts = {}

    def flaky(self, findings):
        failed = []
        for finding in findings:
            attempts[finding["Id"]] = attempts.get(finding["Id"], 0) + 1
            if "plain-snap" in finding["Id"] and attempts[finding["Id"]] == 1:
                failed.append({"Id": finding["Id"], "ErrorCode": "InternalException", "ErrorMessage": "try again"})
            elif ":cluster:good/" in finding["Id"]:
                failed.append({"Id": finding["Id"], "ErrorCode": "InvalidInput", "ErrorMessage": "bad"})
        accepted = [f for f in findings if f["Id"] not in {x["Id"] for x in failed}]
        original(self, accepted)
        return len(failed), len(accepted), failed

    monkeypatch.setattr(securityhub_models.SecurityHubBackend, "batch_import_findings", flaky)
    result = publish()
    stored = findings(session, "111111111111", "us-east-1")
    assert any("plain-snap" in finding_id for finding_id in stored)  # imported on the second attempt
    rejected = [e for e in result.all_errors if "rejected: InvalidInput" in e.message]
    assert len(rejected) == 3  # the good cluster's three findings, reported, not retried
    assert all(attempts[i] == 1 for i in attempts if ":cluster:good/" in i)


def test_findings_are_written_as_the_asff_reference_asks():
    """FindingProviderFields, a page per check, only sourced framework requirements, Security Hub's own control apart."""
    from neptune_guard.detect.checks import CHECKS
    from neptune_guard.findings import asff
    from neptune_guard.models import Cluster, Evaluation, Status

    assert len({check.remediation_url for check in CHECKS}) == len(CHECKS)
    assert all(r.source.startswith("https://") and "Security Hub" not in r.id for check in CHECKS for r in check.requirements)
    cluster = Cluster("111111111111", "us-east-1", "c", "arn:aws:rds:us-east-1:111111111111:cluster:c", "available", False, None, None)
    evaluation = Evaluation("neptune_cluster_storage_encrypted", Status.FAILED, "HIGH", "111111111111", "us-east-1",
                            cluster.resource_type, "c", cluster.arn, None, "not encrypted")
    finding = asff.build(evaluation, cluster, "aws", "2026-11-24T00:00:00Z", None, {"team": "orders"})
    assert finding["FindingProviderFields"] == {"Severity": {"Label": "HIGH"}, "Types": asff.TYPES}
    assert finding["ProductFields"]["neptune-guard/SecurityHubControl"] == "Neptune.1"
    assert finding["Resources"][0]["Tags"] == {"team": "orders"}
