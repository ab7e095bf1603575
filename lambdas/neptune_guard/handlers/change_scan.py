"""The targeted scan: CloudTrail calls forwarded from the member accounts, queued, arrive here in batches (the queue's
batching window is the debounce); each account-region they name is scanned once and published, each account's regions
together. Configuration as the detector's (neptune_guard.options): events outside its ACCOUNTS and REGIONS are set
aside."""

from __future__ import annotations

import json

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import SQSEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from neptune_guard import aws
from neptune_guard.detect import changes
from neptune_guard.handlers import envelopes
from neptune_guard.options import METRICS_NAMESPACE, options_from_environment
from neptune_guard.scanner import ScanOptions, scan, stop_starting_before

logger = Logger()
tracer = Tracer(auto_patch=False)
metrics = Metrics(namespace=METRICS_NAMESPACE)
SESSION = aws.scan_session()


def _body(record) -> object:
    try:
        return json.loads(record.body)
    except (TypeError, ValueError):
        return None


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context
@envelopes.checked(envelopes.SQS, "an SQS batch")
@event_source(data_class=SQSEvent)
def handler(event: SQSEvent, context: LambdaContext) -> dict:
    """Scans what the batch names and reports, as failed batch items, the messages of every account-region that was not
    scanned and published in full: SQS delivers those again (then to the dead-letter queue), the others are done."""
    options = options_from_environment()
    records = list(event.records)
    if options.accounts == "org":
        scope = None  # any member: only the Organization may put events on the bus
    elif options.accounts == "self":
        scope = (context.invoked_function_arn.split(":")[4],)
    else:
        scope = tuple(options.accounts.split(","))
    wanted = changes.account_regions([_body(record) for record in records], scope, options.regions)
    for reason in wanted.ignored:
        logger.warning("event set aside", reason=reason)
    # Stop starting accounts while there is time to finish the running ones: the rest come back with their messages.
    stop_starting_at = stop_starting_before(context.get_remaining_time_in_millis())
    done: set[tuple[str, str]] = set()
    errors = 0
    for account_id, regions in wanted.by_account().items():
        result = scan(ScanOptions(accounts=account_id, role_name=options.role_name, regions=regions, concurrency=options.concurrency,
                                  publish=True, stop_starting_at=stop_starting_at, read_graphs=options.read_graphs), session=SESSION)
        errors += len(result.all_errors)
        for error in result.all_errors:
            logger.error("scan fault", account_id=error.account_id, region=error.region, detail=error.message)
        # Security Hub off there is the account-region's setting: retrying would change nothing.
        done |= {(unit.account_id, unit.region) for unit in result.units if unit.read_in_full and not unit.unpublished}
    retry = sorted({index for pair, indexes in wanted.account_regions.items() if pair not in done for index in indexes})
    metrics.add_metric(name="change_scans", unit=MetricUnit.Count, value=len(done))
    metrics.add_metric(name="change_scan_errors", unit=MetricUnit.Count, value=errors)
    logger.info("changes rescanned", scanned=sorted(done), retried=len(retry), ignored=len(wanted.ignored))
    return {"batchItemFailures": [{"itemIdentifier": records[index].message_id} for index in retry],
            "account_regions": [list(pair) for pair in wanted.account_regions], "scanned": len(done), "errors": errors,
            "ignored": list(wanted.ignored)}
