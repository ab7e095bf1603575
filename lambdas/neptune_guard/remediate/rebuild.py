"""From the approved original to a verified new cluster under the key: mark, snapshot, restore, settings,
instances, verify. Nothing here touches the production name."""

from __future__ import annotations

from neptune_guard.remediate.resources import (
    NotOurs,
    ResourceNotReady,
    Step,
    VerificationFailed,
    adopt_or_create,
    custom_endpoints,
    describe_cluster,
    describe_snapshot,
    instances_in,
    iso,
    require_available_cluster,
    require_available_snapshot,
    require_ours,
    tags_of,
    take_off,
)
from neptune_guard.tags import CREATED_BY, CUTOVER, RETIRED_BY, created_by


def mark_original(step: Step) -> dict:
    """After the first approval: confirm the original, its instances and its custom endpoints carry this execution's
    cutover mark, which the approval endpoint wrote (approval_marks.py) and which alone lets the remediation role
    snapshot, rename and stop them; and that they are still what was planned."""
    plan, neptune = step.plan, step.neptune
    cluster = describe_cluster(neptune, plan["cluster_id"])
    if cluster is None or cluster["DbClusterResourceId"] != plan["cluster_resource_id"]:
        raise NotOurs(f"{plan['cluster_id']} is no longer the cluster that was planned and approved")
    tags = tags_of(neptune, cluster["DBClusterArn"])
    if tags.get(CUTOVER, step.execution) != step.execution or RETIRED_BY in tags or CREATED_BY in tags:
        raise NotOurs(f"{plan['cluster_id']} is already part of remediation {tags.get(CUTOVER) or tags.get(RETIRED_BY) or tags.get(CREATED_BY)}")
    members = sorted(m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", []))
    if members != sorted(i["id"] for i in plan["instances"]):
        raise NotOurs(f"the instances of {plan['cluster_id']} changed since the plan: {members}")
    endpoints = custom_endpoints(neptune, plan["cluster_id"])
    if sorted(e["id"] for e in endpoints) != sorted(e["id"] for e in plan.get("custom_endpoints", [])):
        raise NotOurs(f"the custom endpoints of {plan['cluster_id']} changed since the plan")
    covered = [cluster["DBClusterArn"], *(i["DBInstanceArn"] for i in instances_in(neptune, [plan["cluster_id"]]).values()),
               *(e["arn"] for e in endpoints)]
    unmarked = [arn for arn in covered if tags_of(neptune, arn).get(CUTOVER) != step.execution]
    if unmarked:
        raise NotOurs(f"the snapshot approval's mark is missing on {', '.join(unmarked)}: approve through the approval endpoint")
    return {"marked": [plan["cluster_id"], *members, *(e["id"] for e in endpoints)]}


def unmark_original(step: Step) -> dict:
    """Nothing was done with the original after all (its writes did not stop): take off the marks the snapshot
    approval put on it for this execution, so that it is free for the next remediation."""
    plan, neptune = step.plan, step.neptune
    cluster = describe_cluster(neptune, plan["cluster_id"])
    if cluster is None or cluster["DbClusterResourceId"] != plan["cluster_resource_id"]:
        return {"unmarked": []}
    covered = [cluster["DBClusterArn"], *(i["DBInstanceArn"] for i in instances_in(neptune, [plan["cluster_id"]]).values()),
               *(e["arn"] for e in custom_endpoints(neptune, plan["cluster_id"]))]
    return {"unmarked": take_off(neptune, covered, (CUTOVER,), step.execution)}


def create_snapshot(step: Step) -> dict:
    plan, neptune = step.plan, step.neptune
    adopt_or_create(neptune, describe_snapshot(neptune, plan["snapshot_id"]), "DBClusterSnapshotArn", step.execution,
                    lambda: neptune.create_db_cluster_snapshot(DBClusterSnapshotIdentifier=plan["snapshot_id"],
                                                               DBClusterIdentifier=plan["cluster_id"], Tags=created_by(step.execution)))
    return {"snapshot_id": plan["snapshot_id"]}


def snapshot_available(step: Step) -> dict:
    plan, neptune = step.plan, step.neptune
    snapshot = require_available_snapshot(neptune, plan["snapshot_id"])
    require_ours(neptune, snapshot, "DBClusterSnapshotArn", step.execution)
    return {"snapshot_id": plan["snapshot_id"], "created_at": iso(snapshot["SnapshotCreateTime"])}


def restore_cluster(step: Step) -> dict:
    plan, neptune = step.plan, step.neptune

    def restore():
        snapshot = describe_snapshot(neptune, plan["snapshot_id"])
        if snapshot is None:
            raise NotOurs(f"the workflow's snapshot {plan['snapshot_id']} is gone")
        require_ours(neptune, snapshot, "DBClusterSnapshotArn", step.execution)
        neptune.restore_db_cluster_from_snapshot(DBClusterIdentifier=plan["new_cluster_id"], SnapshotIdentifier=plan["snapshot_id"],
                                                 Engine="neptune", KmsKeyId=plan["target_key_arn"], **plan["restore"])

    adopt_or_create(neptune, describe_cluster(neptune, plan["new_cluster_id"]), "DBClusterArn", step.execution, restore)
    return {"cluster_id": plan["new_cluster_id"]}


def new_cluster_available(step: Step) -> dict:
    require_available_cluster(step.neptune, step.plan["new_cluster_id"])
    return {"status": "available"}


def apply_settings(step: Step) -> dict:
    """What the restore does not take: backup retention and windows, IAM roles with their feature names."""
    plan, neptune = step.plan, step.neptune
    cluster = require_available_cluster(neptune, plan["new_cluster_id"])
    require_ours(neptune, cluster, "DBClusterArn", step.execution)
    neptune.modify_db_cluster(DBClusterIdentifier=plan["new_cluster_id"], ApplyImmediately=True, **plan["modify"])
    present = {r["RoleArn"] for r in cluster.get("AssociatedRoles", [])}
    for role in plan["roles"]:
        if role["RoleArn"] not in present:
            neptune.add_role_to_db_cluster(DBClusterIdentifier=plan["new_cluster_id"], **role)
    return {"applied": sorted(plan["modify"]) + (["roles"] if plan["roles"] else [])}


def create_instances(step: Step) -> dict:
    plan, neptune = step.plan, step.neptune
    existing = instances_in(neptune, [plan["new_cluster_id"]])
    for instance in plan["instances"]:
        if instance["new_id"] in existing:
            require_ours(neptune, existing[instance["new_id"]], "DBInstanceArn", step.execution)
            continue
        create = instance["create"]
        neptune.create_db_instance(DBInstanceIdentifier=instance["new_id"], Engine="neptune", DBClusterIdentifier=plan["new_cluster_id"],
                                   **{**create, "Tags": create.get("Tags", []) + created_by(step.execution)})
    return {"instances": [i["new_id"] for i in plan["instances"]]}


def instances_available(step: Step) -> dict:
    """Waits for the new instances, then sets what CreateDBInstance does not take (the CA certificate)."""
    plan, neptune = step.plan, step.neptune
    described_by_id = instances_in(neptune, [plan["new_cluster_id"]])
    for instance in plan["instances"]:
        described = described_by_id.get(instance["new_id"])
        if described is None or described["DBInstanceStatus"] != "available":
            raise ResourceNotReady(f"instance {instance['new_id']} is {described and described['DBInstanceStatus']}")
    for instance in plan["instances"]:
        wanted = instance.get("ca_certificate")
        if wanted and described_by_id[instance["new_id"]].get("CACertificateIdentifier") != wanted:
            require_ours(neptune, described_by_id[instance["new_id"]], "DBInstanceArn", step.execution)
            neptune.modify_db_instance(DBInstanceIdentifier=instance["new_id"], CACertificateIdentifier=wanted, ApplyImmediately=True)
            raise ResourceNotReady(f"setting the CA certificate of {instance['new_id']}")
    return {"status": "available"}


def verify(step: Step) -> dict:
    """The new cluster against the plan: key, every carried setting, every instance and its settings."""
    plan, neptune = step.plan, step.neptune
    cluster = describe_cluster(neptune, plan["new_cluster_id"])
    if cluster is None:
        raise VerificationFailed(f"{plan['new_cluster_id']} is gone")
    wanted, modify = plan["restore"], plan["modify"]
    checks = {
        "encrypted": (cluster.get("StorageEncrypted"), True),
        "key": (cluster.get("KmsKeyId"), plan["target_key_arn"]),
        "deletion protection": (cluster.get("DeletionProtection"), wanted.get("DeletionProtection", False)),
        "IAM authentication": (cluster.get("IAMDatabaseAuthenticationEnabled"), wanted.get("EnableIAMDatabaseAuthentication", False)),
        "log exports": (sorted(cluster.get("EnabledCloudwatchLogsExports", [])), sorted(wanted.get("EnableCloudwatchLogsExports", []))),
        "copy tags to snapshot": (bool(cluster.get("CopyTagsToSnapshot")), wanted.get("CopyTagsToSnapshot", False)),
        "roles": (sorted((r["RoleArn"], r.get("FeatureName")) for r in cluster.get("AssociatedRoles", [])),
                  sorted((r["RoleArn"], r.get("FeatureName")) for r in plan["roles"])),
        "tags": (tags_of(neptune, cluster["DBClusterArn"]), {t["Key"]: t["Value"] for t in wanted["Tags"]}),
    }
    for field, described_as in (("Port", "Port"), ("EngineVersion", "EngineVersion"), ("DBSubnetGroupName", "DBSubnetGroup"),
                                ("DBClusterParameterGroupName", "DBClusterParameterGroup"), ("StorageType", "StorageType"),
                                ("ServerlessV2ScalingConfiguration", "ServerlessV2ScalingConfiguration")):
        if field in wanted:
            checks[field] = (cluster.get(described_as), wanted[field])
    if wanted.get("VpcSecurityGroupIds"):
        checks["security groups"] = (sorted(g["VpcSecurityGroupId"] for g in cluster.get("VpcSecurityGroups", [])),
                                     sorted(wanted["VpcSecurityGroupIds"]))
    for field in modify:
        checks[field] = (cluster.get(field), modify[field])
    checks["instances"] = (sorted(m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", [])),
                           sorted(i["new_id"] for i in plan["instances"]))
    writers = [m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", []) if m.get("IsClusterWriter")]
    checks["writer"] = (writers, [i["new_id"] for i in plan["instances"] if i["writer"]])
    described_by_id = instances_in(neptune, [plan["new_cluster_id"]])
    for instance in plan["instances"]:
        described = described_by_id.get(instance["new_id"], {})
        for field, want in instance["create"].items():
            have = described.get(field) if field not in ("DBParameterGroupName", "Tags") else None
            if field == "DBParameterGroupName":
                have = (described.get("DBParameterGroups") or [{}])[0].get("DBParameterGroupName")
            if field == "Tags":
                have = tags_of(neptune, described["DBInstanceArn"]) if described else {}
                want = {t["Key"]: t["Value"] for t in want + created_by(step.execution)}
            checks[f"{field} of {instance['new_id']}"] = (have, want)
        if instance.get("ca_certificate"):
            checks[f"CA certificate of {instance['new_id']}"] = (described.get("CACertificateIdentifier"), instance["ca_certificate"])
    mismatches = [f"{name}: {have!r}, expected {want!r}" for name, (have, want) in checks.items() if have != want]
    if mismatches:
        raise VerificationFailed("; ".join(mismatches))
    return {"cluster_id": plan["new_cluster_id"], "resource_id": cluster["DbClusterResourceId"], "endpoint": cluster.get("Endpoint"),
            "checked": sorted(checks)}
