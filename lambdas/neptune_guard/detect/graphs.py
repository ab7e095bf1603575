"""Reading Neptune Analytics graphs and graph snapshots (the neptune-graph API) into typed records."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from neptune_guard.aws import ClientFactory
from neptune_guard.detect.inventory import KeyDirectory, RegionKeys, error_message
from neptune_guard.models import AWS_OWNED_KEY, Graph, GraphSnapshot, KeyInfo

# botocore cannot say where neptune-graph is offered: its endpoints come from a rule set, and
# get_available_regions("neptune-graph") is empty. These are the Regions the Neptune Analytics user guide lists; in
# any other region there is no endpoint to ask, so nothing is read there.
# https://docs.aws.amazon.com/neptune-analytics/latest/userguide/analytics-limits.html
REGIONS = frozenset({"us-east-1", "us-east-2", "us-west-2", "ap-southeast-1", "ap-northeast-1", "eu-west-1", "eu-west-2",
                     "eu-central-1"})
PAGE_SIZE = 100  # maxResults may be 1 to 100 (ListGraphs, ListGraphSnapshots)


def _pages(client, operation: str, result_key: str):
    for page in client.get_paginator(operation).paginate(PaginationConfig={"PageSize": PAGE_SIZE}):
        yield from page[result_key]


class GraphsUnreadable(Exception):
    """neptune-graph could not be read in an account-region: its graphs are unknown, its clusters are not."""


def read_region(clients: ClientFactory, account_id: str, region: str, keys: KeyDirectory) -> tuple[list, list[str]]:
    """Every graph and graph snapshot of one account-region, each with its key classified, and the keys that could not
    be classified. Raises GraphsUnreadable when they cannot be listed (a fault, a service control policy that denies
    Neptune Analytics): the region's clusters are still read, judged and archived; its graph findings are left as
    they are."""
    if region not in REGIONS:
        return [], []
    try:
        client = clients.client("neptune-graph", region)
        raw_graphs = list(_pages(client, "list_graphs", "graphs"))
        raw_snapshots = list(_pages(client, "list_graph_snapshots", "graphSnapshots"))
    except (ClientError, BotoCoreError) as error:
        raise GraphsUnreadable(f"Neptune Analytics: {error_message(error)}") from error
    except (ResponseParserError, KeyError, TypeError) as error:
        raise GraphsUnreadable(f"Neptune Analytics: malformed response from AWS: {type(error).__name__}: {error}"[:500]) from error

    region_keys = RegionKeys(clients, account_id, region, keys)

    def key_for(raw: dict) -> KeyInfo | None:
        key_arn = raw.get("kmsKeyIdentifier")
        # an AWS owned key is in no customer account: there is nothing to describe
        return None if key_arn in (None, AWS_OWNED_KEY) else region_keys.info(key_arn)

    try:
        resources = [
            Graph(account_id=account_id, region=region, identifier=raw["name"], graph_id=raw["id"], arn=raw["arn"],
                  status=raw.get("status", "unknown"), kms_key_id=raw.get("kmsKeyIdentifier"), key=key_for(raw))
            for raw in raw_graphs
        ]
        resources += [
            GraphSnapshot(account_id=account_id, region=region, identifier=raw["name"], snapshot_id=raw["id"], arn=raw["arn"],
                          status=raw.get("status", "unknown"), kms_key_id=raw.get("kmsKeyIdentifier"), key=key_for(raw),
                          source_graph_id=raw.get("sourceGraphId", ""))
            for raw in raw_snapshots
        ]
    except (KeyError, TypeError) as error:
        raise GraphsUnreadable(f"Neptune Analytics: malformed response from AWS: {type(error).__name__}: {error}"[:500]) from error
    return resources, list(region_keys.errors.values())

