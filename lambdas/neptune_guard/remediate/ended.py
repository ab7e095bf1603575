"""An execution that ended with approval marks still on the customer's resources (stopped by hand, at Step Functions'
one-year limit, after a rollback or a release that failed): with no execution left to use them, the marks would go on
letting the remediation role snapshot, stop, rename or delete those resources. Step Functions announces every end;
this takes each mark naming the execution off what its plan names, as they are now.

Taking a mark off only ever takes a power away, and the execution must have ended as Step Functions records it
(guard.read_execution), so an event nobody should have sent changes nothing that should stay."""

from __future__ import annotations

from neptune_guard.remediate.resources import (
    Step,
    custom_endpoints,
    describe_cluster,
    describe_snapshot,
    instances_in,
    planned_snapshot,
    take_off,
)
from neptune_guard.tags import APPROVAL_MARKS

# What releasing needs, as data (the remediation role grants it: ReadNeptune, RemoveOwnershipTagsOnly).
PERMISSIONS = ["rds:DescribeDBClusters", "rds:DescribeDBInstances", "rds:DescribeDBClusterEndpoints", "rds:DescribeDBClusterSnapshots",
               "rds:ListTagsForResource", "rds:RemoveTagsFromResource"]


def marked_by_plan(neptune, plan: dict) -> list[str]:
    """The ARNs an approval of this plan can have marked: the original cluster (under its name or its retired name, while
    it is the planned cluster), its instances and custom endpoints; or the original snapshot and its re-encrypted copy."""
    if plan.get("kind") == "snapshot-plan":
        return [s["DBClusterSnapshotArn"] for s in (planned_snapshot(neptune, plan), describe_snapshot(neptune, plan["new_snapshot_id"])) if s]
    arns = []
    for name in dict.fromkeys((plan["cluster_id"], plan["retired_cluster_id"])):
        cluster = describe_cluster(neptune, name)
        if cluster is not None and cluster["DbClusterResourceId"] == plan["cluster_resource_id"]:
            arns += [cluster["DBClusterArn"], *(i["DBInstanceArn"] for i in instances_in(neptune, [name]).values()),
                     *(e["arn"] for e in custom_endpoints(neptune, name))]
    return arns


def release_marks(step: Step) -> dict:
    """Every approval mark naming the ended execution, off what its plan names; the ARNs changed."""
    if not step.plan:
        return {"released": []}
    return {"released": take_off(step.neptune, marked_by_plan(step.neptune, step.plan), APPROVAL_MARKS, step.execution)}
