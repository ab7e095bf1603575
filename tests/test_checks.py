"""Each check, both ways, as a pure function over records."""

import pytest

from neptune_guard.detect import checks
from neptune_guard.models import AWS_OWNED_KEY, Cluster, ClusterSnapshot, Graph, GraphSnapshot, KeyInfo, KeyManager, Status

KEY_ARN = "arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def cluster(encrypted=True, manager=KeyManager.CUSTOMER, state="Enabled", lookup_error=None):
    key = KeyInfo(KEY_ARN, manager, state, lookup_error) if encrypted else None
    return Cluster(
        account_id="111111111111", region="us-east-1", identifier="graph", status="available",
        arn="arn:aws:rds:us-east-1:111111111111:cluster:graph", storage_encrypted=encrypted,
        kms_key_id=KEY_ARN if encrypted else None, key=key,
    )


def snapshot(encrypted=True, manager=KeyManager.CUSTOMER):
    return ClusterSnapshot(
        account_id="111111111111", region="us-east-1", identifier="snap", status="available",
        arn="arn:aws:rds:us-east-1:111111111111:cluster-snapshot:snap", storage_encrypted=encrypted,
        kms_key_id=KEY_ARN if encrypted else None, key=KeyInfo(KEY_ARN, manager, "Enabled") if encrypted else None,
        cluster_identifier="graph", snapshot_type="manual",
    )


def verdicts(resource):
    return {e.check_id: (e.status, e.severity) for e in checks.evaluate(resource)}


def test_registry_has_exactly_the_documented_checks_with_metadata():
    assert [c.id for c in checks.CHECKS] == [
        "neptune_cluster_storage_encrypted",
        "neptune_cluster_uses_cmk",
        "neptune_cluster_cmk_enabled",
        "neptune_cluster_snapshot_storage_encrypted",
        "neptune_cluster_snapshot_uses_cmk",
        "neptune_graph_uses_cmk",
        "neptune_graph_snapshot_uses_cmk",
    ]
    for check in checks.CHECKS:
        assert check.title and check.remediation and check.requirements and check.remediation_url.startswith("https://")


def test_cluster_on_enabled_cmk_passes_every_check():
    assert verdicts(cluster()) == {
        "neptune_cluster_storage_encrypted": (Status.PASSED, "INFORMATIONAL"),
        "neptune_cluster_uses_cmk": (Status.PASSED, "INFORMATIONAL"),
        "neptune_cluster_cmk_enabled": (Status.PASSED, "INFORMATIONAL"),
    }


def test_unencrypted_cluster_fails_encryption_and_cmk_as_high_and_has_no_key_check():
    assert verdicts(cluster(encrypted=False)) == {
        "neptune_cluster_storage_encrypted": (Status.FAILED, "HIGH"),
        "neptune_cluster_uses_cmk": (Status.FAILED, "HIGH"),
    }


def test_cluster_on_aws_managed_key_fails_cmk_as_medium_and_has_no_key_state_check():
    assert verdicts(cluster(manager=KeyManager.AWS)) == {
        "neptune_cluster_storage_encrypted": (Status.PASSED, "INFORMATIONAL"),
        "neptune_cluster_uses_cmk": (Status.FAILED, "MEDIUM"),
    }


@pytest.mark.parametrize("state", ["Disabled", "PendingDeletion"])
def test_cmk_that_cannot_decrypt_is_critical(state):
    evaluation = {e.check_id: e for e in checks.evaluate(cluster(state=state))}["neptune_cluster_cmk_enabled"]
    assert (evaluation.status, evaluation.severity) == (Status.FAILED, "CRITICAL")
    assert state in evaluation.message and KEY_ARN in evaluation.message


def test_unclassified_key_is_not_guessed():
    assert verdicts(cluster(manager=None, state=None, lookup_error="AccessDenied")) == {
        "neptune_cluster_storage_encrypted": (Status.PASSED, "INFORMATIONAL"),
    }


def test_cross_account_cmk_with_unknown_state_passes_cmk_and_skips_key_state():
    result = verdicts(cluster(state=None, lookup_error="AccessDeniedException"))
    assert result["neptune_cluster_uses_cmk"] == (Status.PASSED, "INFORMATIONAL")
    assert "neptune_cluster_cmk_enabled" not in result


def test_snapshot_checks_both_ways():
    assert verdicts(snapshot()) == {
        "neptune_cluster_snapshot_storage_encrypted": (Status.PASSED, "INFORMATIONAL"),
        "neptune_cluster_snapshot_uses_cmk": (Status.PASSED, "INFORMATIONAL"),
    }
    assert verdicts(snapshot(manager=KeyManager.AWS))["neptune_cluster_snapshot_uses_cmk"] == (Status.FAILED, "MEDIUM")
    assert verdicts(snapshot(encrypted=False)) == {
        "neptune_cluster_snapshot_storage_encrypted": (Status.FAILED, "HIGH"),
        "neptune_cluster_snapshot_uses_cmk": (Status.FAILED, "HIGH"),
    }


def graph(kms_key_id=AWS_OWNED_KEY, manager=None, lookup_error=None):
    key = KeyInfo(kms_key_id, manager, "Enabled" if manager else None, lookup_error) if kms_key_id != AWS_OWNED_KEY else None
    return Graph(account_id="111111111111", region="us-east-1", identifier="recs", graph_id="g-0123456789",
                 arn="arn:aws:neptune-graph:us-east-1:111111111111:graph/g-0123456789", status="AVAILABLE",
                 kms_key_id=kms_key_id, key=key)


def graph_snapshot(kms_key_id=AWS_OWNED_KEY, manager=None):
    return GraphSnapshot(account_id="111111111111", region="us-east-1", identifier="recs-weekly", snapshot_id="gs-0123456789",
                         arn="arn:aws:neptune-graph:us-east-1:111111111111:graph-snapshot/gs-0123456789", status="AVAILABLE",
                         kms_key_id=kms_key_id, key=KeyInfo(kms_key_id, manager, "Enabled") if manager else None,
                         source_graph_id="g-0123456789")


def test_graph_on_the_aws_owned_key_fails_and_says_so():
    evaluations = checks.evaluate(graph())
    assert [(e.check_id, e.status, e.severity) for e in evaluations] == [("neptune_graph_uses_cmk", Status.FAILED, "MEDIUM")]
    assert "AWS owned key (kmsKeyIdentifier AWS_OWNED_KEY)" in evaluations[0].message
    assert evaluations[0].kms_key_id == AWS_OWNED_KEY and evaluations[0].resource_type == "NeptuneAnalyticsGraph"


def test_graph_key_is_judged_by_its_manager_and_an_unclassified_key_is_not_guessed():
    assert verdicts(graph(KEY_ARN, KeyManager.CUSTOMER)) == {"neptune_graph_uses_cmk": (Status.PASSED, "INFORMATIONAL")}
    assert verdicts(graph(KEY_ARN, KeyManager.AWS)) == {"neptune_graph_uses_cmk": (Status.FAILED, "MEDIUM")}
    assert verdicts(graph(KEY_ARN, None, lookup_error="AccessDenied")) == {}
    assert verdicts(graph(None)) == {"neptune_graph_uses_cmk": (Status.FAILED, "MEDIUM")}  # no key reported: not a CMK


def test_graph_snapshot_checks_both_ways_and_no_cluster_check_applies_to_graphs():
    assert verdicts(graph_snapshot()) == {"neptune_graph_snapshot_uses_cmk": (Status.FAILED, "MEDIUM")}
    assert verdicts(graph_snapshot(KEY_ARN, KeyManager.CUSTOMER)) == {"neptune_graph_snapshot_uses_cmk": (Status.PASSED, "INFORMATIONAL")}


def test_graph_findings_have_no_workflow_and_their_remediation_names_the_path_aws_offers():
    for check_id in ("neptune_graph_uses_cmk", "neptune_graph_snapshot_uses_cmk"):
        check = checks.CHECKS_BY_ID[check_id]
        assert check.workflow is None and len(check.remediation) <= 512
    assert "CreateGraphUsingImportTask" in checks.CHECKS_BY_ID["neptune_graph_uses_cmk"].remediation
