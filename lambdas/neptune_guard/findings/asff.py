"""Building AWS Security Finding Format documents from evaluations: pure, no I/O."""

from __future__ import annotations

from neptune_guard import __version__
from neptune_guard.detect.checks import CHECKS_BY_ID
from neptune_guard.models import (
    CLUSTER,
    CLUSTER_SNAPSHOT,
    GRAPH,
    GRAPH_SNAPSHOT,
    Cluster,
    ClusterSnapshot,
    Evaluation,
    Graph,
    GraphSnapshot,
    Resource,
    Status,
)
from neptune_guard.tags import FINDING_REMEDIATION_FIELDS

GENERATOR_PREFIX = "neptune-guard/"
TYPES = ["Software and Configuration Checks/AWS Security Best Practices", "Effects/Data Exposure"]


def product_arn(partition: str, region: str, account_id: str) -> str:
    """A custom integration imports under the account's own default product."""
    return f"arn:{partition}:securityhub:{region}:{account_id}:product/{account_id}/default"


def finding_id(resource_arn: str, check_id: str) -> str:
    """Deterministic: one finding per resource and check, across runs."""
    return f"{resource_arn}/{GENERATOR_PREFIX}{check_id}"


# ASFF has no Neptune Analytics resource type: such a resource is Type "Other", its details in Details.Other, a map of
# at most 50 strings, keys under 128 characters and values under 1,024.
# https://docs.aws.amazon.com/securityhub/latest/userguide/asff-resourcedetails-other.html
OTHER = "Other"
KINDS = {CLUSTER: "cluster", CLUSTER_SNAPSHOT: "cluster snapshot", GRAPH: "Neptune Analytics graph",
         GRAPH_SNAPSHOT: "Neptune Analytics graph snapshot"}


def asff_type(resource: Resource) -> str:
    return resource.resource_type if isinstance(resource, (Cluster, ClusterSnapshot)) else OTHER


def _other(resource: Graph | GraphSnapshot) -> dict:
    if isinstance(resource, Graph):
        fields = {"ResourceType": "AWS::NeptuneGraph::Graph", "GraphName": resource.identifier, "GraphId": resource.graph_id}
    else:
        fields = {"ResourceType": "AWS::NeptuneGraph::GraphSnapshot", "SnapshotName": resource.identifier,
                  "SnapshotId": resource.snapshot_id, "SourceGraphId": resource.source_graph_id}
    fields |= {"Status": resource.status, "KmsKeyIdentifier": resource.kms_key_id}
    return {"Other": {key: str(value)[:1023] for key, value in fields.items() if value}}


def _details(resource: Resource) -> dict:
    if isinstance(resource, (Graph, GraphSnapshot)):
        return _other(resource)
    common = {"StorageEncrypted": resource.storage_encrypted, "Engine": resource.engine, "Status": resource.status}
    if resource.kms_key_id:
        common["KmsKeyId"] = resource.kms_key_id
    if isinstance(resource, Cluster):
        details = {"DbClusterIdentifier": resource.identifier, **common}
        if resource.engine_version:
            details["EngineVersion"] = resource.engine_version
        return {"AwsRdsDbCluster": details}
    assert isinstance(resource, ClusterSnapshot)
    return {
        "AwsRdsDbClusterSnapshot": {
            "DbClusterSnapshotIdentifier": resource.identifier,
            "DbClusterIdentifier": resource.cluster_identifier,
            "SnapshotType": resource.snapshot_type,
            **common,
        }
    }


def remediation_fields(existing: dict | None) -> dict[str, str]:
    """What a remediation said on the existing finding (tags.FINDING_REMEDIATION_FIELDS), to keep."""
    return {k: v for k, v in ((existing or {}).get("ProductFields") or {}).items() if k in FINDING_REMEDIATION_FIELDS}


def build(evaluation: Evaluation, resource: Resource, partition: str, now: str, first_seen: str | None,
          tags: dict[str, str] | None = None, remediation: dict[str, str] | None = None) -> dict:
    """The ASFF finding for one evaluation. `first_seen` is the CreatedAt of an existing finding, kept; `tags`, the
    resource's tags where the scan read them; `remediation`, what a remediation said on the existing finding, kept."""
    check = CHECKS_BY_ID[evaluation.check_id]
    kind = KINDS[resource.resource_type]
    key = f"KMS key: {resource.kms_key_id}." if resource.kms_key_id else "KMS key: none (not encrypted)."
    created = first_seen or now
    return {
        "SchemaVersion": "2018-10-08",
        "Id": finding_id(resource.arn, check.id),
        "ProductArn": product_arn(partition, resource.region, resource.account_id),
        "ProductName": "Neptune Guard",
        "CompanyName": "Neptune Guard",
        "GeneratorId": f"{GENERATOR_PREFIX}{check.id}",
        "AwsAccountId": resource.account_id,
        "Region": resource.region,
        "Types": TYPES,
        "CreatedAt": created,
        "FirstObservedAt": created,
        "LastObservedAt": now,
        "UpdatedAt": now,
        "Severity": {"Label": evaluation.severity},
        "FindingProviderFields": {"Severity": {"Label": evaluation.severity}, "Types": TYPES},
        "Title": f"{check.title} ({kind} {resource.identifier})"[:256],
        "Description": ((f"Kept on purpose: {evaluation.retained}. " if evaluation.retained else "")
                        + f"{evaluation.message} {key} {check.description}")[:1024],
        "Remediation": {"Recommendation": {"Text": check.remediation[:512], "Url": check.remediation_url}},
        "Compliance": {"Status": evaluation.status.value, "RelatedRequirements": [r.id for r in check.requirements]},
        "ProductFields": {
            "neptune-guard/CheckId": check.id,
            "neptune-guard/Version": __version__,
            **({"neptune-guard/SecurityHubControl": check.security_hub_control} if check.security_hub_control else {}),
            **({"neptune-guard/Retained": evaluation.retained[:2048]} if evaluation.retained else {}),
            "neptune-guard/Remediation": check.workflow if evaluation.status is Status.FAILED and check.workflow else "none",
            **(remediation or {}),
        },
        "Resources": [
            {
                "Type": asff_type(resource),
                "Id": resource.arn,
                "Partition": partition,
                "Region": resource.region,
                "Details": _details(resource),
                **({"Tags": dict(list(tags.items())[:50])} if tags else {}),
            }
        ],
        "RecordState": "ACTIVE",
    }


def archived(existing: dict, now: str) -> dict:
    """The same finding, re-imported ARCHIVED: its resource was not seen in a complete scan."""
    return {**existing, "RecordState": "ARCHIVED", "UpdatedAt": now}
