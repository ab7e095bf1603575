"""Findings within minutes of a change: the CloudTrail management events the member accounts forward (stacks/
member_events.py) name the account-regions to scan again. A batch of events becomes each account-region once.

https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-service-event-cloudtrail.html
"""

from __future__ import annotations

from dataclasses import dataclass

from neptune_guard.aws import ACCOUNT_ID, REGION_NAME

CLOUDTRAIL = "AWS API Call via CloudTrail"
# The calls after which an account-region's verdicts can change, by the event source EventBridge gives them. Neptune's
# management API is RDS's (its events come from aws.rds); Neptune Analytics is neptune-graph.
WATCHED = {
    "aws.rds": ("CreateDBCluster", "RestoreDBClusterFromSnapshot", "RestoreDBClusterToPointInTime", "ModifyDBCluster",
                "DeleteDBCluster", "CreateDBClusterSnapshot", "CopyDBClusterSnapshot", "DeleteDBClusterSnapshot",
                "ModifyDBClusterSnapshotAttribute"),
    "aws.kms": ("DisableKey", "EnableKey", "ScheduleKeyDeletion", "CancelKeyDeletion", "DeleteImportedKeyMaterial",
                "ImportKeyMaterial"),
    "aws.neptune-graph": ("CreateGraph", "RestoreGraphFromSnapshot", "CreateGraphUsingImportTask", "DeleteGraph",
                          "CreateGraphSnapshot", "DeleteGraphSnapshot"),
}


@dataclass(frozen=True)
class Changes:
    account_regions: dict[tuple[str, str], tuple[int, ...]]  # each account-region once, with the indexes of its events
    ignored: tuple[str, ...]  # why each event that names no account-region to scan was set aside

    def by_account(self) -> dict[str, tuple[str, ...]]:
        """Each account's regions: one AssumeRole per account, its regions scanned together."""
        accounts: dict[str, list[str]] = {}
        for account, region in self.account_regions:
            accounts.setdefault(account, []).append(region)
        return {account: tuple(regions) for account, regions in accounts.items()}


def account_regions(events: list, accounts: tuple[str, ...] | None = None, regions: tuple[str, ...] | None = None) -> Changes:
    """The account-regions a batch of forwarded events asks to scan, within the configured accounts and regions (None:
    any). An event that is not a watched CloudTrail call of a real account and region in scope is set aside with its
    reason: it changes nothing and stops no other. EventBridge sets `account` and `region` of what a member puts on
    the bus, so a member names only itself (eb-cross-account.html)."""
    wanted: dict[tuple[str, str], list[int]] = {}
    ignored = []
    for index, event in enumerate(events):
        reason = _refusal(event)
        if not reason and accounts is not None and event["account"] not in accounts:
            reason = f"account {event['account']} is not one the scan is configured for"
        if not reason and regions is not None and event["region"] not in regions:
            reason = f"region {event['region']} is not one the scan is configured for"
        if reason:
            ignored.append(f"event {index}: {reason}")
            continue
        wanted.setdefault((event["account"], event["region"]), []).append(index)
    return Changes({pair: tuple(indexes) for pair, indexes in wanted.items()}, tuple(ignored))


def _refusal(event) -> str | None:
    if not isinstance(event, dict):
        return "not an EventBridge event"
    source, detail = event.get("source"), event.get("detail")
    if event.get("detail-type") != CLOUDTRAIL or source not in WATCHED or not isinstance(detail, dict):
        return f"not a watched CloudTrail call ({str(source)[:40]!r})"
    if detail.get("eventName") not in WATCHED[source]:
        return f"{source} call {str(detail.get('eventName'))[:60]!r} is not watched"
    account, region = event.get("account"), event.get("region")
    if not isinstance(account, str) or not ACCOUNT_ID.match(account):
        return f"account {str(account)[:20]!r} is not an account id"
    if not isinstance(region, str) or not REGION_NAME.match(region):
        return f"region {str(region)[:30]!r} is not a region name"
    if detail.get("errorCode"):
        return f"the call failed ({str(detail['errorCode'])[:60]}): nothing changed"
    return None
