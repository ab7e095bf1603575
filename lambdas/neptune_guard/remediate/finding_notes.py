"""Notes on this tool's own Security Hub findings: which remediation acts on a finding and how it stands, written
through the tool's own product (an import), in the member account's audit role, the one member role that imports
this tool's findings. The remediation and trigger-access roles have no Security Hub access, so their credentials
cannot pass or archive a finding; BatchUpdateFindings, which would reach any product's findings, is used by none."""

from __future__ import annotations

import os

from neptune_guard import aws
from neptune_guard.remediate.resources import utcnow
from neptune_guard.tags import FINDING_REMEDIATION_FIELDS

# The AWS actions, beside the code that calls them (the member audit role grants them, on the tool's own product).
PERMISSIONS = ["securityhub:GetFindings", "securityhub:BatchImportFindings"]
REQUESTED = "requested: waits for on-call approval"  # the trigger's note, until the execution remediates or ends


class FindingNotNoted(Exception):
    """A remediation's note could not be put on its finding (gone, not this tool's, or refused by Security Hub)."""


def findings_client(account: str, region: str, base=None):
    """Security Hub in the member account, through its audit role (AUDIT_ROLE_NAME, as the scan's)."""
    role = os.environ.get("AUDIT_ROLE_NAME") or aws.DEFAULT_AUDIT_ROLE
    return aws.assume_role(base or aws.new_session(region), account, role, region, "neptune-guard-finding-note").client(
        "securityhub", region_name=region, config=aws.CLIENT_CONFIG)


def note_remediation(securityhub, finding: dict[str, str], execution: str, status: str, *, only_while_requested: bool = False) -> bool:
    """Say on one of this tool's own findings (`finding`: its id and product ARN) which remediation acts on it and how
    it stands: the finding is read and imported again with those ProductFields (the scan keeps them). With
    `only_while_requested`, only while the finding still says this execution was requested (not a later execution's
    note, nor this one's "remediated"). Whether it noted."""
    found = securityhub.get_findings(Filters={"Id": [{"Value": finding["id"], "Comparison": "EQUALS"}],
                                              "ProductArn": [{"Value": finding["product_arn"], "Comparison": "EQUALS"}]})["Findings"]
    if not found:
        raise FindingNotNoted(f"finding {finding['id']} is not in {finding['product_arn']}")
    noted = found[0].get("ProductFields", {})
    if only_while_requested and (noted.get(FINDING_REMEDIATION_FIELDS[0]) != execution or noted.get(FINDING_REMEDIATION_FIELDS[1]) != REQUESTED):
        return False
    fields = dict(zip(FINDING_REMEDIATION_FIELDS, (execution, status[:2048])))
    failed = securityhub.batch_import_findings(Findings=[{**found[0], "UpdatedAt": utcnow().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                                                          "ProductFields": {**found[0].get("ProductFields", {}), **fields}}])
    if failed.get("FailedFindings"):
        problem = failed["FailedFindings"][0]
        raise FindingNotNoted(f"finding {finding['id']} not noted: {problem.get('ErrorCode')}: {problem.get('ErrorMessage')}")
    return True
