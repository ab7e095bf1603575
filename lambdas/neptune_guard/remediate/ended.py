"""An execution that ended with approval marks still on the customer's resources (stopped by hand, at Step Functions'
one-year limit, after a rollback or a release that failed): with no execution left to use them, the marks would go on
letting the remediation role snapshot, stop, rename or delete those resources; and a new cluster that served production
before the hand-over keeps the creation tag that lets the role delete it; and a replicator stopped mid-replication
stays a function that can reach both clusters. Step Functions announces every end; this takes each mark naming the
execution off what its plan names, as they are now, hands such a cluster over, and removes the replicator.

Taking a mark off, or handing a cluster over, only ever takes a power away, and the execution must have ended as Step
Functions records it (guard.read_execution), so an event nobody should have sent changes nothing that should stay. It
acts as the remediation role, on its grants ReadNeptune, RemoveOwnershipTagsOnly and, on what the execution created,
BookkeepingOnOwnResources and ChangeOnlyWhatAnExecutionCreated (the stop), and the streams path's removal grants."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from neptune_guard.remediate import finding_notes, live_cutover
from neptune_guard.remediate.resources import (
    ResourceNotReady,
    Step,
    custom_endpoints,
    describe_cluster,
    describe_snapshot,
    hand_over_served,
    instances_in,
    is_planned_snapshot,
    tags_of,
    take_off,
)
from neptune_guard.tags import APPROVAL_MARKS, CREATED_BY, SERVED


def _clusters(neptune, plan: dict) -> dict[str, dict]:
    """Each cluster the plan names (its own name, its retired name, the new cluster's), described once; those that exist."""
    names = dict.fromkeys((plan["cluster_id"], plan["retired_cluster_id"], plan["new_cluster_id"]))
    found = {name: describe_cluster(neptune, name) for name in names}
    return {name: cluster for name, cluster in found.items() if cluster is not None}


def marked_by_plan(neptune, plan: dict, clusters: dict[str, dict]) -> list[str]:
    """The ARNs an approval of this plan can have marked: the original cluster (under its name or its retired name, while
    it is the planned cluster), its instances and custom endpoints; or the original snapshot and its re-encrypted copy."""
    if plan.get("kind") == "snapshot-plan":  # a snapshot made since under the original's name is not the planned one
        original = describe_snapshot(neptune, plan["snapshot_id"])
        return [s["DBClusterSnapshotArn"] for s in (original if is_planned_snapshot(original, plan) else None,
                                                     describe_snapshot(neptune, plan["new_snapshot_id"])) if s]
    arns = []
    for name in (plan["cluster_id"], plan["retired_cluster_id"]):
        cluster = clusters.get(name)
        if cluster is not None and cluster["DbClusterResourceId"] == plan["cluster_resource_id"]:
            arns += [cluster["DBClusterArn"], *(i["DBInstanceArn"] for i in instances_in(neptune, [name]).values()),
                     *(e["arn"] for e in custom_endpoints(neptune, name))]
    return arns


def served_and_still_held(neptune, clusters: dict[str, dict], execution: str) -> list[tuple[dict, dict]]:
    """(cluster, tags) of the execution's new cluster if it held the production name (its served-production tag) and
    still carries the execution's creation tag: stopped between the name swap and the hand-over, or before a rollback
    handed it over."""
    held = []
    for cluster in clusters.values():
        tags = tags_of(neptune, cluster["DBClusterArn"])
        if tags.get(CREATED_BY) == execution and SERVED in tags:
            held.append((cluster, tags))
    return held


class ReplicatorStillReleasing(Exception):
    """Everything else is released; the replicator's role and group wait for Lambda to release its function's network
    interfaces. Lambda invokes the function again for the same event (asynchronous retries), and what is done stays done."""


def release(step: Step) -> dict:
    """Every approval mark naming the ended execution, off what its plan names; a new cluster that served production
    and is still the execution's, the customer's (it holds writes nobody else has); and the replicator, if it was not
    removed. The ARNs and names changed."""
    if not step.plan:
        return {"released": [], "handed_over": [], "replicator_removed": []}
    neptune = step.neptune
    clusters = _clusters(neptune, step.plan) if step.plan.get("kind") == "cluster-plan" else {}
    released = take_off(neptune, marked_by_plan(neptune, step.plan, clusters), APPROVAL_MARKS, step.execution)
    served = served_and_still_held(neptune, clusters, step.execution)
    for cluster, tags in served:  # one under the production name serves it: handed over, never stopped
        serving = cluster["DBClusterIdentifier"].lower() == step.plan["cluster_id"].lower()
        hand_over_served(neptune, cluster, tags, step.execution, stop=not serving)
    handed_over = [cluster["DBClusterArn"] for cluster, _ in served]
    try:
        removed = live_cutover.remove_replicator(step)["removed"]
    except ResourceNotReady as waiting:
        raise ReplicatorStillReleasing(f"{waiting} (released {released}, handed over {handed_over})") from waiting
    return {"released": released, "handed_over": handed_over, "replicator_removed": removed}


def note_outcome(step: Step, status: str) -> str | None:
    """The finding the execution was started for stops saying it waits on it: one that ended (FAILED, TIMED_OUT,
    ABORTED) while the finding still says it was requested is noted as ended without remediating (one that remediated
    noted so itself, and a later execution's note is left alone). What happened, for the log; a note that fails is
    reported, not raised: the release itself is done."""
    finding = step.request.get("finding")
    if not finding or status == "SUCCEEDED":
        return None
    try:
        noted = finding_notes.note_remediation(
            finding_notes.findings_client(step.request["account_id"], step.request["region"], step.base), finding, step.execution,
            f"ended {status.lower()} without remediating: start a remediation again", only_while_requested=True)
    except (finding_notes.FindingNotNoted, ClientError, BotoCoreError) as error:
        return f"not noted: {error}"
    return "noted" if noted else "left alone: the finding says something else now (a later execution, or remediated)"
