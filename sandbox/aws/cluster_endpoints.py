"""Custom cluster endpoints for the local AWS: moto has none. A small stand-in built from the Neptune API
reference, covering what Neptune Guard calls: CreateDBClusterEndpoint, DescribeDBClusterEndpoints (by
cluster, by endpoint, with the `db-cluster-endpoint-type` filter), DeleteDBClusterEndpoint, and the
endpoint's tags through ListTagsForResource / AddTagsToResource.

- An endpoint belongs to a cluster, not to its name: it follows the cluster through a rename, and is
  deleted with it.
- Its identifier is unique in the account and region; its DNS name is `<id>.cluster-custom-<suffix>.
  <region>.neptune.amazonaws.com`, with a suffix per account and region, so an endpoint re-created under
  the same identifier on another cluster keeps its DNS name.
- It is `available` at once and gone at once (the local AWS has nothing to wait for).
https://docs.aws.amazon.com/neptune/latest/apiref/API_CreateDBClusterEndpoint.html
https://docs.aws.amazon.com/neptune/latest/apiref/API_DescribeDBClusterEndpoints.html
https://docs.aws.amazon.com/neptune/latest/apiref/API_DeleteDBClusterEndpoint.html
https://docs.aws.amazon.com/neptune/latest/userguide/feature-overview-endpoints.html
"""

from __future__ import annotations

import functools
import hashlib

from moto.core.responses import ActionResult
from moto.rds import models as rds_models
from moto.rds import responses as rds_responses
from moto.rds.exceptions import RDSClientError

_installed = False


def _endpoints(backend) -> dict[str, dict]:
    if not hasattr(backend, "_neptune_guard_cluster_endpoints"):
        backend._neptune_guard_cluster_endpoints = {}
    return backend._neptune_guard_cluster_endpoints


def _cluster_by_resource_id(backend, resource_id: str):
    return next((c for c in backend.clusters.values() if c.db_cluster_resource_id == resource_id), None)


def _described(backend, endpoint: dict) -> dict:
    cluster = _cluster_by_resource_id(backend, endpoint["resource_id"])
    suffix = hashlib.sha256(f"{backend.account_id}{backend.region_name}".encode()).hexdigest()[:12]
    return {
        "DBClusterEndpointIdentifier": endpoint["id"],
        "DBClusterIdentifier": cluster.db_cluster_identifier if cluster else None,
        "DBClusterEndpointResourceIdentifier": endpoint["endpoint_resource_id"],
        "Endpoint": f"{endpoint['id']}.cluster-custom-{suffix}.{backend.region_name}.neptune.amazonaws.com",
        "Status": "available",
        "EndpointType": "CUSTOM",
        "CustomEndpointType": endpoint["type"],
        "StaticMembers": endpoint["static"],
        "ExcludedMembers": endpoint["excluded"],
        "DBClusterEndpointArn": endpoint["arn"],
    }


def _live(backend) -> dict[str, dict]:
    """Endpoints whose cluster still exists (deleting a cluster deletes its endpoints)."""
    endpoints = _endpoints(backend)
    for identifier in [i for i, e in endpoints.items() if _cluster_by_resource_id(backend, e["resource_id"]) is None]:
        del endpoints[identifier]
    return endpoints


def create_db_cluster_endpoint(self) -> ActionResult:
    backend, params = self.backend, self.params
    identifier = params["DBClusterEndpointIdentifier"].lower()
    if identifier in _live(backend):
        raise RDSClientError("DBClusterEndpointAlreadyExistsFault", f"DB cluster endpoint {identifier} already exists")
    cluster = backend.clusters.get(params["DBClusterIdentifier"].lower())
    if cluster is None:
        raise RDSClientError("DBClusterNotFoundFault", f"DBCluster {params['DBClusterIdentifier']} not found.")
    if params.get("EndpointType") not in ("READER", "WRITER", "ANY"):
        raise RDSClientError("InvalidParameterValue", "EndpointType must be READER, WRITER or ANY")
    arn = f"arn:{cluster.partition}:rds:{backend.region_name}:{backend.account_id}:cluster-endpoint:{identifier}"
    endpoint = {"id": identifier, "resource_id": cluster.db_cluster_resource_id, "type": params["EndpointType"],
                "static": list(params.get("StaticMembers") or []), "excluded": list(params.get("ExcludedMembers") or []),
                "endpoint_resource_id": "cluster-endpoint-" + hashlib.sha256(arn.encode()).hexdigest()[:20], "arn": arn,
                "tags": {t["Key"]: t["Value"] for t in params.get("Tags") or []}}
    _endpoints(backend)[identifier] = endpoint
    return ActionResult(_described(backend, endpoint))


def describe_db_cluster_endpoints(self) -> ActionResult:
    backend, params = self.backend, self.params
    found = list(_live(backend).values())
    if params.get("DBClusterEndpointIdentifier"):
        found = [e for e in found if e["id"] == params["DBClusterEndpointIdentifier"].lower()]
    if params.get("DBClusterIdentifier"):
        cluster = backend.clusters.get(params["DBClusterIdentifier"].lower())
        found = [e for e in found if cluster is not None and e["resource_id"] == cluster.db_cluster_resource_id]
    for condition in params.get("Filters") or []:
        if condition["Name"] == "db-cluster-endpoint-type" and "custom" not in [v.lower() for v in condition["Values"]]:
            found = []
    return ActionResult({"DBClusterEndpoints": [_described(backend, e) for e in found]})


def delete_db_cluster_endpoint(self) -> ActionResult:
    backend = self.backend
    identifier = self.params["DBClusterEndpointIdentifier"].lower()
    endpoint = _live(backend).pop(identifier, None)
    if endpoint is None:
        raise RDSClientError("DBClusterEndpointNotFoundFault", f"DB cluster endpoint {identifier} not found")
    return ActionResult({**_described(backend, endpoint), "Status": "deleting"})


def _endpoint_for_arn(backend, arn: str) -> dict | None:
    return next((e for e in _live(backend).values() if e["arn"] == arn), None)


def install() -> None:
    """Add the endpoint actions to moto's RDS, and endpoint ARNs to its tag actions."""
    global _installed
    if _installed:
        return
    rds_responses.RDSResponse.create_db_cluster_endpoint = create_db_cluster_endpoint
    rds_responses.RDSResponse.describe_db_cluster_endpoints = describe_db_cluster_endpoints
    rds_responses.RDSResponse.delete_db_cluster_endpoint = delete_db_cluster_endpoint

    list_tags, add_tags, remove_tags = (rds_models.RDSBackend.list_tags_for_resource, rds_models.RDSBackend.add_tags_to_resource,
                                        rds_models.RDSBackend.remove_tags_from_resource)

    @functools.wraps(list_tags)
    def list_tags_for_resource(self, arn):
        endpoint = _endpoint_for_arn(self, arn)
        return [{"Key": k, "Value": v} for k, v in endpoint["tags"].items()] if endpoint else list_tags(self, arn)

    @functools.wraps(add_tags)
    def add_tags_to_resource(self, arn, tags):
        endpoint = _endpoint_for_arn(self, arn)
        if endpoint is None:
            return add_tags(self, arn, tags)
        endpoint["tags"].update({t["Key"]: t["Value"] for t in tags})
        return [{"Key": k, "Value": v} for k, v in endpoint["tags"].items()]

    @functools.wraps(remove_tags)
    def remove_tags_from_resource(self, arn, tag_keys):
        endpoint = _endpoint_for_arn(self, arn)
        if endpoint is None:
            return remove_tags(self, arn, tag_keys)
        for key in tag_keys:
            endpoint["tags"].pop(key, None)

    rds_models.RDSBackend.list_tags_for_resource = list_tags_for_resource
    rds_models.RDSBackend.add_tags_to_resource = add_tags_to_resource
    rds_models.RDSBackend.remove_tags_from_resource = remove_tags_from_resource
    _installed = True
