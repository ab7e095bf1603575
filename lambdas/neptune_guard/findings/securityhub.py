"""Publishing evaluations to each member account's own Security Hub, and archiving resolved findings."""

from __future__ import annotations

import json
import random
import time
from datetime import datetime, timezone

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from neptune_guard.aws import ClientFactory
from neptune_guard.detect import checks
from neptune_guard.detect.inventory import error_message
from neptune_guard.findings import asff
from neptune_guard.models import HUB_NOT_ENABLED, ScanError, UnitResult

BATCH_LIMIT = 100
BATCH_BYTES = 5 * 1024 * 1024  # the API's request limit is 6 MB: leave headroom for the envelope
IMPORT_ATTEMPTS = 3
RETRY_BASE_SECONDS = 0.5


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def existing_findings(securityhub, product: str) -> dict[str, dict]:
    """This tool's ACTIVE findings in the account-region, by Id."""
    filters = {
        "ProductArn": [{"Value": product, "Comparison": "EQUALS"}],
        "GeneratorId": [{"Value": asff.GENERATOR_PREFIX, "Comparison": "PREFIX"}],
        "RecordState": [{"Value": "ACTIVE", "Comparison": "EQUALS"}],
    }
    found = {}
    for page in securityhub.get_paginator("get_findings").paginate(Filters=filters, PaginationConfig={"PageSize": 100}):
        found.update((finding["Id"], finding) for finding in page["Findings"])
    return found


def batches(findings: list[dict]):
    """Batches of at most 100 findings and 5 MB."""
    batch, size = [], 0
    for finding in findings:
        length = len(json.dumps(finding))
        if batch and (len(batch) == BATCH_LIMIT or size + length > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(finding)
        size += length
    if batch:
        yield batch


def import_findings(securityhub, findings: list[dict]) -> list[str]:
    """Import in batches, retrying the FailedFindings that may succeed later. Returns what still failed."""
    problems = []
    for batch in batches(findings):
        pending = batch
        for attempt in range(IMPORT_ATTEMPTS):
            if attempt:  # back off before retrying what Security Hub could not take yet (full jitter)
                time.sleep(random.uniform(0, RETRY_BASE_SECONDS * 2 ** attempt))
            response = securityhub.batch_import_findings(Findings=pending)
            failed = {f["Id"]: f for f in response.get("FailedFindings", [])}
            retryable = [f for f in pending if f["Id"] in failed and not failed[f["Id"]].get("ErrorCode", "").startswith("Invalid")]
            final = [failed[f["Id"]] for f in pending if f["Id"] in failed and f not in retryable]
            problems += [f"finding {f['Id']} rejected: {f.get('ErrorCode')}: {f.get('ErrorMessage')}" for f in final]
            pending = retryable
            if not pending:
                break
        problems += [f"finding {f['Id']} not imported after {IMPORT_ATTEMPTS} attempts" for f in pending]
    return problems


def _resource_type(finding: dict) -> str | None:
    """The resource type of one of our findings, from the check that made it (GeneratorId)."""
    check = checks.CHECKS_BY_ID.get(str(finding.get("GeneratorId", "")).removeprefix(asff.GENERATOR_PREFIX))
    return check.resource_type if check else None


def publish_unit(clients: ClientFactory, unit: UnitResult, partition: str) -> list[ScanError]:
    """Import one account-region's findings into its own Security Hub; archive what is gone.

    Archival happens only when the unit's inventory was complete: a failed scan archives nothing.
    """
    securityhub = clients.client("securityhub", unit.region)
    product = asff.product_arn(partition, unit.region, unit.account_id)
    now = utc_now()
    try:
        existing = existing_findings(securityhub, product)
        resources = {resource.arn: resource for resource in unit.resources}
        findings = []
        for evaluation in unit.evaluations:
            resource = resources[evaluation.resource_arn]
            previous = existing.get(asff.finding_id(resource.arn, evaluation.check_id))
            # Title, Description and Remediation are capped in asff.build, far below the 240 KB a finding may be.
            findings.append(asff.build(evaluation, resource, partition, now, previous and previous["CreatedAt"],
                                       unit.tags.get(resource.arn), asff.remediation_fields(previous)))
        if unit.complete:
            current = {finding["Id"] for finding in findings}
            # A finding of a type left unread, or of no check we know, is left as it is: its resource may still be there.
            findings += [asff.archived(old, now) for finding_id, old in existing.items() if finding_id not in current
                         and not (unit.unread_types and _resource_type(old) in unit.unread_types | {None})]
        problems = import_findings(securityhub, findings)
    except ResponseParserError as error:
        return [ScanError(unit.account_id, unit.region, f"publishing failed: malformed response from Security Hub: {error}"[:500])]
    except (ClientError, BotoCoreError) as error:
        code = error.response.get("Error", {}).get("Code") if isinstance(error, ClientError) else None
        if code == "InvalidAccessException":
            return [ScanError(unit.account_id, unit.region, f"{HUB_NOT_ENABLED}: {error_message(error)}")]
        return [ScanError(unit.account_id, unit.region, f"publishing failed: {error_message(error)}")]
    return [ScanError(unit.account_id, unit.region, problem) for problem in problems]
