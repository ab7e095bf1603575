"""Reading the Organization, its regions, Neptune clusters, snapshots and their keys into typed records."""

from __future__ import annotations

import threading

from botocore.exceptions import ClientError
from botocore.utils import ArnParser, InvalidArnException

from neptune_guard.aws import ACCOUNT_ID, ClientFactory
from neptune_guard.models import Cluster, ClusterSnapshot, KeyInfo, KeyManager
from neptune_guard.tags import CREATED_BY, REPLACED_BY, RETAINED_UNTIL, RETIRED_BY, tag_map

NEPTUNE_ONLY = [{"Name": "engine", "Values": ["neptune"]}]
PAGE_SIZE = 100
ACCESS_DENIED = {"AccessDenied", "AccessDeniedException"}


class InventoryError(Exception):
    """A fault that stops one account or account-region from being read; the others go on."""


def error_message(error: Exception) -> str:
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        return f"{info.get('Code', 'Error')}: {info.get('Message', '')} ({error.operation_name})".strip()
    return f"{type(error).__name__}: {error}"


def organization_accounts(organizations) -> list[str]:
    """Every ACTIVE account of the Organization."""
    accounts = []
    for page in organizations.get_paginator("list_accounts").paginate():
        accounts += [a["Id"] for a in page["Accounts"] if a.get("Status") == "ACTIVE"]
    return sorted(accounts)


def parse_account_list(value: str) -> list[str]:
    accounts = [item.strip() for item in value.split(",") if item.strip()]
    bad = [a for a in accounts if not ACCOUNT_ID.match(a)]
    if bad or not accounts:
        raise ValueError(f"--accounts takes 'self', 'org' or a comma list of 12-digit account ids; got {value!r}")
    return sorted(set(accounts))


def enabled_regions(ec2, available: list[str]) -> list[str]:
    """Regions enabled for the account (DescribeRegions without AllRegions lists only those) that offer Neptune."""
    enabled = {r["RegionName"] for r in ec2.describe_regions()["Regions"]}
    return sorted(enabled & set(available))


def key_account(key_arn: str) -> str | None:
    try:
        return ArnParser().parse_arn(key_arn)["account"] or None
    except InvalidArnException:
        return None


class KeyDirectory:
    """Key classification by DescribeKey, cached per account and key ARN for the whole scan.

    Per account, not per key alone: what an account's findings say about a key is what that account's
    own role can see, so a result never depends on which account happened to ask first.
    """

    def __init__(self):
        self._keys: dict[tuple[str, str], KeyInfo] = {}
        self._lock = threading.Lock()

    def classify(self, kms, key_arn: str, account_id: str) -> KeyInfo:
        with self._lock:
            cached = self._keys.get((account_id, key_arn))
        if cached is not None:
            return cached
        try:
            metadata = kms.describe_key(KeyId=key_arn)["KeyMetadata"]
            info = KeyInfo(arn=metadata["Arn"], manager=KeyManager(metadata["KeyManager"]), state=metadata["KeyState"])
        except ClientError as error:
            owner = key_account(key_arn)
            if owner is None or owner == account_id:
                # Same account: we cannot tell an AWS-managed key from a CMK without DescribeKey, so do not guess.
                raise InventoryError(f"cannot classify key {key_arn}: {error_message(error)}") from error
            # AWS-managed keys cannot be used across accounts, so a key from another account is a CMK.
            info = KeyInfo(arn=key_arn, manager=KeyManager.CUSTOMER, lookup_error=error_message(error))
        with self._lock:
            self._keys[(account_id, key_arn)] = info
        return info


class RegionKeys:
    """One account-region's use of the KeyDirectory: each key that cannot be classified is asked once, remembered,
    and reported (`errors`), and its resources keep an unclassified key, so the rest of the region is still judged."""

    def __init__(self, clients: ClientFactory, account_id: str, region: str, keys: KeyDirectory):
        self._clients, self._account_id, self._region, self._keys = clients, account_id, region, keys
        self.errors: dict[str, str] = {}

    def info(self, key_arn: str) -> KeyInfo:
        if key_arn in self.errors:
            return KeyInfo(arn=key_arn, manager=None, lookup_error=self.errors[key_arn])
        try:
            return self._keys.classify(self._clients.client("kms", self._region), key_arn, self._account_id)
        except InventoryError as error:
            self.errors[key_arn] = str(error)
            return KeyInfo(arn=key_arn, manager=None, lookup_error=str(error))


def _pages(client, operation: str, result_key: str, **selection):
    paginator = client.get_paginator(operation)
    for page in paginator.paginate(Filters=NEPTUNE_ONLY, PaginationConfig={"PageSize": PAGE_SIZE}, **selection):
        # The engine filter is honoured by Neptune, but the API is shared with RDS: keep only Neptune.
        yield from (item for item in page[result_key] if item.get("Engine") == "neptune")


def read_region(clients: ClientFactory, account_id: str, region: str, keys: KeyDirectory,
                cluster_id: str | None = None, snapshot_id: str | None = None):
    """All Neptune clusters and snapshots of one account-region (or only the one cluster or snapshot named), each
    with its key classified.

    Returns (resources, key_errors): a key that cannot be classified leaves its resources with an
    unclassified key and is reported, so that the rest of the region is still evaluated.
    """
    # Neptune's management API is RDS's (the same endpoint and actions). RDS's model of its answer declares each
    # cluster's and snapshot's TagList, which Neptune's model leaves out: reading through it saves a
    # ListTagsForResource per resource, which was a third of a scan's requests.
    # https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DBCluster.html (TagList)
    neptune = clients.client("rds", region)
    one = cluster_id or snapshot_id
    raw_clusters = [] if one and not cluster_id else list(
        _pages(neptune, "describe_db_clusters", "DBClusters", **({"DBClusterIdentifier": cluster_id} if cluster_id else {})))
    raw_snapshots = [] if one and not snapshot_id else list(
        _pages(neptune, "describe_db_cluster_snapshots", "DBClusterSnapshots",
               **({"DBClusterSnapshotIdentifier": snapshot_id} if snapshot_id else {"IncludeShared": True})))

    region_keys = RegionKeys(clients, account_id, region, keys)

    def key_for(raw: dict) -> KeyInfo | None:
        key_arn = raw.get("KmsKeyId")
        return region_keys.info(key_arn) if raw.get("StorageEncrypted") and key_arn else None

    def common(raw: dict) -> dict:
        """What clusters and snapshots report alike: where they are, their state and their encryption."""
        encrypted = bool(raw.get("StorageEncrypted"))
        return {"account_id": account_id, "region": region, "status": raw.get("Status", "unknown"),
                "storage_encrypted": encrypted, "kms_key_id": raw.get("KmsKeyId") if encrypted else None, "key": key_for(raw),
                "tags": tag_map(raw["TagList"]) if "TagList" in raw else None}

    resources = [
        Cluster(identifier=raw["DBClusterIdentifier"], arn=raw["DBClusterArn"], engine_version=raw.get("EngineVersion"),
                **common(raw))
        for raw in raw_clusters
    ]
    resources += [
        ClusterSnapshot(identifier=raw["DBClusterSnapshotIdentifier"], arn=raw["DBClusterSnapshotArn"],
                        cluster_identifier=raw.get("DBClusterIdentifier", ""), snapshot_type=raw.get("SnapshotType", "manual"),
                        **common(raw))
        for raw in raw_snapshots
    ]
    return resources, list(region_keys.errors.values())


def resource_tags(clients: ClientFactory, region: str, arns: list[str]) -> dict[str, dict[str, str]]:
    """Each resource's tags, for the resources whose describe or list call carried none (Neptune Analytics')."""
    parser, neptune, analytics, tags = ArnParser(), None, None, {}
    for arn in arns:
        if parser.parse_arn(arn)["service"] == "neptune-graph":
            analytics = analytics or clients.client("neptune-graph", region)
            tags[arn] = dict(analytics.list_tags_for_resource(resourceArn=arn).get("tags") or {})
        else:
            neptune = neptune or clients.client("neptune", region)
            tags[arn] = tag_map(neptune.list_tags_for_resource(ResourceName=arn).get("TagList", []))
    return tags


def retention_reason(tags: dict[str, str]) -> str | None:
    """Why a (failing) resource is kept on purpose, from the tags a remediation put on it: the original it replaced,
    retained until decommission, or the snapshot it took, removed at decommission."""
    if RETIRED_BY in tags:
        return (f"retained until {tags.get(RETAINED_UNTIL, 'decommission')}, decommission pending "
                f"(replaced by {tags.get(REPLACED_BY)}; execution {tags[RETIRED_BY]})")
    if CREATED_BY in tags:
        return f"taken by remediation {tags[CREATED_BY]}; removed when it decommissions the original"
    return None
