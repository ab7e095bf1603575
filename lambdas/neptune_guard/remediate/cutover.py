"""The name swap: the original moves aside, the new cluster takes its name (after the write proof), and is handed
over as production."""

from __future__ import annotations

from datetime import datetime, timezone

from neptune_guard.remediate import live_cutover
from neptune_guard.remediate.resources import (
    NotOurs,
    ResourceNotReady,
    Step,
    converge_instance_names,
    describe_cluster,
    hand_over,
    instances_in,
    iso,
    rename_cluster,
    require_ours,
    tags_of,
    utcnow,
)
from neptune_guard.remediate.writes import WritesDetected, accepted_write_loss, writes_until_now
from neptune_guard.tags import CREATED_BY, CUTOVER, SERVED


def move_original_aside(step: Step) -> dict:
    """Cutover, first half: the original (marked for this execution) and its instances move to their retired
    names, so nothing reaches it under the production names any more."""
    plan, neptune = step.plan, step.neptune
    original, retired = plan["cluster_id"], plan["retired_cluster_id"]
    holder = describe_cluster(neptune, original)
    if holder is not None and holder["DbClusterResourceId"] == plan["cluster_resource_id"]:
        require_ours(neptune, holder, "DBClusterArn", step.execution, CUTOVER)
        if holder["Status"] != "available":
            raise ResourceNotReady(f"{original} is {holder['Status']}")
        rename_cluster(neptune, original, retired)
        raise ResourceNotReady(f"renaming {original} to {retired}")
    moved = describe_cluster(neptune, retired)
    if moved is None or moved["DbClusterResourceId"] != plan["cluster_resource_id"]:
        raise ResourceNotReady(f"{retired} is not there yet")
    if moved["Status"] != "available":
        raise ResourceNotReady(f"{retired} is {moved['Status']}")
    if not converge_instance_names(neptune, retired, {i["id"]: i["retired_id"] for i in plan["instances"]}):
        raise ResourceNotReady(f"the instances of {retired} are renaming")
    return {"moved_at": iso(utcnow()), "retired_cluster_id": retired}


def give_new_cluster_the_name(step: Step) -> dict:
    """Cutover, second half: the new cluster and its instances take the production names. Checks the writes
    once more first: a direct call can never skip the write check."""
    plan, neptune = step.plan, step.neptune
    original, new = plan["cluster_id"], plan["new_cluster_id"]
    new_resource_id = step.state["verified"]["resource_id"]
    holder = describe_cluster(neptune, original)
    if holder is None:
        if plan.get("path") == "streams":
            if not step.state.get("final_proof", {}).get("proven"):
                raise live_cutover.ProofFailed(f"no stream proof that {new} holds every change of {original}")
        else:
            writes = writes_until_now(step)
            if writes["writes_detected"] and not accepted_write_loss(step):
                raise WritesDetected(f"writes reached {original} after its snapshot: {writes['metrics']}")
        candidate = describe_cluster(neptune, new)
        if candidate is None or candidate["DbClusterResourceId"] != new_resource_id:
            raise NotOurs(f"{new} is not the verified new cluster")
        require_ours(neptune, candidate, "DBClusterArn", step.execution)
        neptune.add_tags_to_resource(ResourceName=candidate["DBClusterArn"], Tags=[{"Key": SERVED, "Value": iso(utcnow())}])
        rename_cluster(neptune, new, original)
        raise ResourceNotReady(f"renaming {new} to {original}")
    if holder["DbClusterResourceId"] != new_resource_id:
        raise NotOurs(f"{original} is held by {holder['DbClusterResourceId']}, neither the original nor the new cluster")
    if holder["Status"] != "available":
        raise ResourceNotReady(f"{original} is {holder['Status']}")
    if not converge_instance_names(neptune, original, {i["new_id"]: i["id"] for i in plan["instances"]}):
        raise ResourceNotReady(f"the instances of {original} are renaming")
    now = utcnow()
    return {"serving": original, "resource_id": new_resource_id, "cutover_at": iso(now), **_pauses(step, now)}


def _pauses(step: Step, now: datetime) -> dict:
    """What the database owner saw. Nameless: from the first rename request (recorded before it) until the new cluster
    answers under the name. Write pause: streams, from on-call's answer (writes stopped before it), or the start of
    the drain if earlier, until now; freeze, from the start of the quiet window proven before the snapshot until now."""
    started = datetime.fromisoformat(step.state["cutover_clock"]["started_at"].replace("Z", "+00:00"))
    if step.plan.get("path") == "streams":
        paused = datetime.fromtimestamp(step.state["proof"]["started_at"], timezone.utc)
        answered = (step.state.get("approvals") or {}).get("cutover", {}).get("at")
        if isinstance(answered, str):
            paused = min(paused, datetime.fromisoformat(answered.replace("Z", "+00:00")))
    else:
        paused = datetime.fromisoformat(step.state["pre_snapshot_write_check"]["windows"][0]["from"])
    return {"path": step.plan.get("path", "freeze"), "nameless_seconds": round((now - started).total_seconds(), 3),
            "write_pause_seconds": round((now - paused).total_seconds(), 3)}


def hand_over_new_cluster(step: Step) -> dict:
    """The new cluster is production now: it loses the created-by tag (the remediation role may no longer
    delete or rename it) and keeps a record of the remediation."""
    plan, neptune = step.plan, step.neptune
    serving = describe_cluster(neptune, plan["cluster_id"])
    if serving is None or serving["DbClusterResourceId"] != step.state["cutover"]["resource_id"]:
        raise NotOurs(f"{plan['cluster_id']} is not the cluster this execution cut over to")
    resources = [serving["DBClusterArn"]] + [i["DBInstanceArn"] for i in instances_in(neptune, [plan["cluster_id"]]).values()]
    # Run again after a fault half-way, a resource already handed over is left as it is: with its hold gone, the role
    # may no longer tag it. (The moved custom endpoints carry `remediated-by` from their creation, and no hold.)
    for arn in resources:
        tags = tags_of(neptune, arn)
        if tags.get(CREATED_BY) not in (None, step.execution):
            raise NotOurs(f"{arn} was created by {tags[CREATED_BY]}")
        hand_over(neptune, arn, tags, step.execution, (CREATED_BY, SERVED))
    return {"handed_over": plan["cluster_id"]}
