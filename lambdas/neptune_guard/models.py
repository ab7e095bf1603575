"""Typed records the checks work on, and what a scan produces."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum

HUB_NOT_ENABLED = "Security Hub is not enabled"  # a publish error that is the account-region's setting, not a fault
NOT_REACHED = "not scanned: the run reached its time limit before this account-region started"
CLUSTER = "AwsRdsDbCluster"
CLUSTER_SNAPSHOT = "AwsRdsDbClusterSnapshot"
# ASFF has no Neptune Analytics resource type: their findings are of Type "Other" (asff.py). These name the kinds.
GRAPH = "NeptuneAnalyticsGraph"
GRAPH_SNAPSHOT = "NeptuneAnalyticsGraphSnapshot"
# What neptune-graph reports as kmsKeyIdentifier for a graph created without one: an AWS owned key, which is not in the
# account (KMS cannot describe it). https://docs.aws.amazon.com/neptune-analytics/latest/userguide/monitoring-cloudtrail-understanding.html
AWS_OWNED_KEY = "AWS_OWNED_KEY"


class KeyManager(str, Enum):
    AWS = "AWS"
    CUSTOMER = "CUSTOMER"


@dataclass(frozen=True)
class KeyInfo:
    """What KMS told us about a key (or why it could not tell)."""

    arn: str
    manager: KeyManager | None
    state: str | None = None
    lookup_error: str | None = None

    @property
    def is_customer_managed(self) -> bool:
        return self.manager is KeyManager.CUSTOMER


@dataclass(frozen=True)
class Cluster:
    account_id: str
    region: str
    identifier: str
    arn: str
    status: str
    storage_encrypted: bool
    kms_key_id: str | None
    key: KeyInfo | None
    engine: str = "neptune"
    engine_version: str | None = None
    tags: dict[str, str] | None = field(default=None, compare=False)  # None: not read with the resource
    resource_type: str = field(default=CLUSTER, init=False)


@dataclass(frozen=True)
class ClusterSnapshot:
    account_id: str
    region: str
    identifier: str
    arn: str
    status: str
    storage_encrypted: bool
    kms_key_id: str | None
    key: KeyInfo | None
    cluster_identifier: str
    snapshot_type: str
    engine: str = "neptune"
    tags: dict[str, str] | None = field(default=None, compare=False)  # None: not read with the resource
    resource_type: str = field(default=CLUSTER_SNAPSHOT, init=False)


@dataclass(frozen=True)
class Graph:
    """A Neptune Analytics graph. `kms_key_id` is kmsKeyIdentifier as reported: a key ARN, or AWS_OWNED_KEY."""

    account_id: str
    region: str
    identifier: str  # the graph's name, as clusters are named by their identifier
    graph_id: str
    arn: str
    status: str
    kms_key_id: str | None
    key: KeyInfo | None  # DescribeKey's classification of a key ARN; None for an AWS owned key
    tags: dict[str, str] | None = field(default=None, compare=False)  # ListGraphs carries none: read when needed
    resource_type: str = field(default=GRAPH, init=False)


@dataclass(frozen=True)
class GraphSnapshot:
    account_id: str
    region: str
    identifier: str  # the snapshot's name
    snapshot_id: str
    arn: str
    status: str
    kms_key_id: str | None
    key: KeyInfo | None
    source_graph_id: str
    tags: dict[str, str] | None = field(default=None, compare=False)
    resource_type: str = field(default=GRAPH_SNAPSHOT, init=False)


Resource = Cluster | ClusterSnapshot | Graph | GraphSnapshot


class Status(str, Enum):
    PASSED = "PASSED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class Evaluation:
    check_id: str
    status: Status
    severity: str
    account_id: str
    region: str
    resource_type: str
    resource_id: str
    resource_arn: str
    kms_key_id: str | None
    message: str
    retained: str | None = None  # why a failing resource is kept on purpose: a remediation's original or snapshot

    def to_dict(self) -> dict:
        data = asdict(self)
        data["status"] = self.status.value
        return data


@dataclass(frozen=True)
class ScanError:
    account_id: str
    region: str | None
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class UnitResult:
    """The outcome of one account-region: the unit of work, of fault isolation and of archival."""

    account_id: str
    region: str
    resources: list[Resource] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)
    errors: list[ScanError] = field(default_factory=list)
    publish_errors: list[ScanError] = field(default_factory=list)  # after the scan: they archive nothing
    # Faults that leave some resource types unread (Neptune Analytics denied, say) and the rest complete: reported,
    # and the unread types' findings are neither judged gone nor archived.
    partial_errors: list[ScanError] = field(default_factory=list)
    unread_types: set[str] = field(default_factory=set)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)  # of the failing resources, by ARN

    @property
    def complete(self) -> bool:
        """True when the inventory was read in full, so absence of a resource means it is gone."""
        return not self.errors

    @property
    def read_in_full(self) -> bool:
        """Every resource type read: complete, and no type left unread (Neptune Analytics denied, say)."""
        return self.complete and not self.partial_errors

    @property
    def unpublished(self) -> bool:
        """Findings could not be published for another reason than Security Hub being off in the account-region."""
        return any(not e.message.startswith(HUB_NOT_ENABLED) for e in self.publish_errors)

    @property
    def without_security_hub(self) -> bool:
        return any(e.message.startswith(HUB_NOT_ENABLED) for e in self.publish_errors)


@dataclass
class ScanResult:
    units: list[UnitResult] = field(default_factory=list)
    errors: list[ScanError] = field(default_factory=list)

    @property
    def evaluations(self) -> list[Evaluation]:
        return [e for unit in self.units for e in unit.evaluations]

    @property
    def all_errors(self) -> list[ScanError]:
        return self.errors + [e for unit in self.units for e in unit.errors + unit.partial_errors + unit.publish_errors]

    @property
    def scanned_units(self) -> list[UnitResult]:
        return [unit for unit in self.units if unit.complete]

    def to_dict(self) -> dict:
        return {
            "evaluations": [e.to_dict() for e in self.evaluations],
            "errors": [e.to_dict() for e in self.all_errors],
        }
