"""Approval marks: the tags that say what a verified approval covers, written by the approval endpoint alone.

The remediation role may change or delete a customer's resource only when it carries one of these marks naming
a remediation execution (stacks/member_roles.py). So that the role cannot grant itself that power, it cannot
write them: a member role of their own (MARKS_ROLE), which only the approval endpoint's role may assume, writes
them, and the endpoint does so only after its checks (a person on call, not the requester, approving the stage
the execution waits for). The marks name the resources the execution's own plan names, and only while they are
still those resources (the same DbClusterResourceId, the same ARN) and no other execution holds them.

| stage approved | mark | on | lets the remediation role |
| --- | --- | --- | --- |
| snapshot | `cutover` | the original cluster, its instances, its custom endpoints | snapshot it; later rename, stop, move the endpoints |
| re-encrypt | `re-encrypt-approved-by` | the original snapshot | copy it under the key, or restore it into a temporary cluster |
| decommission | `decommission-approved-by` | the retired original and its instances | delete them |
| delete-original | `replace-approved-by` | the original snapshot, and its re-encrypted copy | delete the original; share the copy |
"""

from __future__ import annotations

import boto3

from neptune_guard import aws
from neptune_guard.remediate.resources import (
    NotOurs,
    custom_endpoints,
    describe_cluster,
    describe_snapshot,
    instances_in,
    planned_snapshot,
    tags_of,
    take_off,
)
from neptune_guard.tags import (
    APPROVAL_MARKS,
    CREATED_BY,
    CUTOVER,
    DECOMMISSION_APPROVED_BY,
    REENCRYPT_APPROVED_BY,
    REPLACE_APPROVED_BY,
    RETIRED_BY,
)

MARKS_ROLE = "NeptuneGuardApprovalMarks"

# What the marks role may do, as data (stacks/member_roles.py grants exactly these).
PERMISSIONS = {
    "read": ["rds:DescribeDBClusters", "rds:DescribeDBInstances", "rds:DescribeDBClusterEndpoints",
             "rds:DescribeDBClusterSnapshots", "rds:ListTagsForResource"],
    "mark": ["rds:AddTagsToResource"],
    "take back": ["rds:RemoveTagsFromResource"],
}


def _cluster_and_members(neptune, cluster_id: str, resource_id: str) -> tuple[dict, list[dict]]:
    cluster = describe_cluster(neptune, cluster_id)
    if cluster is None or cluster["DbClusterResourceId"] != resource_id:
        raise NotOurs(f"{cluster_id} is no longer the cluster that was planned ({resource_id})")
    return cluster, list(instances_in(neptune, [cluster_id]).values())


def _snapshot_stage(neptune, plan: dict, execution: str) -> list[str]:
    cluster, instances = _cluster_and_members(neptune, plan["cluster_id"], plan["cluster_resource_id"])
    tags = tags_of(neptune, cluster["DBClusterArn"])
    holder = tags.get(CUTOVER) or tags.get(RETIRED_BY) or tags.get(CREATED_BY)
    if holder not in (None, execution):
        raise NotOurs(f"{plan['cluster_id']} is already part of remediation {holder}")
    if sorted(i["DBInstanceIdentifier"] for i in instances) != sorted(i["id"] for i in plan["instances"]):
        raise NotOurs(f"the instances of {plan['cluster_id']} changed since the plan: approve a new plan")
    endpoints = custom_endpoints(neptune, plan["cluster_id"])
    if sorted(e["id"] for e in endpoints) != sorted(e["id"] for e in plan.get("custom_endpoints", [])):
        raise NotOurs(f"the custom endpoints of {plan['cluster_id']} changed since the plan: approve a new plan")
    return [cluster["DBClusterArn"], *(i["DBInstanceArn"] for i in instances), *(e["arn"] for e in endpoints)]


def _decommission_stage(neptune, plan: dict, execution: str) -> list[str]:
    cluster, instances = _cluster_and_members(neptune, plan["retired_cluster_id"], plan["cluster_resource_id"])
    if tags_of(neptune, cluster["DBClusterArn"]).get(CUTOVER) != execution:
        raise NotOurs(f"{plan['retired_cluster_id']} is not the original this execution retired")
    return [cluster["DBClusterArn"], *(i["DBInstanceArn"] for i in instances)]


def _re_encrypt_stage(neptune, plan: dict, execution: str) -> list[str]:
    original = planned_snapshot(neptune, plan)
    if original is None:
        raise NotOurs(f"{plan['snapshot_id']} is gone: nothing to re-encrypt")
    tags = tags_of(neptune, original["DBClusterSnapshotArn"])
    holder = next((tags[k] for k in (*APPROVAL_MARKS, CREATED_BY) if tags.get(k, execution) != execution), None)
    if holder is not None:
        raise NotOurs(f"{plan['snapshot_id']} is already part of remediation {holder}")
    return [original["DBClusterSnapshotArn"]]


def _delete_original_stage(neptune, plan: dict, execution: str) -> list[str]:
    new = describe_snapshot(neptune, plan["new_snapshot_id"])
    if new is None or tags_of(neptune, new["DBClusterSnapshotArn"]).get(CREATED_BY) != execution:
        raise NotOurs(f"{plan['new_snapshot_id']} is not the snapshot this execution made")
    original = planned_snapshot(neptune, plan)
    return [new["DBClusterSnapshotArn"], *([original["DBClusterSnapshotArn"]] if original else [])]


STAGES = {  # stage -> (mark, the resources it covers); a stage not listed (cutover) needs no new mark
    "snapshot": (CUTOVER, _snapshot_stage),
    "re-encrypt": (REENCRYPT_APPROVED_BY, _re_encrypt_stage),
    "decommission": (DECOMMISSION_APPROVED_BY, _decommission_stage),
    "delete-original": (REPLACE_APPROVED_BY, _delete_original_stage),
}


def _marks_client(session: boto3.Session, plan: dict):
    member = aws.assume_role(session, plan["account_id"], MARKS_ROLE, plan["region"], "neptune-guard-approval")
    return member.client("neptune", region_name=plan["region"], config=aws.CLIENT_CONFIG)


def mark(session: boto3.Session, stage: str, execution: str, plan: dict) -> list[str]:
    """Write the approved stage's mark on what the plan names, as the marks role of the plan's account; the ARNs
    marked. Raises NotOurs when the resources are no longer the planned ones (nothing is marked then)."""
    if stage not in STAGES:
        return []
    key, covered = STAGES[stage]
    neptune = _marks_client(session, plan)
    arns = covered(neptune, plan, execution)
    for arn in arns:
        neptune.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": key, "Value": execution}])
    return arns


def take_back(session: boto3.Session, stage: str, execution: str, plan: dict, arns: list[str]) -> list[str]:
    """Remove the stage's mark naming this execution from what `mark` marked: the approval did not reach the execution
    (it was answered or timed out meanwhile), and a mark left behind would outlive it, holding the resource."""
    if not arns:
        return []
    return take_off(_marks_client(session, plan), arns, (STAGES[stage][0],), execution)
