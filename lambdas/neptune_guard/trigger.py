"""From a Security Hub custom action ("Remediate with CMK") to a remediation execution.

Only this tool's findings qualify, and only FAILED, ACTIVE ones whose check has a remediation
workflow: anything else is skipped with its reason (the filter fails closed). The execution name is
derived from the resource and key, so a double click starts one execution.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import asff, aws, workflow
from .checks import CLUSTER_WORKFLOW, SNAPSHOT_WORKFLOW
from .rds_resources import member_session


@dataclass(frozen=True)
class TriggerConfig:
    cluster_state_machine_arn: str
    snapshot_state_machine_arn: str
    target_key: str  # an alias present in every member account-region, or a key ARN
    remediation_role_name: str
    approval_timeout_seconds: int
    # Who asks, for the two-person rule: the custom action's event does not name the person who clicked, so the
    # trigger's own identity is recorded and any allow-listed on-call engineer may approve.
    requested_by: str


class NotRemediable(Exception):
    pass


def remediation_request(finding: dict, config: TriggerConfig) -> tuple[str, dict]:
    """(state machine ARN, execution input) for a finding, or NotRemediable with the reason."""
    if not str(finding.get("GeneratorId", "")).startswith(asff.GENERATOR_PREFIX):
        raise NotRemediable("not a Neptune Guard finding")
    if finding.get("RecordState") != "ACTIVE":
        raise NotRemediable(f"record state is {finding.get('RecordState')}")
    if finding.get("Compliance", {}).get("Status") != "FAILED":
        raise NotRemediable(f"compliance status is {finding.get('Compliance', {}).get('Status')}")
    if finding.get("Workflow", {}).get("Status") in ("RESOLVED", "SUPPRESSED"):
        raise NotRemediable(f"workflow status is {finding['Workflow']['Status']}")
    kind = finding.get("ProductFields", {}).get("neptune-guard/Remediation")
    resource = (finding.get("Resources") or [{}])[0]
    details = resource.get("Details", {})
    common = {
        "account_id": finding["AwsAccountId"],
        "region": resource.get("Region") or finding.get("Region"),
        "target_key": config.target_key,
        "role_name": config.remediation_role_name,
        "approval_timeout_seconds": config.approval_timeout_seconds,
        "requested_by": config.requested_by,
        "finding": {"id": finding["Id"], "product_arn": finding["ProductArn"]},
    }
    if kind == CLUSTER_WORKFLOW and resource.get("Type") == "AwsRdsDbCluster":
        return config.cluster_state_machine_arn, {**common, "cluster_id": details["AwsRdsDbCluster"]["DbClusterIdentifier"]}
    if kind == SNAPSHOT_WORKFLOW and resource.get("Type") == "AwsRdsDbClusterSnapshot":
        return config.snapshot_state_machine_arn, {
            **common, "snapshot_id": details["AwsRdsDbClusterSnapshot"]["DbClusterSnapshotIdentifier"]}
    raise NotRemediable("this check has no re-encryption workflow (a key that cannot decrypt is re-enabled, not re-encrypted)")


def mark_notified(request: dict, execution_arn: str) -> None:
    securityhub = member_session(request).client("securityhub", region_name=request["region"], config=aws.CLIENT_CONFIG)
    securityhub.batch_update_findings(
        FindingIdentifiers=[{"Id": request["finding"]["id"], "ProductArn": request["finding"]["product_arn"]}],
        Note={"Text": f"Neptune Guard remediation requested: {execution_arn}. It waits for on-call approval.", "UpdatedBy": "neptune-guard"},
        Workflow={"Status": "NOTIFIED"},
    )


def trigger(findings: list[dict], config: TriggerConfig, sfn) -> dict:
    started, skipped = [], []
    for finding in findings:
        try:
            state_machine_arn, request = remediation_request(finding, config)
        except (NotRemediable, KeyError) as reason:
            skipped.append({"finding": finding.get("Id"), "reason": str(reason)})
            continue
        execution_arn = workflow.start(sfn, state_machine_arn, request)
        mark_notified(request, execution_arn)
        started.append({"finding": finding["Id"], "execution_arn": execution_arn})
    return {"started": started, "skipped": skipped}
