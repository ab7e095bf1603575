"""The scheduled scan at Organization scale: one Distributed Map item per account (state_machines/scheduled_scan.asl.json).

The account list goes to S3 and the Map reads it with an ItemReader; each item's outcome comes back through the
Map's ResultWriter. Neither passes through the execution's state, whose payload is limited to 256 KiB: an
Organization of any size fits.
https://docs.aws.amazon.com/step-functions/latest/dg/input-output-itemreader.html
https://docs.aws.amazon.com/step-functions/latest/dg/input-output-resultwriter.html
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from neptune_guard.aws import ACCOUNT_ID
from neptune_guard.models import NOT_REACHED, ScanResult

ERRORS_PER_ACCOUNT = 5  # an item's output names its first faults; the count says how many there were


class RunFilesError(Exception):
    """The run's files in S3 are missing or not what the workflow writes: the summary cannot count coverage."""


@dataclass(frozen=True)
class AccountOutcome:
    """What one Map item (one account) returns: counts, and its first faults."""

    account_id: str
    opened: bool  # the audit role was assumed and the account's regions listed
    account_regions: int
    scanned: int
    partly_read: int  # read, but some resource types not (Neptune Analytics denied, say)
    unpublished: int  # their findings could not all be published (access denied, throttled past the retries)
    without_security_hub: int  # Security Hub is not enabled there: the account-region's setting, reported, not a fault
    not_reached: int
    findings_failed: int
    findings_passed: int
    error_count: int
    errors: tuple[str, ...]

    def to_dict(self) -> dict:
        return {**asdict(self), "errors": list(self.errors)}

    @property
    def covered(self) -> bool:
        """Every account-region of the account was read in full (every resource type) and its findings published
        wherever Security Hub is on: a finding nobody can see detects nothing."""
        return self.opened and self.scanned == self.account_regions and not self.unpublished and not self.partly_read


def account_outcome(account_id: str, result: ScanResult) -> AccountOutcome:
    errors = result.all_errors
    return AccountOutcome(
        account_id=account_id,
        opened=not result.errors,  # account-level faults: the role could not be assumed or the regions not listed
        account_regions=len(result.units),
        scanned=len(result.scanned_units),
        partly_read=sum(1 for unit in result.units if unit.complete and not unit.read_in_full),
        unpublished=sum(1 for unit in result.units if unit.unpublished),
        without_security_hub=sum(1 for unit in result.units if unit.without_security_hub),
        not_reached=sum(1 for e in errors if e.message == NOT_REACHED),
        findings_failed=sum(1 for e in result.evaluations if e.status.value == "FAILED"),
        findings_passed=sum(1 for e in result.evaluations if e.status.value == "PASSED"),
        error_count=len(errors),
        errors=tuple(f"{e.account_id} {e.region or '-'}: {e.message}"[:300] for e in errors[:ERRORS_PER_ACCOUNT]),
    )


def outcome_from_output(output: dict) -> AccountOutcome:
    try:
        return AccountOutcome(**{**output, "errors": tuple(output["errors"])})
    except (TypeError, KeyError) as error:
        raise RunFilesError(f"an item's output is not an account outcome: {error}") from None


@dataclass(frozen=True)
class Coverage:
    accounts_listed: int
    accounts_covered: int
    accounts_partly_covered: int
    accounts_unreached: tuple[str, ...]  # listed, but no item reported on them (the item failed) or the role was refused
    items_failed: int
    account_regions_scanned: int
    account_regions_failed: int
    account_regions_not_reached: int
    account_regions_unpublished: int
    account_regions_partly_read: int
    account_regions_without_security_hub: int
    findings_failed: int
    findings_passed: int
    share: float  # accounts covered / accounts listed
    minimum_share: float
    map_failed: bool  # the Map itself failed (reading its items, writing its results): nothing it did can be counted

    @property
    def met(self) -> bool:
        return not self.map_failed and self.accounts_listed > 0 and self.share >= self.minimum_share

    def to_dict(self) -> dict:
        return {**asdict(self), "accounts_unreached": list(self.accounts_unreached), "met": self.met}


def coverage(listed: list[str], outcomes: list[AccountOutcome], items_failed: int, minimum_share: float,
             map_failed: bool = False) -> Coverage:
    """The run's coverage. An account counts as covered only when every one of its account-regions was read in full
    and published; one that no item reported on (its item failed after its retries) or whose role was refused is
    unreached. A run that listed no account, or whose Map failed, never meets its minimum."""
    reported = {o.account_id: o for o in outcomes}
    unreached = tuple(sorted(a for a in listed if a not in reported or not reported[a].opened))
    covered = sum(1 for a in listed if a in reported and reported[a].covered)
    return Coverage(
        accounts_listed=len(listed),
        accounts_covered=covered,
        accounts_partly_covered=sum(1 for a in listed if a in reported and reported[a].opened and not reported[a].covered),
        accounts_unreached=unreached,
        items_failed=items_failed,
        account_regions_scanned=sum(o.scanned for o in outcomes),
        account_regions_failed=sum(o.account_regions - o.scanned for o in outcomes),
        account_regions_not_reached=sum(o.not_reached for o in outcomes),
        account_regions_unpublished=sum(o.unpublished for o in outcomes),
        account_regions_partly_read=sum(o.partly_read for o in outcomes),
        account_regions_without_security_hub=sum(o.without_security_hub for o in outcomes),
        findings_failed=sum(o.findings_failed for o in outcomes),
        findings_passed=sum(o.findings_passed for o in outcomes),
        share=round(covered / len(listed), 4) if listed else 0.0,
        minimum_share=minimum_share,
        map_failed=map_failed,
    )


def write_accounts(s3, bucket: str, key: str, accounts: list[str]) -> None:
    """The Map's items: a JSON array, one account id per item."""
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(accounts).encode(), ContentType="application/json")


def read_accounts(s3, bucket: str, key: str) -> list[str]:
    accounts = _read_json(s3, bucket, key)
    if not isinstance(accounts, list) or not all(isinstance(a, str) and ACCOUNT_ID.match(a) for a in accounts):
        raise RunFilesError(f"s3://{bucket}/{key} is not a list of account ids")
    return accounts


def read_results(s3, bucket: str, manifest_key: str) -> tuple[list[AccountOutcome], int]:
    """(the outcomes of the items that succeeded, the number that failed), from the ResultWriter's manifest and result
    files. A succeeded item's output is a JSON string in its record's Output."""
    manifest = _read_json(s3, bucket, manifest_key)
    try:
        files = manifest["ResultFiles"]
        succeeded = [entry["Key"] for entry in files.get("SUCCEEDED", [])]
        failed = [entry["Key"] for entry in files.get("FAILED", []) + files.get("PENDING", [])]
    except (TypeError, KeyError) as error:
        raise RunFilesError(f"s3://{bucket}/{manifest_key} is not a Map Run manifest: {error}") from None
    outcomes = []
    for key in succeeded:
        for record in _records(s3, bucket, key):
            try:
                outcomes.append(outcome_from_output(json.loads(record["Output"])))
            except (KeyError, TypeError, json.JSONDecodeError) as error:
                raise RunFilesError(f"s3://{bucket}/{key}: a record without an account outcome: {error}") from None
    items_failed = sum(len(_records(s3, bucket, key)) for key in failed)
    return outcomes, items_failed


def _records(s3, bucket: str, key: str) -> list[dict]:
    records = _read_json(s3, bucket, key)
    if not isinstance(records, list):
        raise RunFilesError(f"s3://{bucket}/{key} is not a list of execution records")
    return records


def _read_json(s3, bucket: str, key: str):
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        raise RunFilesError(f"s3://{bucket}/{key} does not exist") from None
    except json.JSONDecodeError as error:
        raise RunFilesError(f"s3://{bucket}/{key} is not JSON: {error}") from None
