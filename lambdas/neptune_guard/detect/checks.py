"""The checks: each a small pure function over a typed record, with its metadata beside it.

A check returns None when it does not apply to a resource (for example the key-state check on a
cluster that is not on a customer-managed key), so "not applicable" never shows up as PASSED.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from botocore.utils import ArnParser, InvalidArnException

from neptune_guard.models import (
    AWS_OWNED_KEY,
    CLUSTER,
    CLUSTER_SNAPSHOT,
    GRAPH,
    GRAPH_SNAPSHOT,
    Evaluation,
    KeyInfo,
    KeyManager,
    Resource,
    Status,
)

CLUSTER_WORKFLOW = "NeptuneGuardClusterRemediation"
SNAPSHOT_WORKFLOW = "NeptuneGuardSnapshotRemediation"
UNUSABLE_KEY_STATES = frozenset({"Disabled", "PendingDeletion"})


@dataclass(frozen=True)
class Requirement:
    """A framework requirement a check supports, with the document that maps it (ASFF RelatedRequirements)."""

    id: str
    source: str


SECURITY_HUB_NEPTUNE_CONTROLS = "https://docs.aws.amazon.com/securityhub/latest/userguide/neptune-controls.html"
# Security Hub maps its own Neptune.1 (clusters) and Neptune.6 (snapshots) encryption controls to these NIST
# SP 800-53 r5 controls; the key-management control SC-12 applies to who controls the key (a CMK).
AT_REST = (
    Requirement("NIST.800-53.r5 SC-28", SECURITY_HUB_NEPTUNE_CONTROLS),
    Requirement("NIST.800-53.r5 SC-28(1)", SECURITY_HUB_NEPTUNE_CONTROLS),
    Requirement("NIST.800-53.r5 SC-13", SECURITY_HUB_NEPTUNE_CONTROLS),
)
NIST_800_53 = "https://csrc.nist.gov/pubs/sp/800/53/r5/upd1/final"
KEY_MANAGEMENT = AT_REST + (Requirement("NIST.800-53.r5 SC-12", NIST_800_53),)
# Security Hub has no Neptune Analytics control to borrow a mapping from: the key-management and at-rest controls.
GRAPH_KEY_MANAGEMENT = (Requirement("NIST.800-53.r5 SC-12", NIST_800_53), Requirement("NIST.800-53.r5 SC-28", NIST_800_53))


@dataclass(frozen=True)
class Outcome:
    passed: bool
    message: str
    severity: str | None = None  # overrides the check's severity for this finding


@dataclass(frozen=True)
class Check:
    id: str
    resource_type: str
    title: str
    severity: str
    description: str
    remediation: str
    requirements: tuple[Requirement, ...]
    evaluate: Callable[[Resource], Outcome | None]
    workflow: str | None  # the state machine that fixes a failure, if re-encryption is the fix
    remediation_url: str  # this check's own page
    security_hub_control: str | None = None  # Security Hub's own control on the same question, if any


def _kind(resource: Resource) -> str:
    return "cluster" if resource.resource_type == CLUSTER else "cluster snapshot"


def _storage_encrypted(resource: Resource) -> Outcome:
    if resource.storage_encrypted:
        return Outcome(True, f"Neptune {_kind(resource)} {resource.identifier} is encrypted at rest.")
    shared = _shared_in(resource) if resource.resource_type == CLUSTER_SNAPSHOT else ""
    return Outcome(False, f"Neptune {_kind(resource)} {resource.identifier} is not encrypted at rest.{shared}")


def _shared_in(resource: Resource) -> str:
    """For a snapshot another account shared with this one: whose it is, and that only its owner can re-encrypt it."""
    try:
        owner = ArnParser().parse_arn(resource.arn)["account"]
    except InvalidArnException:
        return ""
    if owner == resource.account_id:
        return ""
    return f" It is shared with this account by {owner}: only its owner can re-encrypt it."


def _uses_cmk(resource: Resource) -> Outcome | None:
    outcome = _uses_cmk_verdict(resource)
    if outcome is None or outcome.passed or resource.resource_type != CLUSTER_SNAPSHOT:
        return outcome
    return Outcome(outcome.passed, outcome.message + _shared_in(resource), outcome.severity)


def _uses_cmk_verdict(resource: Resource) -> Outcome | None:
    name = f"Neptune {_kind(resource)} {resource.identifier}"
    if not resource.storage_encrypted:
        return Outcome(False, f"{name} is not encrypted, so it is not under a customer-managed key.", "HIGH")
    return _key_verdict(name, resource.key, " (aws/rds)")


def _key_verdict(name: str, key: KeyInfo | None, aws_managed_note: str = "") -> Outcome | None:
    """Whose key an encrypted resource is under, as KMS classified it."""
    if key is None or key.manager is None:
        return None  # the key could not be classified; the lookup failure is reported as a scan error
    if key.manager is KeyManager.AWS:
        return Outcome(False, f"{name} is encrypted with the AWS-managed key {key.arn}{aws_managed_note}, not a customer-managed key.")
    unknown_state = f" (key state unknown: {key.lookup_error})" if key.lookup_error else ""
    return Outcome(True, f"{name} is encrypted with the customer-managed key {key.arn}{unknown_state}.")


def _cmk_enabled(resource: Resource) -> Outcome | None:
    key = resource.key
    if not resource.storage_encrypted or key is None or not key.is_customer_managed or key.state is None:
        return None
    name = f"Neptune cluster {resource.identifier}"
    if key.state in UNUSABLE_KEY_STATES:
        return Outcome(
            False,
            f"The customer-managed key {key.arn} of {name} is {key.state}: the cluster will lose access to its data.",
        )
    return Outcome(True, f"The customer-managed key {key.arn} of {name} is {key.state}.")


def _graph_uses_cmk(resource: Resource) -> Outcome | None:
    """Neptune Analytics encrypts every graph; the question is whose key. kmsKeyIdentifier AWS_OWNED_KEY (what a graph
    created without a key reports) is an AWS owned key: not in the account, not visible to KMS, its use not in the
    account's CloudTrail, and no policy of the customer's can revoke it."""
    kind = "Neptune Analytics graph" if resource.resource_type == GRAPH else "Neptune Analytics graph snapshot"
    name = f"{kind} {resource.identifier}"
    if resource.kms_key_id in (None, AWS_OWNED_KEY):
        return Outcome(False, f"{name} is encrypted with an AWS owned key (kmsKeyIdentifier {resource.kms_key_id or 'not reported'}), "
                              "not a customer-managed key: the key is not in your account, and its use cannot be audited or revoked by you.")
    return _key_verdict(name, resource.key)


# A graph's key is fixed at CreateGraph / CreateGraphUsingImportTask, and RestoreGraphFromSnapshot takes no key: only an
# export and an import into a new graph change it, which AWS does not document as lossless, so it is not automated.
_GRAPH_REKEY = (
    "The key is fixed when the graph is created; RestoreGraphFromSnapshot takes no key. Stop writes, export the graph "
    "to S3 (StartExportTask, under a CMK), create a new graph from it with CreateGraphUsingImportTask and "
    "kmsKeyIdentifier set to a CMK, recreate replicas, private endpoints, tags and IAM policies for the new graph id, "
    "move clients to its endpoint, verify, then delete the old graph and its snapshots."
)

_RESTORE_FIX = (
    "Encryption cannot be changed in place. Snapshot the cluster, restore the snapshot with a customer-managed "
    "KMS key, recreate the instances and cut the application over (Neptune Guard's remediation workflow does "
    "this with on-call approval)."
)

CHECKS: tuple[Check, ...] = (
    Check(
        id="neptune_cluster_storage_encrypted",
        resource_type=CLUSTER,
        title="Neptune DB clusters should be encrypted at rest",
        severity="HIGH",
        description="An unencrypted Neptune cluster stores its graph, logs, backups and snapshots in the clear.",
        remediation=_RESTORE_FIX,
        requirements=AT_REST,
        evaluate=_storage_encrypted,
        workflow=CLUSTER_WORKFLOW,
        remediation_url="https://docs.aws.amazon.com/neptune/latest/userguide/encrypt.html",
        security_hub_control="Neptune.1",
    ),
    Check(
        id="neptune_cluster_uses_cmk",
        resource_type=CLUSTER,
        title="Neptune DB clusters should be encrypted with a customer-managed KMS key",
        severity="MEDIUM",
        description=(
            "The AWS-managed aws/rds key cannot be rotated on your schedule, its policy cannot be changed, and it "
            "cannot be shared across accounts; a customer-managed key gives control over access and revocation."
        ),
        remediation=_RESTORE_FIX,
        requirements=KEY_MANAGEMENT,
        evaluate=_uses_cmk,
        workflow=CLUSTER_WORKFLOW,
        remediation_url="https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html#customer-mgn-key",
    ),
    Check(
        id="neptune_cluster_cmk_enabled",
        resource_type=CLUSTER,
        title="The customer-managed KMS key of a Neptune DB cluster should be usable",
        severity="CRITICAL",
        description=(
            "When a cluster's key is disabled or pending deletion, Neptune loses access to the data: the cluster "
            "goes to inaccessible-encryption-credentials-recoverable and, after 7 days, to a terminal state."
        ),
        remediation=(
            "Re-enable the key (kms:EnableKey) or cancel its deletion (kms:CancelKeyDeletion) before the cluster "
            "becomes unrecoverable; then review who disabled it."
        ),
        requirements=KEY_MANAGEMENT,
        evaluate=_cmk_enabled,
        workflow=None,
        remediation_url="https://docs.aws.amazon.com/kms/latest/developerguide/deleting-keys.html",
    ),
    Check(
        id="neptune_cluster_snapshot_storage_encrypted",
        resource_type=CLUSTER_SNAPSHOT,
        title="Neptune DB cluster snapshots should be encrypted at rest",
        severity="HIGH",
        description="An unencrypted snapshot holds a full copy of the graph in the clear and can be shared or restored.",
        remediation=(
            "An unencrypted snapshot cannot be encrypted by copying: restore it with a customer-managed key, "
            "snapshot the new cluster, delete the temporary cluster and then the original snapshot."
        ),
        requirements=AT_REST,
        evaluate=_storage_encrypted,
        workflow=SNAPSHOT_WORKFLOW,
        remediation_url="https://docs.aws.amazon.com/neptune/latest/userguide/backup-restore-restore-snapshot.html",
        security_hub_control="Neptune.6",
    ),
    Check(
        id="neptune_cluster_snapshot_uses_cmk",
        resource_type=CLUSTER_SNAPSHOT,
        title="Neptune DB cluster snapshots should be encrypted with a customer-managed KMS key",
        severity="MEDIUM",
        description="A snapshot under the AWS-managed aws/rds key cannot be shared across accounts or revoked by key policy.",
        remediation="Copy the snapshot with a customer-managed KmsKeyId, verify the copy, then delete the original.",
        requirements=KEY_MANAGEMENT,
        evaluate=_uses_cmk,
        workflow=SNAPSHOT_WORKFLOW,
        remediation_url="https://docs.aws.amazon.com/neptune/latest/apiref/API_CopyDBClusterSnapshot.html",
    ),
    Check(
        id="neptune_graph_uses_cmk",
        resource_type=GRAPH,
        title="Neptune Analytics graphs should be encrypted with a customer-managed KMS key",
        severity="MEDIUM",
        description=(
            "A graph created without kmsKeyIdentifier is encrypted with an AWS owned key: you cannot see it in KMS, "
            "audit its use in CloudTrail, or revoke access to the data by key policy."
        ),
        remediation=_GRAPH_REKEY,
        requirements=GRAPH_KEY_MANAGEMENT,
        evaluate=_graph_uses_cmk,
        workflow=None,
        remediation_url="https://docs.aws.amazon.com/neptune-analytics/latest/userguide/exporting-data.html",
    ),
    Check(
        id="neptune_graph_snapshot_uses_cmk",
        resource_type=GRAPH_SNAPSHOT,
        title="Neptune Analytics graph snapshots should be encrypted with a customer-managed KMS key",
        severity="MEDIUM",
        description="A graph snapshot is under its graph's key, and a graph restored from it stays under that key.",
        remediation=(
            "A snapshot cannot be re-keyed: a restore keeps its key. Re-key the graph by export and import "
            "(neptune_graph_uses_cmk), snapshot the new graph, then delete this snapshot; to keep its point in time, "
            "restore it to a temporary graph and re-key that one the same way."
        ),
        requirements=GRAPH_KEY_MANAGEMENT,
        evaluate=_graph_uses_cmk,
        workflow=None,
        remediation_url="https://docs.aws.amazon.com/neptune-analytics/latest/apiref/API_RestoreGraphFromSnapshot.html",
    ),
)

CHECKS_BY_ID = {check.id: check for check in CHECKS}


def evaluate(resource: Resource) -> list[Evaluation]:
    """Every applicable check's verdict on one resource."""
    evaluations = []
    for check in CHECKS:
        if check.resource_type != resource.resource_type:
            continue
        outcome = check.evaluate(resource)
        if outcome is None:
            continue
        evaluations.append(
            Evaluation(
                check_id=check.id,
                status=Status.PASSED if outcome.passed else Status.FAILED,
                severity="INFORMATIONAL" if outcome.passed else (outcome.severity or check.severity),
                account_id=resource.account_id,
                region=resource.region,
                resource_type=resource.resource_type,
                resource_id=resource.identifier,
                resource_arn=resource.arn,
                kms_key_id=resource.kms_key_id,
                message=outcome.message,
            )
        )
    return evaluations
