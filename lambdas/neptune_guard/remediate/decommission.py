"""After the cutover: the original retired and kept stopped through the soak, proven quiet, archived under the key,
then deleted with its automated backups."""

from __future__ import annotations

from datetime import datetime, timedelta

from neptune_guard.remediate import live_cutover
from neptune_guard.remediate.resources import (
    NotOurs,
    ResourceNotReady,
    Step,
    VerificationFailed,
    describe_cluster,
    describe_snapshot,
    hand_over,
    instances_in,
    iso,
    require_ours,
    tags_of,
    take_off,
    utcnow,
)
from neptune_guard.remediate.writes import WritesDetected, cutover_started, write_activity
from neptune_guard.tags import (
    ARCHIVED_BY,
    CREATED_BY,
    CUTOVER,
    DECOMMISSION_APPROVED_BY,
    REMEDIATED_BY,
    REPLACED_BY,
    RETAINED_UNTIL,
    RETIRED_BY,
    created_by,
    customer_tags,
)


def retire_original(step: Step) -> dict:
    """The original, under its retired name: tagged with what replaced it and until when it is kept, stopped."""
    plan, neptune = step.plan, step.neptune
    retired = describe_cluster(neptune, plan["retired_cluster_id"])
    if retired is None:
        raise NotOurs(f"{plan['retired_cluster_id']} is gone")
    require_ours(neptune, retired, "DBClusterArn", step.execution, CUTOVER, RETIRED_BY)
    until = utcnow() + timedelta(seconds=plan["soak_seconds"])
    retirement = [{"Key": RETIRED_BY, "Value": step.execution}, {"Key": REPLACED_BY, "Value": step.state["cutover"]["resource_id"]},
                  {"Key": RETAINED_UNTIL, "Value": iso(until)}]
    neptune.add_tags_to_resource(ResourceName=retired["DBClusterArn"], Tags=retirement)
    for instance in instances_in(neptune, [plan["retired_cluster_id"]]).values():
        neptune.add_tags_to_resource(ResourceName=instance["DBInstanceArn"], Tags=retirement[:1])
    for backup in automated_backups_of(neptune, retired, (plan["cluster_id"], plan["retired_cluster_id"])):  # deleted with it at decommission: say so where they show
        neptune.add_tags_to_resource(ResourceName=backup["DBClusterSnapshotArn"], Tags=retirement)
    # Streams path: anything it took between the cutover proof and this stop (an open connection) shows now, while
    # its stream is fresh, not only at decommission a week on. It is stopped either way, and never deleted unproven.
    quiet = live_cutover.check_retired_quiet(step) if plan.get("path") == "streams" and retired["Status"] == "available" else None
    if retired["Status"] == "available":
        neptune.stop_db_cluster(DBClusterIdentifier=plan["retired_cluster_id"])
    return {"retained": plan["retired_cluster_id"], "retained_until": iso(until), "status": "stopping",
            **({"quiet_at_retire": quiet} if quiet is not None else {})}


def automated_backups_of(neptune, cluster: dict, names: tuple[str, ...]) -> list[dict]:
    """The cluster's automated snapshots: a snapshot names the cluster it came from by the identifier it had then
    (one of `names`), which after a rename is another cluster's, so the cluster's creation time must match too."""
    pages = neptune.get_paginator("describe_db_cluster_snapshots").paginate(SnapshotType="automated")
    return [s for page in pages for s in page["DBClusterSnapshots"]
            if s.get("Engine") == "neptune" and s.get("DBClusterIdentifier") in names
            and s.get("ClusterCreateTime") == cluster.get("ClusterCreateTime")]


class RetiredOriginalGone(Exception):
    """The retired original was deleted outside the execution during its soak: nothing is left to keep or decommission."""


def keep_retired_stopped(step: Step) -> dict:
    """During the soak: Neptune restarts a stopped cluster after 7 days; stop it again. No decommission is approved
    while it soaks (the question comes after this step): a mark an earlier approval left, when its run parked, comes off."""
    plan, neptune = step.plan, step.neptune
    retired = describe_cluster(neptune, plan["retired_cluster_id"])
    if retired is None:
        left = ", ".join(_hand_over_workflow_snapshots(step)) or "none"
        raise RetiredOriginalGone(f"{plan['retired_cluster_id']} was deleted outside this execution during its soak: nothing is "
                                  f"left to keep or decommission. The workflow's snapshots of it, the customer's now (unencrypted "
                                  f"if the original was): {left}; keep or delete them")
    require_ours(neptune, retired, "DBClusterArn", step.execution, RETIRED_BY)
    restopped = retired["Status"] == "available"
    if restopped:
        neptune.stop_db_cluster(DBClusterIdentifier=plan["retired_cluster_id"])
    withdrawn = withdraw_decommission_approval(step, retired)["withdrawn"]
    until = datetime.fromisoformat(step.state["retired"]["retained_until"])
    return {"status": "stopping" if restopped else retired["Status"], "restopped": restopped, "soak_over": utcnow() >= until,
            **({"withdrawn": withdrawn} if withdrawn else {})}


def _hand_over_workflow_snapshots(step: Step) -> list[str]:
    """The execution ends without decommissioning: its own snapshots of the original become the customer's (the role
    may no longer delete or copy them; the scan reports them as any other), not "removed at decommission" for good."""
    plan, neptune, handed_over = step.plan, step.neptune, []
    for snapshot_id in [plan["snapshot_id"]] + ([plan["final_snapshot_id"]] if plan.get("path") == "streams" else []):
        snapshot = describe_snapshot(neptune, snapshot_id)
        if snapshot is None:
            continue
        tags = tags_of(neptune, snapshot["DBClusterSnapshotArn"])
        if tags.get(CREATED_BY) == step.execution:
            hand_over(neptune, snapshot["DBClusterSnapshotArn"], tags, step.execution, (CREATED_BY,))
        if tags.get(CREATED_BY) == step.execution or tags.get(REMEDIATED_BY) == step.execution:
            handed_over.append(snapshot_id)
    return handed_over


def _retired_original(step: Step, retired: dict | None = None, backups: bool = False) -> list[str]:
    """The ARNs of the retired original (described here unless given) and its instances (and its automated backups),
    while it is still the cluster that was planned."""
    plan, neptune = step.plan, step.neptune
    retired = retired or describe_cluster(neptune, plan["retired_cluster_id"])
    if retired is None or retired["DbClusterResourceId"] != plan["cluster_resource_id"]:
        return []
    return [retired["DBClusterArn"], *(i["DBInstanceArn"] for i in instances_in(neptune, [plan["retired_cluster_id"]]).values()),
            *(b["DBClusterSnapshotArn"] for b in (automated_backups_of(neptune, retired, (plan["cluster_id"], plan["retired_cluster_id"]))
                                                  if backups else []))]


def withdraw_decommission_approval(step: Step, retired: dict | None = None) -> dict:
    """A decommission run parked (a write reached the original, or a fault): the approval it had is spent. Its mark
    comes off, so that the remediation role cannot delete the original until on-call approves again."""
    return {"withdrawn": take_off(step.neptune, _retired_original(step, retired), (DECOMMISSION_APPROVED_BY,), step.execution)}


def release_retained(step: Step) -> dict:
    """The execution ends with the original kept (decommission declined): it is the customer's again. None of its
    approval marks stay (they would let the remediation role stop, change or delete it with no execution running), nor
    its retirement tags, on it, its instances or its backups: the scan would read those as "decommission pending" and
    leave an unencrypted cluster out of the failures for good, with nothing left to decommission it."""
    held = _retired_original(step, backups=True)
    marks = take_off(step.neptune, held, (CUTOVER, DECOMMISSION_APPROVED_BY), step.execution)
    retirement = take_off(step.neptune, held, (RETIRED_BY,), step.execution, along=(REPLACED_BY, RETAINED_UNTIL))
    return {"released": sorted(set(marks) | set(retirement))}


def prove_no_writes_since_cutover(step: Step) -> dict:
    """Before anything of the original is deleted: the remediated cluster serves the production name, and the retired
    original took no write since the cutover began (streams: by position, replicating what it took; freeze: metrics)."""
    plan = step.plan
    serving = describe_cluster(step.neptune, plan["cluster_id"])
    if serving is None or serving["DbClusterResourceId"] != step.state["cutover"]["resource_id"]:
        raise NotOurs(f"{plan['cluster_id']} is not served by the remediated cluster: the original is kept")
    if plan.get("path") == "streams":
        return live_cutover.prove_retired_quiet(step)
    activity = write_activity(step.client("cloudwatch"), [(plan["retired_cluster_id"], cutover_started(step), utcnow())])
    if activity["writes_detected"]:
        raise WritesDetected(f"writes reached the retired {plan['retired_cluster_id']} after the cutover: {activity['metrics']}; "
                             "it is kept")
    return activity


def archive_retired(step: Step) -> dict:
    """An archive of the retired original, only ever under the CMK. No write reached the original after the
    workflow's snapshot (proved before the cutover and since), so that snapshot holds exactly its data: copied
    under the key when encrypted, or restored under the key and snapshotted when it is not."""
    plan, neptune = step.plan, step.neptune
    archive_tag = [{"Key": ARCHIVED_BY, "Value": step.execution}]
    archive = describe_snapshot(neptune, plan["archive_snapshot_id"])
    if archive is not None:
        require_ours(neptune, archive, "DBClusterSnapshotArn", step.execution, ARCHIVED_BY)
        if archive["Status"] != "available":
            raise ResourceNotReady(f"archive {plan['archive_snapshot_id']} is {archive['Status']}")
        if not archive.get("StorageEncrypted") or archive.get("KmsKeyId") != plan["target_key_arn"]:
            raise VerificationFailed(f"archive {plan['archive_snapshot_id']} is not under {plan['target_key_arn']}")
        temporary = describe_cluster(neptune, plan["archive_cluster_id"])
        if temporary is not None:
            require_ours(neptune, temporary, "DBClusterArn", step.execution)
            if temporary["Status"] != "deleting":
                neptune.delete_db_cluster(DBClusterIdentifier=plan["archive_cluster_id"], SkipFinalSnapshot=True)
            raise ResourceNotReady(f"deleting the temporary {plan['archive_cluster_id']}")
        return {"archive": plan["archive_snapshot_id"], "key": plan["target_key_arn"]}
    source_id = _archive_source(step)
    source = describe_snapshot(neptune, source_id)
    if source is None:
        raise NotOurs(f"the workflow's snapshot {source_id} is gone: nothing to archive from")
    require_ours(neptune, source, "DBClusterSnapshotArn", step.execution)
    tags = customer_tags(plan["restore"]["Tags"]) + archive_tag
    if plan["original_encrypted"]:
        neptune.copy_db_cluster_snapshot(SourceDBClusterSnapshotIdentifier=source_id,
                                         TargetDBClusterSnapshotIdentifier=plan["archive_snapshot_id"],
                                         KmsKeyId=plan["target_key_arn"], Tags=tags)
        raise ResourceNotReady(f"copying {plan['snapshot_id']} under the key")
    temporary = describe_cluster(neptune, plan["archive_cluster_id"])
    if temporary is None:
        neptune.restore_db_cluster_from_snapshot(DBClusterIdentifier=plan["archive_cluster_id"], SnapshotIdentifier=source_id,
                                                 Engine="neptune", KmsKeyId=plan["target_key_arn"], Tags=created_by(step.execution))
        raise ResourceNotReady(f"restoring {plan['snapshot_id']} under the key")
    require_ours(neptune, temporary, "DBClusterArn", step.execution)
    if temporary["Status"] != "available":
        raise ResourceNotReady(f"{plan['archive_cluster_id']} is {temporary['Status']}")
    neptune.create_db_cluster_snapshot(DBClusterSnapshotIdentifier=plan["archive_snapshot_id"],
                                       DBClusterIdentifier=plan["archive_cluster_id"], Tags=tags)
    raise ResourceNotReady(f"snapshotting {plan['archive_cluster_id']}")


def _archive_source(step: Step) -> str:
    """The snapshot the archive is made from. Freeze path: the workflow's snapshot (no write came after it). Streams
    path: the application wrote on after it, so a final snapshot of the retired original, taken once it is proven quiet."""
    plan, neptune = step.plan, step.neptune
    if plan.get("path") != "streams":
        return plan["snapshot_id"]
    final = describe_snapshot(neptune, plan["final_snapshot_id"])
    if final is None:
        retired = describe_cluster(neptune, plan["retired_cluster_id"])
        if retired is None:
            raise NotOurs(f"{plan['retired_cluster_id']} is gone: nothing to archive")
        require_ours(neptune, retired, "DBClusterArn", step.execution, RETIRED_BY)
        if retired["Status"] != "available":
            raise ResourceNotReady(f"{plan['retired_cluster_id']} is {retired['Status']}")
        neptune.create_db_cluster_snapshot(DBClusterSnapshotIdentifier=plan["final_snapshot_id"],
                                           DBClusterIdentifier=plan["retired_cluster_id"], Tags=created_by(step.execution))
        raise ResourceNotReady(f"snapshotting {plan['retired_cluster_id']} for its archive")
    require_ours(neptune, final, "DBClusterSnapshotArn", step.execution)
    if final["Status"] != "available":
        raise ResourceNotReady(f"{plan['final_snapshot_id']} is {final['Status']}")
    return plan["final_snapshot_id"]


def delete_retired(step: Step) -> dict:
    """The retired original (with its automated backups) and the workflow's own snapshot, once archived."""
    plan, neptune = step.plan, step.neptune
    retired = describe_cluster(neptune, plan["retired_cluster_id"])
    if retired is not None:
        require_ours(neptune, retired, "DBClusterArn", step.execution, DECOMMISSION_APPROVED_BY)
        if retired["Status"] == "deleting":
            raise ResourceNotReady(f"deleting {plan['retired_cluster_id']}")
        # The archive ran for hours since the proof, the original reachable all along: prove again, right before
        # deleting its instances, that it took no write since the cutover (a write parks it, kept). Once they are
        # going, nothing can write to it (and nothing answers to read its stream): the later calls only wait.
        members = instances_in(neptune, [plan["retired_cluster_id"]])
        if members and not any(i["DBInstanceStatus"] == "deleting" for i in members.values()):
            prove_no_writes_since_cutover(step)
        for instance in members.values():
            require_ours(neptune, instance, "DBInstanceArn", step.execution, DECOMMISSION_APPROVED_BY)
            if instance["DBInstanceStatus"] != "deleting":
                neptune.delete_db_instance(DBInstanceIdentifier=instance["DBInstanceIdentifier"], SkipFinalSnapshot=True)
        if members:
            raise ResourceNotReady(f"deleting the instances of {plan['retired_cluster_id']}")
        if retired.get("DeletionProtection"):
            neptune.modify_db_cluster(DBClusterIdentifier=plan["retired_cluster_id"], DeletionProtection=False, ApplyImmediately=True)
        neptune.delete_db_cluster(DBClusterIdentifier=plan["retired_cluster_id"], SkipFinalSnapshot=True)
        raise ResourceNotReady(f"deleting {plan['retired_cluster_id']}")
    workflow_snapshots = [plan["snapshot_id"]] + ([plan["final_snapshot_id"]] if plan.get("path") == "streams" else [])
    for snapshot_id in workflow_snapshots:
        snapshot = describe_snapshot(neptune, snapshot_id)
        if snapshot is not None:
            require_ours(neptune, snapshot, "DBClusterSnapshotArn", step.execution)
            neptune.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=snapshot_id)
    return {"deleted": [plan["retired_cluster_id"], *workflow_snapshots], "archive": plan["archive_snapshot_id"]}
