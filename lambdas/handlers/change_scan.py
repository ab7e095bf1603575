"""The targeted scan: CloudTrail calls forwarded from the member accounts, queued, arrive here in batches (the queue's
batching window is the debounce); each account-region they name is scanned once and published. Configuration as the
detector's (neptune_guard.options); ACCOUNTS and REGIONS do not apply: the events name both."""

from __future__ import annotations

import json

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import SQSEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from neptune_guard import aws, changes
from neptune_guard.options import options_from_environment
from neptune_guard.scanner import ScanOptions, scan

logger = Logger()
tracer = Tracer(auto_patch=False)
metrics = Metrics()
SESSION = aws.scan_session()


def _body(record) -> object:
    try:
        return json.loads(record.body)
    except (TypeError, ValueError):
        return None


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context
@event_source(data_class=SQSEvent)
def handler(event: SQSEvent, context: LambdaContext) -> dict:
    options = options_from_environment()
    wanted = changes.account_regions([_body(record) for record in event.records])
    for reason in wanted.ignored:
        logger.warning("event set aside", reason=reason)
    scanned, errors = 0, 0
    for account_id, region in wanted.account_regions:
        result = scan(ScanOptions(accounts=account_id, role_name=options.role_name, regions=(region,), concurrency=1, publish=True),
                      session=SESSION)
        scanned += len(result.scanned_units)
        errors += len(result.all_errors)
        for error in result.all_errors:
            logger.error("scan fault", account_id=error.account_id, region=error.region, detail=error.message)
        logger.info("account-region rescanned after a change", account_id=account_id, region=region,
                    findings_failed=sum(1 for e in result.evaluations if e.status.value == "FAILED"))
    metrics.add_metric(name="change_scans", unit=MetricUnit.Count, value=len(wanted.account_regions))
    metrics.add_metric(name="change_scan_errors", unit=MetricUnit.Count, value=errors)
    return {"account_regions": [list(pair) for pair in wanted.account_regions], "scanned": scanned, "errors": errors,
            "ignored": list(wanted.ignored)}
