"""A scan: accounts, then their regions, then one unit of work per account-region, run concurrently.

A fault in one account or account-region is recorded and never stops the others. The unit of work reads (detect/),
evaluates (detect/checks.py) and, when asked, publishes (findings/): it sits above both, beside the CLI and the handlers.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Callable

import boto3
from botocore.utils import ArnParser
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from neptune_guard import aws
from neptune_guard.detect import checks, graphs, inventory
from neptune_guard.findings import securityhub
from neptune_guard.models import GRAPH, GRAPH_SNAPSHOT, NOT_REACHED, ScanError, ScanResult, Status, UnitResult

_ARNS = ArnParser()


class ScanSetupError(Exception):
    """The scan cannot start at all (for example the Organization cannot be listed)."""


@dataclass(frozen=True)
class ScanOptions:
    accounts: str = "self"  # "self", "org", or a comma list of account ids
    role_name: str = aws.DEFAULT_AUDIT_ROLE
    regions: tuple[str, ...] | None = None  # None: every region enabled for each account
    concurrency: int = 16
    publish: bool = False  # import findings into each account-region's Security Hub
    stop_starting_at: float | None = None  # time.monotonic() after which no account-region starts (a Lambda's limit)
    read_graphs: bool = True  # False: Neptune Analytics is out of scope (say, an Organization whose SCPs deny it)


FINISHING_RESERVE_SECONDS = 120  # the slowest account-region seen, with publishing, and then some


def stop_starting_before(remaining_ms: int) -> float:
    """The ScanOptions.stop_starting_at of a Lambda with `remaining_ms` left: late enough to use the time, early enough
    to finish the running account-regions and publish them."""
    return time.monotonic() + remaining_ms / 1000 - FINISHING_RESERVE_SECONDS


@dataclass(frozen=True)
class AccountContext:
    account_id: str
    clients: aws.ClientFactory
    regions: list[str]


def resolve_accounts(session: boto3.Session, options: ScanOptions) -> list[str]:
    if options.accounts not in ("self", "org"):
        return inventory.parse_account_list(options.accounts)
    try:
        if options.accounts == "self":
            return [aws.caller_account(session)]
        organizations = session.client("organizations", region_name=aws.home_region(session), config=aws.CLIENT_CONFIG)
        return inventory.organization_accounts(organizations)
    except (ClientError, BotoCoreError) as error:
        raise ScanSetupError(inventory.error_message(error)) from error


def open_account(session: boto3.Session, sts, account_id: str, options: ScanOptions) -> AccountContext:
    """Assume the audit role and find the account's regions. Only `self` uses the caller's own credentials:
    otherwise the security account is scanned through its audit role too, so that the detector's own role
    needs nothing but sts:AssumeRole on the member roles."""
    region = aws.home_region(session)
    use_own = options.accounts == "self"
    partition = aws.partition_of(session, region)
    credentials = None if use_own else aws.assume_role_credentials(sts, partition, account_id, options.role_name)
    clients = aws.ClientFactory(session, credentials)
    if options.regions:
        regions = list(options.regions)
    else:
        regions = inventory.enabled_regions(clients.client("ec2", region), session.get_available_regions("neptune"))
    return AccountContext(account_id, clients, regions)


def scan_unit(context: AccountContext, region: str, keys: inventory.KeyDirectory, options: ScanOptions) -> UnitResult:
    unit = UnitResult(account_id=context.account_id, region=region)
    if options.stop_starting_at is not None and time.monotonic() >= options.stop_starting_at:
        unit.errors.append(ScanError(context.account_id, region, NOT_REACHED))  # an error: nothing is archived for it
        return unit
    publish = options.publish
    try:
        resources, key_errors = inventory.read_region(context.clients, context.account_id, region, keys)
        try:
            graph_resources, graph_errors = ([], []) if not options.read_graphs else graphs.read_region(
                context.clients, context.account_id, region, keys)
        except graphs.GraphsUnreadable as error:
            graph_resources, graph_errors = [], []
            unit.partial_errors.append(ScanError(context.account_id, region, str(error)))
            unit.unread_types |= {GRAPH, GRAPH_SNAPSHOT}
    except (ClientError, BotoCoreError) as error:
        unit.errors.append(ScanError(context.account_id, region, inventory.error_message(error)))
        return unit
    except (ResponseParserError, KeyError, TypeError) as error:  # a malformed response is this unit's fault alone
        unit.errors.append(ScanError(context.account_id, region, f"malformed response from AWS: {type(error).__name__}: {error}"[:500]))
        return unit
    if not options.read_graphs:
        unit.unread_types |= {GRAPH, GRAPH_SNAPSHOT}  # out of scope, not a fault: their findings are left as they are
    unit.resources = resources + graph_resources
    unit.errors += [ScanError(context.account_id, region, message) for message in key_errors + graph_errors]
    for resource in unit.resources:
        unit.evaluations += checks.evaluate(resource)
    # Only failing resources of this account: their findings carry tags, and a remediation's retained ones say so. A
    # snapshot shared into the account is its owner's; only the owner may read its tags.
    failing = {arn for arn in {e.resource_arn for e in unit.evaluations if e.status is Status.FAILED}
               if _ARNS.parse_arn(arn)["account"] == context.account_id}
    if failing:
        unit.tags = {r.arn: r.tags for r in unit.resources if r.arn in failing and r.tags is not None}
        try:
            unit.tags |= inventory.resource_tags(context.clients, region, sorted(failing - unit.tags.keys()))
        except (ClientError, BotoCoreError) as error:
            unit.errors.append(ScanError(context.account_id, region, f"reading tags: {inventory.error_message(error)}"))
        reasons = {arn: inventory.retention_reason(tags) for arn, tags in unit.tags.items()}
        unit.evaluations = [replace(e, retained=reasons.get(e.resource_arn)) for e in unit.evaluations]
    if publish:
        unit.publish_errors = securityhub.publish_unit(context.clients, unit, aws.partition_of(context.clients.session, region))
    return unit


def scan(
    options: ScanOptions,
    session: boto3.Session | None = None,
    on_unit_done: Callable[[UnitResult, int, int], None] | None = None,
) -> ScanResult:
    """Scan every account-region named by `options`. `on_unit_done(unit, done, known)` reports progress."""
    session = session or aws.scan_session()
    accounts = resolve_accounts(session, options)
    result = ScanResult()
    keys = inventory.KeyDirectory()
    sts = aws.ClientFactory(session).client("sts", aws.home_region(session))  # regional endpoint; shared by all accounts
    known_units = 0

    with ThreadPoolExecutor(max_workers=max(1, options.concurrency), thread_name_prefix="scan") as pool:
        pending: dict[Future, str] = {
            pool.submit(open_account, session, sts, account_id, options): account_id for account_id in accounts
        }
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                account_id = pending.pop(future)
                try:
                    outcome = future.result()
                except (ClientError, BotoCoreError) as error:
                    result.errors.append(ScanError(account_id, None, inventory.error_message(error)))
                    continue
                except (ResponseParserError, KeyError, TypeError) as error:
                    result.errors.append(ScanError(account_id, None, f"malformed response from AWS: {type(error).__name__}: {error}"[:500]))
                    continue
                if isinstance(outcome, AccountContext):
                    known_units += len(outcome.regions)
                    for region in outcome.regions:
                        pending[pool.submit(scan_unit, outcome, region, keys, options)] = account_id
                else:
                    result.units.append(outcome)
                    if on_unit_done:
                        on_unit_done(outcome, len(result.units), known_units)

    result.units.sort(key=lambda unit: (unit.account_id, unit.region))
    result.errors.sort(key=lambda error: (error.account_id, error.region or ""))
    return result
