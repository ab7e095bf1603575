"""From a Security Hub custom action ("Remediate with CMK") to a remediation execution.

A finding is evidence, not an order: anyone who may call BatchImportFindings in a member account can
import a finding that looks like ours. So each finding is checked on its own: it must be this tool's
(its own product in that account and region, our generator), its resource ARN must agree with its
account, region, type and details, and the resource, read again from AWS through the trigger's own
read role, must fail that check now by this tool's own evaluation. Anything else is skipped with its
reason, and the other findings still start. The execution name is derived from the resource, so a
double click (or a second finding of the same cluster) starts one execution.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from neptune_guard import aws
from neptune_guard.approve import workflow
from neptune_guard.detect import checks, inventory
from neptune_guard.detect.checks import CLUSTER_WORKFLOW, SNAPSHOT_WORKFLOW
from neptune_guard.findings import asff
from neptune_guard.models import Status
from neptune_guard.remediate import finding_notes
from neptune_guard.remediate.resources import InvalidRequest, parse_arn

RESOURCE_KINDS = {  # ASFF type -> (ARN resource type, Details key, identifier field, request field, workflow)
    "AwsRdsDbCluster": ("cluster", "AwsRdsDbCluster", "DbClusterIdentifier", "cluster_id", CLUSTER_WORKFLOW),
    "AwsRdsDbClusterSnapshot": ("cluster-snapshot", "AwsRdsDbClusterSnapshot", "DbClusterSnapshotIdentifier", "snapshot_id",
                                SNAPSHOT_WORKFLOW),
}


@dataclass(frozen=True)
class TriggerConfig:
    cluster_state_machine_arn: str
    snapshot_state_machine_arn: str
    target_key: str  # an alias present in every member account-region, or a key ARN
    remediation_role_name: str
    approval_timeout_seconds: int
    requested_by: str  # who starts the executions: the trigger's own identity (the custom action event names no person)
    access_role_name: str = "NeptuneGuardTriggerAccess"  # the member role the trigger reads the named resource with
    findings_role_name: str = aws.DEFAULT_AUDIT_ROLE  # the member role that imports this tool's findings (remediate/finding_notes.py)
    soak_seconds: int = 7 * 24 * 3600  # the deployment's safety durations: the execution states them explicitly
    metrics_settle_seconds: int = 600


class NotRemediable(Exception):
    pass


def claimed_resource(finding: dict) -> tuple[str, str, str, str, dict]:
    """(check id, account, region, ASFF type, resource) the finding claims, if it is this tool's and self-consistent."""
    if not isinstance(finding, dict):
        raise NotRemediable("not a finding")
    check_id = str(finding.get("GeneratorId", "")).removeprefix(asff.GENERATOR_PREFIX)
    if not str(finding.get("GeneratorId", "")).startswith(asff.GENERATOR_PREFIX) or check_id not in checks.CHECKS_BY_ID:
        raise NotRemediable("not a Neptune Guard finding")
    account, region = finding.get("AwsAccountId"), finding.get("Region")
    if not isinstance(account, str) or not aws.ACCOUNT_ID.match(account) or not isinstance(region, str) or not aws.REGION_NAME.match(region):
        raise NotRemediable("the finding names no valid account and region")
    resources = finding.get("Resources")
    if not isinstance(resources, list) or len(resources) != 1 or not isinstance(resources[0], dict):
        raise NotRemediable("a Neptune Guard finding names exactly one resource")
    resource = resources[0]
    try:
        arn = parse_arn(str(resource.get("Id")), "resource ARN")
    except InvalidRequest as error:
        raise NotRemediable(str(error)) from None
    expected_product = asff.product_arn(arn["partition"], region, account)
    if finding.get("ProductArn") != expected_product:
        raise NotRemediable(f"product {finding.get('ProductArn')!r} is not Neptune Guard's in {account} {region}")
    kind = RESOURCE_KINDS.get(resource.get("Type"))
    if kind is None:
        raise NotRemediable(f"resource type {resource.get('Type')!r} has no re-encryption workflow")
    arn_type, details_key, id_field, _, _ = kind
    identifier = ((resource.get("Details") or {}).get(details_key) or {}).get(id_field)
    if (arn["service"], arn["region"], arn["account"]) != ("rds", region, account) or resource.get("Region", region) != region \
            or arn["resource"] != f"{arn_type}:{identifier}":
        raise NotRemediable("the finding's resource ARN, account, region and details do not agree")
    return check_id, account, region, resource["Type"], {"arn": resource["Id"], "identifier": identifier}


def remediation_request(finding: dict, config: TriggerConfig, session: boto3.Session | None = None) -> tuple[str, dict]:
    """(state machine ARN, execution input) for a finding, or NotRemediable with the reason."""
    check_id, account, region, resource_type, resource = claimed_resource(finding)
    if finding.get("RecordState") != "ACTIVE":
        raise NotRemediable(f"record state is {finding.get('RecordState')}")
    if (finding.get("Workflow") or {}).get("Status") in ("RESOLVED", "SUPPRESSED"):
        raise NotRemediable(f"workflow status is {finding['Workflow']['Status']}")
    _, _, _, field, check_workflow = RESOURCE_KINDS[resource_type]
    if checks.CHECKS_BY_ID[check_id].workflow != check_workflow:
        raise NotRemediable("this check has no re-encryption workflow (a key that cannot decrypt is re-enabled, not re-encrypted)")
    if not fails_now(config, account, region, check_id, resource, field, session):
        raise NotRemediable(f"{resource['identifier']} does not fail {check_id} now (read again from AWS): nothing to remediate")
    request = {
        "account_id": account, "region": region, field: resource["identifier"], "target_key": config.target_key,
        "role_name": config.remediation_role_name, "approval_timeout_seconds": config.approval_timeout_seconds,
        **({"soak_seconds": config.soak_seconds, "metrics_settle_seconds": config.metrics_settle_seconds} if field == "cluster_id" else {}),
        "finding": {"id": finding["Id"], "product_arn": finding["ProductArn"]}, "requested_by": config.requested_by,
    }
    return (config.cluster_state_machine_arn if field == "cluster_id" else config.snapshot_state_machine_arn), request


def access_session(config: TriggerConfig, account: str, region: str, session: boto3.Session | None = None) -> boto3.Session:
    return aws.assume_role(session or aws.new_session(region), account, config.access_role_name, region,
                           "neptune-guard-trigger")


def fails_now(config: TriggerConfig, account: str, region: str, check_id: str, resource: dict, field: str,
              session: boto3.Session | None) -> bool:
    """This tool's own verdict on the resource as AWS describes it now."""
    clients = aws.ClientFactory(access_session(config, account, region, session))
    try:
        resources, _ = inventory.read_region(clients, account, region, inventory.KeyDirectory(), **{field: resource["identifier"]})
    except (ClientError, BotoCoreError) as error:
        raise NotRemediable(f"cannot read {resource['identifier']}: {inventory.error_message(error)}") from None
    found = [r for r in resources if r.arn == resource["arn"]]
    verdicts = [e for r in found for e in checks.evaluate(r) if e.check_id == check_id]
    return any(v.status is Status.FAILED for v in verdicts)


def note_requested(config: TriggerConfig, request: dict, execution_arn: str, session: boto3.Session | None = None) -> dict:
    """On the finding, through this tool's own product: the remediation it started, waiting for on-call. {} when noted;
    the reason otherwise (the execution runs either way)."""
    try:
        with_role = dataclasses.replace(config, access_role_name=config.findings_role_name)
        securityhub = access_session(with_role, request["account_id"], request["region"], session).client(
            "securityhub", region_name=request["region"], config=aws.CLIENT_CONFIG)
        finding_notes.note_remediation(securityhub, request["finding"], execution_arn, finding_notes.REQUESTED)
    except (finding_notes.FindingNotNoted, ClientError, BotoCoreError) as error:
        return {"not_noted": inventory.error_message(error) if isinstance(error, (ClientError, BotoCoreError)) else str(error)}
    return {}


def trigger(findings: list, config: TriggerConfig, sfn, session: boto3.Session | None = None) -> dict:
    """Each finding on its own: a bad one is skipped with its reason, the others still start."""
    started, skipped = [], []
    for finding in findings if isinstance(findings, list) else []:
        finding_id = finding.get("Id") if isinstance(finding, dict) else None
        try:
            state_machine_arn, request = remediation_request(finding, config, session)
            execution_arn = workflow.start(sfn, state_machine_arn, request)
        except NotRemediable as reason:
            skipped.append({"finding": finding_id, "reason": str(reason)})
            continue
        except (ClientError, BotoCoreError) as error:
            skipped.append({"finding": finding_id, "reason": f"AWS refused: {inventory.error_message(error)}"})
            continue
        started.append({"finding": finding_id, "execution_arn": execution_arn, **note_requested(config, request, execution_arn, session)})
    return {"started": started, "skipped": skipped}
