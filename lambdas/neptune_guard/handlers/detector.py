"""The scheduled detector: scan the Organization and publish to Security Hub. Configuration comes from
the environment: ACCOUNTS (self|org|ids, default org), AUDIT_ROLE_NAME, REGIONS (comma list; empty for
every enabled region), CONCURRENCY, PUBLISH (true|false)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from neptune_guard.handlers import envelopes
from neptune_guard.models import NOT_REACHED, ScanResult, UnitResult
from neptune_guard.options import METRICS_NAMESPACE, ConfigurationError, options_from_environment
from neptune_guard.scanner import scan, stop_starting_before


logger = Logger()
tracer = Tracer(auto_patch=False)  # see handlers.scheduled_scan: tracing every request costs a tenth of the CPU
metrics = Metrics(namespace=METRICS_NAMESPACE)


def log_unit(unit: UnitResult, done: int, known: int) -> None:
    failed = sum(1 for e in unit.evaluations if e.status.value == "FAILED")
    errors = [e.message for e in unit.errors + unit.partial_errors + unit.publish_errors]
    log = logger.warning if errors else logger.info
    log("account-region scanned", account_id=unit.account_id, region=unit.region, resources=len(unit.resources),
        failed_checks=failed, errors=errors, progress=f"{done}/{known}")


def record_metrics(result: ScanResult) -> dict:
    accounts = {u.account_id for u in result.units} | {e.account_id for e in result.errors}
    failed_accounts = {e.account_id for e in result.errors}
    summary = {
        "accounts_scanned": len(accounts - failed_accounts),
        "accounts_failed": len(failed_accounts),
        "account_regions_scanned": len(result.scanned_units),
        "account_regions_failed": len(result.units) - len(result.scanned_units),
        "findings_failed": sum(1 for e in result.evaluations if e.status.value == "FAILED"),
        "findings_passed": sum(1 for e in result.evaluations if e.status.value == "PASSED"),
        "errors": len(result.all_errors),
        "account_regions_not_reached": sum(1 for e in result.all_errors if e.message == NOT_REACHED),
        "account_regions_unpublished": sum(1 for unit in result.units if unit.unpublished),
        "account_regions_partly_read": sum(1 for unit in result.units if unit.complete and not unit.read_in_full),
        "account_regions_without_security_hub": sum(1 for unit in result.units if unit.without_security_hub),
    }
    for name in ("accounts_scanned", "accounts_failed", "account_regions_scanned", "account_regions_failed", "account_regions_not_reached",
                 "account_regions_unpublished", "account_regions_partly_read", "account_regions_without_security_hub"):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=summary[name])
    by_check = Counter((e.check_id, e.status.value) for e in result.evaluations)
    for (check_id, status), count in sorted(by_check.items()):
        with single_metric(name="findings", unit=MetricUnit.Count, value=count, namespace=metrics.namespace) as metric:
            metric.add_dimension(name="check_id", value=check_id)
            metric.add_dimension(name="status", value=status)
    return summary


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context
@envelopes.checked(envelopes.EVENTBRIDGE, "a scheduled EventBridge event")
@event_source(data_class=EventBridgeEvent)
def handler(event: EventBridgeEvent, context: LambdaContext) -> dict:
    logger.info("scheduled scan starting", trigger=event.detail_type, rule=event.resources)
    # Stop starting account-regions while there is still time to finish the running ones and publish: every one
    # not reached is reported as an error and a metric, never silently left unpublished.
    stop_starting_at = stop_starting_before(context.get_remaining_time_in_millis())
    try:
        options = options_from_environment()
    except ConfigurationError as error:
        logger.error(str(error))
        raise
    result = scan(replace(options, stop_starting_at=stop_starting_at), on_unit_done=log_unit)
    summary = record_metrics(result)
    for error in result.all_errors:
        logger.error("scan fault", account_id=error.account_id, region=error.region, detail=error.message)
    logger.info("scheduled scan finished", **summary)
    return summary
