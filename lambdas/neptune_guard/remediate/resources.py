"""What both remediation workflows share: the member account's session, describe-or-none reads, readiness checks,
ownership checks, renames that wait while AWS is busy, and the clock.

Ownership is by tag, never by name (tags.py): a resource the workflow creates carries `created-by` with the
execution's ARN from the moment it exists (tag-on-create), and the customer's originals carry a tag only once on-call
has approved (`cutover` for the cluster the cutover renames, `retired-by` once it has been replaced,
`replace-approved-by` for a snapshot whose deletion was approved). The member remediation role may rename, stop,
unprotect or delete only resources carrying these tags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import boto3
from botocore.exceptions import ClientError
from botocore.utils import ArnParser, InvalidArnException

from neptune_guard import aws
from neptune_guard.tags import CREATED_BY, REMEDIATED_BY, customer_tags, tag_map

DEFAULT_REMEDIATION_ROLE = "NeptuneGuardRemediation"


class InvalidRequest(Exception):
    """Refused before anything changed: bad input, wrong key, resource in the wrong state."""


class ResourceNotReady(Exception):
    """AWS is still working; the state machine retries this step with back-off."""


class VerificationFailed(Exception):
    """The new resource does not match the plan: roll back."""


class NotOurs(Exception):
    """A resource the step would act on does not carry this execution's tag: the step refuses to touch it."""


def member_session(request: dict, base: boto3.Session | None = None) -> boto3.Session:
    """The remediation role of the resource's account (the security account's own included), so that the
    workflow's own role needs nothing but sts:AssumeRole. `base`: whose credentials assume it (default: the
    environment's)."""
    role = request.get("role_name") or DEFAULT_REMEDIATION_ROLE
    return aws.assume_role(base or aws.new_session(request["region"]), request["account_id"], role, request["region"],
                           "neptune-guard-remediation")


@dataclass
class Step:
    """One step's view of an execution: the request it was started with, the plan, and the state so far."""

    request: dict
    execution: str
    plan: dict | None = None
    state: dict = field(default_factory=dict)
    answered: dict[str, str] = field(default_factory=dict)  # stage -> when the execution's history shows it answered (the guard reads it)
    base: boto3.Session | None = None  # whose credentials assume the member role (the CLI's --profile)
    _session: boto3.Session | None = None
    _clients: dict = field(default_factory=dict)

    @property
    def session(self) -> boto3.Session:
        if self._session is None:
            self._session = member_session(self.request, self.base)
        return self._session

    def client(self, service: str, config=aws.CLIENT_CONFIG):
        """One client per service and configuration for the step (a client costs as much to make as several calls)."""
        if (service, config) not in self._clients:
            self._clients[(service, config)] = self.session.client(service, region_name=self.request["region"], config=config)
        return self._clients[(service, config)]

    @property
    def neptune(self):
        return self.client("neptune")


def _first_or_none(call, result_key: str, not_found: str, **arguments) -> dict | None:
    """The one resource a describe call names, or None where AWS says there is no such resource."""
    try:
        found = call(**arguments)[result_key]
    except ClientError as error:
        if error.response["Error"]["Code"] == not_found:
            return None
        raise
    return found[0] if found else None


def describe_cluster(neptune, identifier: str) -> dict | None:
    return _first_or_none(neptune.describe_db_clusters, "DBClusters", "DBClusterNotFoundFault", DBClusterIdentifier=identifier)


def describe_snapshot(neptune, identifier: str) -> dict | None:
    return _first_or_none(neptune.describe_db_cluster_snapshots, "DBClusterSnapshots", "DBClusterSnapshotNotFoundFault",
                          DBClusterSnapshotIdentifier=identifier)


def instances_in(neptune, cluster_ids: list[str]) -> dict[str, dict]:
    """The instances of these clusters, by identifier: one request (Neptune documents the db-cluster-id
    filter, which takes several clusters), not one per instance."""
    found: dict[str, dict] = {}
    pages = neptune.get_paginator("describe_db_instances").paginate(Filters=[{"Name": "db-cluster-id", "Values": cluster_ids}])
    for page in pages:
        found.update((instance["DBInstanceIdentifier"], instance) for instance in page["DBInstances"])
    return found


def tags_of(neptune, arn: str) -> dict[str, str]:
    return tag_map(neptune.list_tags_for_resource(ResourceName=arn).get("TagList", []))


def take_off(neptune, arns: list[str], keys: tuple[str, ...], execution: str, along: tuple[str, ...] = ()) -> list[str]:
    """Remove those of `keys` that name this execution from each resource (another execution's stay), and with them
    `along` (tags that only qualify them); the ARNs changed. A resource deleted meanwhile has nothing left to take off
    (RDS answers DBClusterNotFoundFault, DBInstanceNotFound, DBClusterSnapshotNotFoundFault, ... for its tags)."""
    changed = []
    for arn in arns:
        try:
            tags = tags_of(neptune, arn)
            naming_it = [key for key, value in tags.items() if key in keys and value == execution]
            if naming_it:
                neptune.remove_tags_from_resource(ResourceName=arn, TagKeys=naming_it + [key for key in along if key in tags])
                changed.append(arn)
        except ClientError as error:
            if "NotFound" not in error.response["Error"]["Code"]:
                raise
    return changed


def hand_over(neptune, arn: str, tags: dict[str, str], execution: str, let_go: tuple[str, ...]) -> None:
    """The resource is the customer's from now: it says which remediation made it (`remediated-by`, which also keeps a
    creation tag off it for good) and loses this execution's hold on it (`let_go`). Run again, it adds nothing: once its
    hold is gone the role may no longer tag it."""
    if tags.get(REMEDIATED_BY) != execution:
        neptune.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": REMEDIATED_BY, "Value": execution}])
    neptune.remove_tags_from_resource(ResourceName=arn, TagKeys=list(let_go))


def hand_over_served(neptune, cluster: dict, tags: dict[str, str], execution: str, *, stop: bool = True) -> None:
    """A new cluster that held the production name holds writes nobody else has: the customer's (with its instances),
    so that the remediation role can no longer stop, change or delete it; stopped too, unless it still serves (`stop`
    False). Its served-production tag stays as the record; run again, it finds nothing left to do."""
    if tags.get(CREATED_BY) != execution:
        return
    if stop and cluster["Status"] == "available":
        neptune.stop_db_cluster(DBClusterIdentifier=cluster["DBClusterIdentifier"])
    for instance in instances_in(neptune, [cluster["DBClusterIdentifier"]]).values():
        hand_over(neptune, instance["DBInstanceArn"], tags_of(neptune, instance["DBInstanceArn"]), execution, (CREATED_BY,))
    hand_over(neptune, cluster["DBClusterArn"], tags, execution, (CREATED_BY,))


def snapshot_identity(snapshot: dict) -> dict:
    """What tells a snapshot from another made later under its name (its ARN is built from the name)."""
    created = snapshot.get("SnapshotCreateTime")
    return {"arn": snapshot["DBClusterSnapshotArn"], "created": created.isoformat() if hasattr(created, "isoformat") else created}


def is_planned_snapshot(snapshot: dict | None, plan: dict) -> bool:
    """A plan made before snapshots had an identity (an execution older than this version) matches none."""
    return snapshot is not None and snapshot_identity(snapshot) == plan.get("snapshot_identity")


def planned_snapshot(neptune, plan: dict) -> dict | None:
    """The snapshot the plan names, or None when it is gone; NotOurs when another snapshot holds its name now."""
    snapshot = describe_snapshot(neptune, plan["snapshot_id"])
    if snapshot is not None and not is_planned_snapshot(snapshot, plan):
        raise NotOurs(f"{plan['snapshot_id']} is not the snapshot that was planned")
    return snapshot


def require_ours(neptune, resource: dict, arn_field: str, execution: str, *keys: str) -> dict[str, str]:
    """The resource's tags, if one of `keys` (default: created-by) names this execution; NotOurs otherwise.
    A resource that merely has the name the workflow would have given it is never adopted."""
    tags = tags_of(neptune, resource[arn_field])
    if not any(tags.get(key) == execution for key in (keys or (CREATED_BY,))):
        name = resource.get("DBClusterIdentifier") or resource.get("DBInstanceIdentifier") or resource.get("DBClusterSnapshotIdentifier")
        raise NotOurs(f"{name} exists but was not created for execution {execution}; it is left untouched")
    return tags


def adopt_or_create(neptune, found: dict | None, arn_field: str, execution: str, create, key: str = CREATED_BY) -> None:
    """A step's idempotent create: what already exists under the name must be this execution's (its `key` naming
    it; NotOurs otherwise); what does not, `create()` makes."""
    if found is not None:
        require_ours(neptune, found, arn_field, execution, key)
    else:
        create()


def require_available_cluster(neptune, identifier: str) -> dict:
    """A waiting step's check: the cluster when available, ResourceNotReady (retried by the ASL) until then."""
    cluster = describe_cluster(neptune, identifier)
    if cluster is None or cluster["Status"] != "available":
        raise ResourceNotReady(f"cluster {identifier} is {cluster['Status'] if cluster else 'not there yet'}")
    return cluster


def require_available_snapshot(neptune, identifier: str) -> dict:
    snapshot = describe_snapshot(neptune, identifier)
    if snapshot is None or snapshot["Status"] != "available":
        raise ResourceNotReady(f"snapshot {identifier} is {snapshot['Status'] if snapshot else 'not there yet'}")
    return snapshot


def parse_arn(arn: str, what: str = "ARN") -> dict:
    try:
        return ArnParser().parse_arn(arn)
    except (InvalidArnException, TypeError) as error:
        raise InvalidRequest(f"not an {what}: {arn!r}") from error


def custom_endpoints(neptune, cluster_id: str) -> list[dict]:
    """The cluster's custom endpoints, as CreateDBClusterEndpoint takes them back: a restore does not carry them."""
    found = neptune.describe_db_cluster_endpoints(DBClusterIdentifier=cluster_id,
                                                  Filters=[{"Name": "db-cluster-endpoint-type", "Values": ["custom"]}])
    return [{"id": e["DBClusterEndpointIdentifier"], "type": e["CustomEndpointType"], "arn": e["DBClusterEndpointArn"],
             "static_members": e.get("StaticMembers", []), "excluded_members": e.get("ExcludedMembers", []),
             "tags": customer_tags(neptune.list_tags_for_resource(ResourceName=e["DBClusterEndpointArn"]).get("TagList", []))}
            for e in found["DBClusterEndpoints"]]


BUSY = ("InvalidDBClusterStateFault", "InvalidDBInstanceStateFault")


def _renaming(modify, old: str, **arguments) -> None:
    """A rename that AWS refuses while the resource is busy is not ready yet, not a failure."""
    try:
        modify(ApplyImmediately=True, **arguments)
    except ClientError as error:
        if error.response["Error"]["Code"] in BUSY:
            raise ResourceNotReady(f"{old} cannot be renamed yet: {error.response['Error']['Message']}") from error
        raise


def rename_cluster(neptune, old: str, new: str) -> None:
    _renaming(neptune.modify_db_cluster, old, DBClusterIdentifier=old, NewDBClusterIdentifier=new)


def rename_instance(neptune, old: str, new: str) -> None:
    _renaming(neptune.modify_db_instance, old, DBInstanceIdentifier=old, NewDBInstanceIdentifier=new)


def converge_instance_names(neptune, cluster_id: str, renames: dict[str, str]) -> bool:
    """Rename the cluster's instances per `renames` (old id -> new id); True when nothing is left to do."""
    pending = False
    for instance_id, instance in instances_in(neptune, [cluster_id]).items():
        if instance_id in renames:
            rename_instance(neptune, instance_id, renames[instance_id])
            pending = True
        elif instance["DBInstanceStatus"] == "renaming":
            pending = True
    return not pending


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def utc(moment) -> datetime:
    """A datetime (or ISO 8601 text) as an aware UTC datetime; a naive one is taken to be UTC already."""
    moment = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def iso(moment) -> str:
    return moment if isinstance(moment, str) else utc(moment).isoformat(timespec="seconds")
