"""Custom endpoints: a restore does not carry them, so they are recreated, under their own identifiers, on
whichever cluster holds the production name.

An endpoint is deleted only where the approval endpoint's cutover mark is (the original's endpoints): a recreated one
carries the customer's tags and `remediated-by`, which authorizes nothing, so the remediation role can never delete it.
That is why the move comes after the point of no return: a rollback would have to delete it."""

from __future__ import annotations

from botocore.exceptions import ClientError

from neptune_guard.remediate.resources import NotOurs, ResourceNotReady, Step, tags_of
from neptune_guard.tags import CUTOVER, REMEDIATED_BY


def _describe_endpoint(neptune, identifier: str) -> dict | None:
    try:
        found = neptune.describe_db_cluster_endpoints(DBClusterEndpointIdentifier=identifier)["DBClusterEndpoints"]
    except ClientError as error:
        if error.response["Error"]["Code"] == "DBClusterEndpointNotFoundFault":
            return None
        raise
    return found[0] if found else None


def converge_endpoints(step: Step) -> bool:
    """Every planned custom endpoint on whichever cluster holds the production name, under its own identifier (so
    its DNS name stays); True when nothing is left to do. An endpoint is moved only if it carries this execution's
    cutover tag."""
    plan, neptune = step.plan, step.neptune
    done = True
    for endpoint in plan.get("custom_endpoints", []):
        found = _describe_endpoint(neptune, endpoint["id"])
        if found is not None and found["DBClusterIdentifier"] == plan["cluster_id"]:
            done = done and found["Status"] == "available"
            continue
        done = False
        if found is not None:
            if tags_of(neptune, found["DBClusterEndpointArn"]).get(CUTOVER) != step.execution:
                raise NotOurs(f"custom endpoint {endpoint['id']} is not marked for execution {step.execution}")
            if found["Status"] != "deleting":
                neptune.delete_db_cluster_endpoint(DBClusterEndpointIdentifier=endpoint["id"])
            continue
        members = {k: v for k, v in (("StaticMembers", endpoint["static_members"]), ("ExcludedMembers", endpoint["excluded_members"])) if v}
        neptune.create_db_cluster_endpoint(DBClusterIdentifier=plan["cluster_id"], DBClusterEndpointIdentifier=endpoint["id"],
                                           EndpointType=endpoint["type"], **members,
                                           Tags=endpoint["tags"] + [{"Key": REMEDIATED_BY, "Value": step.execution}])
    return done


def move_custom_endpoints(step: Step) -> dict:
    """After the new cluster took the production name: its custom endpoints, recreated with their type and members."""
    if not converge_endpoints(step):
        raise ResourceNotReady("moving the custom endpoints to the serving cluster")
    return {"custom_endpoints": [e["id"] for e in step.plan.get("custom_endpoints", [])]}


def not_moved(step: Step) -> list[tuple[dict, dict | None]]:
    """After a move that failed past its retries (the cutover stands, and only a person may finish it): each planned
    endpoint the serving cluster lacks, or holds unusable (`inactive`) or going (`deleting`), with where it is now
    (None: nowhere)."""
    failed = step.state.get("custom_endpoints")
    if not (isinstance(failed, dict) and "Error" in failed):
        return []
    plan, lacking = step.plan, []
    for endpoint in plan.get("custom_endpoints", []):
        found = _describe_endpoint(step.neptune, endpoint["id"])
        if found is None or found["DBClusterIdentifier"] != plan["cluster_id"] or found["Status"] in ("inactive", "deleting"):
            lacking.append((endpoint, found))
    return lacking
