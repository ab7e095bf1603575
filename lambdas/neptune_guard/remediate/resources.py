"""What both remediation workflows share: the member account's session, describe-or-none reads,
readiness checks, the ownership tags, and the guard every step passes before it acts.

Ownership is by tag, never by name: a resource the workflow creates carries `created-by` with the
execution's ARN from the moment it exists (tag-on-create), and the customer's originals carry a tag
only once on-call has approved (`cutover` for the cluster the cutover renames, `retired-by` once it
has been replaced, `replace-approved-by` for a snapshot whose deletion was approved). The member
remediation role may rename, stop, unprotect or delete only resources carrying these tags.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import boto3
from botocore.exceptions import ClientError
from botocore.utils import ArnParser, InvalidArnException

from neptune_guard import aws

DEFAULT_REMEDIATION_ROLE = "NeptuneGuardRemediation"

TAG_PREFIX = "neptune-guard:"
CREATED_BY = TAG_PREFIX + "created-by"              # on everything a workflow creates, at creation
CUTOVER = TAG_PREFIX + "cutover"                    # the original cluster and its instances, after approval
RETIRED_BY = TAG_PREFIX + "retired-by"              # the original once replaced: kept, stopped, until decommission
REPLACED_BY = TAG_PREFIX + "replaced-by"            # the DbClusterResourceId that serves now
RETAINED_UNTIL = TAG_PREFIX + "retained-until"      # the earliest date decommission may be approved
REMEDIATED_BY = TAG_PREFIX + "remediated-by"        # informational: the serving cluster's provenance
REPLACE_APPROVED_BY = TAG_PREFIX + "replace-approved-by"  # an original snapshot whose deletion on-call approved
TEMPORARY_FOR = TAG_PREFIX + "temporary-for"        # a cluster restored from a customer's snapshot only to be snapshotted
DECOMMISSION_APPROVED_BY = TAG_PREFIX + "decommission-approved-by"  # a retired original whose deletion on-call approved
# CUTOVER, REPLACE_APPROVED_BY and DECOMMISSION_APPROVED_BY are approval marks: only the approval endpoint writes them
# (approval_marks.py), through a member role of their own.


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
    return aws.assume_role(base or boto3.Session(region_name=request["region"]), request["account_id"], role, request["region"],
                           "neptune-guard-remediation")


@dataclass
class Step:
    """One step's view of an execution: the request it was started with, the plan, and the state so far."""

    request: dict
    execution: str
    plan: dict | None = None
    state: dict = field(default_factory=dict)
    base: boto3.Session | None = None  # whose credentials assume the member role (the CLI's --profile)
    _session: boto3.Session | None = None

    @property
    def session(self) -> boto3.Session:
        if self._session is None:
            self._session = member_session(self.request, self.base)
        return self._session

    def client(self, service: str):
        return self.session.client(service, region_name=self.request["region"], config=aws.CLIENT_CONFIG)

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


def tag_map(tags: list[dict]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags}


def tag_list(tags: dict[str, str]) -> list[dict]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def customer_tags(tags: list[dict]) -> list[dict]:
    """The tags a copy carries over: the customer's, never Neptune Guard's own bookkeeping."""
    return [t for t in tags if not t["Key"].startswith(TAG_PREFIX)]


def created_by(execution: str) -> list[dict]:
    return [{"Key": CREATED_BY, "Value": execution}]


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
