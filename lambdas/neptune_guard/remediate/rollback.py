"""Back to the original serving under its own name; what served production is kept, what never did is removed."""

from __future__ import annotations

from neptune_guard.remediate.endpoints import converge_endpoints
from neptune_guard.remediate.resources import (
    ResourceNotReady,
    Step,
    converge_instance_names,
    custom_endpoints,
    describe_cluster,
    describe_snapshot,
    hand_over_served,
    instances_in,
    iso,
    rename_cluster,
    require_ours,
    tags_of,
    take_off,
    utcnow,
)
from neptune_guard.tags import CREATED_BY, CUTOVER, REMEDIATED_BY, SERVED


def roll_back(step: Step) -> dict:
    """Converge back to the original serving under its own name. A new cluster that held the production name
    (it served writes) is kept, renamed aside and stopped; only what this execution created and never served
    is deleted. Raises ResourceNotReady until every rename has settled."""
    plan = step.plan
    if not plan:
        return {"serving": step.request.get("cluster_id"), "changed": "nothing"}
    neptune = step.neptune
    original, new, retired = plan["cluster_id"], plan["new_cluster_id"], plan["retired_cluster_id"]
    holder = describe_cluster(neptune, original)
    if holder is not None and holder["DbClusterResourceId"] != plan["cluster_resource_id"]:
        require_ours(neptune, holder, "DBClusterArn", step.execution)  # the new cluster had taken the name
        if holder["Status"] != "available":
            raise ResourceNotReady(f"{original} is {holder['Status']}")
        if not converge_instance_names(neptune, original, {i["id"]: i["new_id"] for i in plan["instances"]}):
            raise ResourceNotReady("renaming the new cluster's instances back to their own names")
        rename_cluster(neptune, original, new)
        raise ResourceNotReady(f"moving the new cluster from {original} back to {new}")
    if holder is None:
        aside = describe_cluster(neptune, retired)
        if aside is None or aside["DbClusterResourceId"] != plan["cluster_resource_id"] or aside["Status"] != "available":
            raise ResourceNotReady(f"waiting for the original under {retired} to settle")
        if plan.get("path") == "streams" and "replicated_back" not in step.state and _served(step):
            return {"replicate_back_first": True, "serving": None}  # the ASL replicates, then comes back here
        rename_cluster(neptune, retired, original)
        raise ResourceNotReady(f"renaming {retired} back to {original}")
    if holder["Status"] != "available":
        raise ResourceNotReady(f"{original} is {holder['Status']}")
    if not converge_instance_names(neptune, original, {i["retired_id"]: i["id"] for i in plan["instances"]}):
        raise ResourceNotReady(f"renaming the instances of {original} back")
    if not converge_endpoints(step):
        raise ResourceNotReady(f"moving the custom endpoints back to {original}")
    served = _served(step)
    kept, removed = _remove_what_never_served(step)
    marked = ([holder["DBClusterArn"]] + [i["DBInstanceArn"] for i in instances_in(neptune, [original]).values()]
              + [e["arn"] for e in custom_endpoints(neptune, original)])
    take_off(neptune, marked, (CUTOVER,), step.execution)
    return {"serving": original, "serving_resource_id": plan["cluster_resource_id"], "kept": kept, "removed": removed,
            **({"served_writes": _served_writes(step, served)} if served else {})}


def _served(step: Step) -> str | None:
    """When the new cluster took the production name (its served-production tag), if it ever did."""
    cluster = describe_cluster(step.neptune, step.plan["new_cluster_id"])
    if cluster is None or cluster["DbClusterResourceId"] != (step.state.get("verified") or {}).get("resource_id"):
        return None
    return tags_of(step.neptune, cluster["DBClusterArn"]).get(SERVED)


def _served_writes(step: Step, served_from: str) -> dict:
    """What became of the writes the new cluster took while it held the production name: replicated back and
    proven (streams path), or where they are and when they were made, for a person to bring back (never discarded)."""
    plan, back = step.plan, step.state.get("replicated_back") or {}
    if back.get("proven"):
        return {"replicated_back": back["drained_records"], "since": back["since"], "to": back["positions"],
                "note": (f"the {back['drained_records']} changes {plan['new_cluster_id']} took while it served production were "
                         f"replicated back and proven up to its stream position {back['positions']}; anything written to it "
                         "after that (an open connection) is in it, kept and stopped")}
    return {"stranded_in": plan["new_cluster_id"], "from": served_from, "until": iso(utcnow()),
            **({"since_stream_position": (step.state.get("final_proof") or {}).get("target_positions"), "why": back.get("Cause")}
               if plan.get("path") == "streams" else {}),
            "note": (f"writes {plan['new_cluster_id']} took while it served production (from {served_from}) are in it, kept and "
                     f"stopped, and not in {plan['cluster_id']}: bring them back by hand before deleting it")}


def _remove_what_never_served(step: Step) -> tuple[list[str], list[str]]:
    """(kept, removed): deletes the new cluster and the workflow's snapshot only if this execution created them
    and the cluster never held the production name; ResourceNotReady while a deletion is under way."""
    plan, neptune = step.plan, step.neptune
    new = plan["new_cluster_id"]
    kept, removed = [], []
    cluster = describe_cluster(neptune, new)
    if cluster is not None:
        tags = tags_of(neptune, cluster["DBClusterArn"])
        handed_over = tags.get(REMEDIATED_BY) == step.execution and SERVED in tags  # run again after its hand-over
        if tags.get(CREATED_BY) != step.execution and not handed_over:
            kept.append(f"{new} (not created by this execution)")
        elif SERVED in tags:
            kept.append(f"{new} (served production from {tags[SERVED]}: kept, stopped, for its owner)")
            hand_over_served(neptune, cluster, tags, step.execution)
        else:
            members = instances_in(neptune, [new])
            for instance in members.values():
                require_ours(neptune, instance, "DBInstanceArn", step.execution)
                if instance["DBInstanceStatus"] != "deleting":
                    neptune.delete_db_instance(DBInstanceIdentifier=instance["DBInstanceIdentifier"], SkipFinalSnapshot=True)
            if members:
                raise ResourceNotReady(f"deleting the instances of {new}")
            if cluster["Status"] != "deleting":
                if cluster.get("DeletionProtection"):
                    neptune.modify_db_cluster(DBClusterIdentifier=new, DeletionProtection=False, ApplyImmediately=True)
                neptune.delete_db_cluster(DBClusterIdentifier=new, SkipFinalSnapshot=True)
            raise ResourceNotReady(f"deleting {new}")
    snapshot = describe_snapshot(neptune, plan["snapshot_id"])
    if snapshot is not None:
        if tags_of(neptune, snapshot["DBClusterSnapshotArn"]).get(CREATED_BY) == step.execution:
            neptune.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=plan["snapshot_id"])
            removed.append(plan["snapshot_id"])
        else:
            kept.append(f"{plan['snapshot_id']} (not created by this execution)")
    return kept, removed
