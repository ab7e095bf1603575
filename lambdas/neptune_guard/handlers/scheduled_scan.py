"""The scheduled scan's steps (state_machines/scheduled_scan.asl.json): list the accounts, scan one account (a
Distributed Map item), summarize the run's coverage. The state machine names the step in the payload.

Configuration as the single-Lambda detector's (neptune_guard.options), plus RUNS_BUCKET (the run's files) and
MINIMUM_COVERAGE (the share of accounts that must be covered in full, 0 to 1) and
MAP_CONCURRENCY (how many accounts are scanned at once)."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from aws_lambda_powertools.utilities.validation import SchemaValidationError, validate

from neptune_guard import aws
from neptune_guard.detect import fanout
from neptune_guard.options import METRICS_NAMESPACE, ConfigurationError, options_from_environment
from neptune_guard.scanner import ScanOptions, resolve_accounts, scan, stop_starting_before

RUN_KEY = r"^runs/[\w-]{1,80}/"
EVENT_SCHEMA = {
    "oneOf": [
        {"type": "object", "required": ["step", "run"], "additionalProperties": False,
         "properties": {"step": {"const": "list_accounts"}, "run": {"type": "string", "pattern": r"^[\w-]{1,80}$"}}},
        {"type": "object", "required": ["step", "account_id"], "additionalProperties": False,
         "properties": {"step": {"const": "scan_account"}, "account_id": {"type": "string", "pattern": r"^\d{12}$"}}},
        {"type": "object", "required": ["step", "accounts_key", "manifest_key"], "additionalProperties": False,
         "properties": {"step": {"const": "summarize"},
                        "accounts_key": {"type": "string", "pattern": RUN_KEY + r"accounts\.json$"},
                        "manifest_key": {"anyOf": [{"type": "string", "pattern": RUN_KEY + r"[\w./-]+manifest\.json$"}, {"type": "null"}]},
                        "map_error": {"type": ["object", "null"]}}},
    ],
}

logger = Logger()
# Only the handler is traced: patching botocore would trace every one of a large scan's requests, at about a tenth
# of its CPU, and overflow the trace's segment limits long before the Organization is covered.
tracer = Tracer(auto_patch=False)
metrics = Metrics(namespace=METRICS_NAMESPACE)
# One session for every invocation a warm function serves: building one costs 0.3 to 0.5 s of CPU.
SESSION = aws.scan_session()


class InvalidScanEvent(Exception):
    """The event is not one the scheduled scan's state machine sends."""


def _bucket() -> str:
    bucket = os.environ.get("RUNS_BUCKET", "")
    if not bucket:
        raise ConfigurationError("bad scan configuration: RUNS_BUCKET is not set")
    return bucket


def _minimum_coverage() -> float:
    value = os.environ.get("MINIMUM_COVERAGE", "1")
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0 <= share <= 1:
        raise ConfigurationError(f"bad scan configuration: MINIMUM_COVERAGE must be a share from 0 to 1, got {value!r}")
    return share


def _map_concurrency() -> int:
    value = os.environ.get("MAP_CONCURRENCY", "100")
    if not value.isdigit() or not 1 <= int(value) <= 10_000:  # the Distributed Map's own limit
        raise ConfigurationError(f"bad scan configuration: MAP_CONCURRENCY must be from 1 to 10000, got {value!r}")
    return int(value)


def list_accounts(event: dict, context: LambdaContext) -> dict:
    options, bucket, concurrency = options_from_environment(), _bucket(), _map_concurrency()
    accounts = resolve_accounts(SESSION, options)
    key = f"runs/{event['run']}/accounts.json"
    fanout.write_accounts(SESSION.client("s3", config=aws.CLIENT_CONFIG), bucket, key, accounts)
    logger.info("accounts listed", accounts=len(accounts), key=key)
    return {"accounts_key": key, "accounts": len(accounts), "map_concurrency": concurrency}


def scan_account(event: dict, context: LambdaContext) -> dict:
    options = options_from_environment()
    stop_starting_at = stop_starting_before(context.get_remaining_time_in_millis())
    account_id = event["account_id"]
    result = scan(ScanOptions(accounts=account_id, role_name=options.role_name, regions=options.regions,
                              concurrency=options.concurrency, publish=options.publish, stop_starting_at=stop_starting_at,
                              read_graphs=options.read_graphs),
                  session=SESSION)
    outcome = fanout.account_outcome(account_id, result)
    for error in result.all_errors:
        logger.warning("scan fault", account_id=error.account_id, region=error.region, detail=error.message)
    return outcome.to_dict()


def summarize(event: dict, context: LambdaContext) -> dict:
    s3 = SESSION.client("s3", config=aws.CLIENT_CONFIG)
    bucket, minimum = _bucket(), _minimum_coverage()
    listed = fanout.read_accounts(s3, bucket, event["accounts_key"])
    outcomes, items_failed = ([], 0) if event["manifest_key"] is None else fanout.read_results(s3, bucket, event["manifest_key"])
    if event.get("map_error"):
        logger.error("the Map run failed", **{k: str(v)[:1000] for k, v in event["map_error"].items()})
    coverage = fanout.coverage(listed, outcomes, items_failed, minimum, map_failed=bool(event.get("map_error")))
    for name in ("accounts_covered", "accounts_partly_covered", "items_failed", "account_regions_scanned",
                 "account_regions_failed", "account_regions_not_reached", "account_regions_unpublished",
                 "account_regions_partly_read", "account_regions_without_security_hub"):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=getattr(coverage, name))
    metrics.add_metric(name="accounts_unreached", unit=MetricUnit.Count, value=len(coverage.accounts_unreached))
    metrics.add_metric(name="coverage", unit=MetricUnit.Percent, value=coverage.share * 100)
    log = logger.info if coverage.met else logger.error
    log("scheduled scan summarized", **coverage.to_dict())
    return coverage.to_dict()


STEPS = {"list_accounts": list_accounts, "scan_account": scan_account, "summarize": summarize}


@metrics.log_metrics
@tracer.capture_lambda_handler
@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    try:
        validate(event=event, schema=EVENT_SCHEMA)
    except SchemaValidationError as error:
        raise InvalidScanEvent(f"not a Neptune Guard scheduled-scan event: {error}") from None
    try:
        return STEPS[event["step"]](event, context)
    except fanout.RunFilesError as error:
        logger.error(str(error))
        raise
