"""Corrections to moto where it departs from documented AWS behaviour.

Each correction names the AWS documentation it follows. Production code is never bent to moto: it
is moto that is brought in line here, once, before any mock or server starts (`apply()`).
"""

from __future__ import annotations

import functools
import json
import re

from moto.core.responses import ActionResult
from moto.iam.models import iam_backends
from moto.kms import models as kms_models
from moto.core.utils import utcnow
from moto.rds import models as rds_models
from moto.rds import responses as rds_responses
from moto.securityhub import exceptions as securityhub_exceptions
from moto.securityhub import models as securityhub_models
from moto.securityhub import responses as securityhub_responses
from moto.securityhub import urls as securityhub_urls
from moto.securityhub.exceptions import SecurityHubClientError
from moto.sts import models as sts_models
from moto.sts.exceptions import STSClientError
from moto.utilities.paginator import paginate
from moto.utilities.utils import get_partition

_applied = False


def _kms_backend(account_id: str, region: str):
    return kms_models.kms_backends[account_id][region]


def aws_managed_keys_are_aws_managed() -> None:
    """`alias/aws/rds` and the other `aws/` aliases name AWS-managed keys: `KeyManager` is `AWS`.

    https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html#aws-managed-key
    https://docs.aws.amazon.com/kms/latest/APIReference/API_KeyMetadata.html (KeyManager)
    """
    original = kms_models.KmsBackend._generate_default_keys

    @functools.wraps(original)
    def generate_default_keys(self, alias_name):
        key_id = original(self, alias_name)
        if key_id is not None:
            self.keys[key_id].key_manager = "AWS"
        return key_id

    kms_models.KmsBackend._generate_default_keys = generate_default_keys


def neptune_reports_real_key_arns() -> None:
    """A cluster encrypted without `KmsKeyId` is under the account's `aws/rds` key and reports its ARN;
    an unencrypted cluster reports no key; a key given by alias or id is reported as its ARN.

    https://docs.aws.amazon.com/neptune/latest/userguide/encrypt.html ("If you don't specify an AWS KMS
    key identifier, Neptune uses your default Amazon RDS encryption key (aws/rds)")
    https://docs.aws.amazon.com/neptune/latest/apiref/API_DBCluster.html (KmsKeyId "If StorageEncrypted is enabled")
    """
    original = rds_models.DBCluster.__init__

    @functools.wraps(original)
    def init(self, backend, **kwargs):
        original(self, backend, **kwargs)
        if self.engine != "neptune":
            return
        if not self.storage_encrypted:
            self.kms_key_id = None
            return
        requested = kwargs.get("kms_key_id") or "alias/aws/rds"
        account_id, region = self.account_id, self.region
        if requested.startswith("arn:"):  # possibly another account's key (CMKs can be used across accounts)
            _, _, _, region, account_id, requested = requested.split(":", 5)
            requested = requested.removeprefix("key/")
        kms = _kms_backend(account_id, region)
        if requested.startswith("alias/aws/"):
            kms.get_key_id_from_alias(requested)  # creates the AWS-managed key on first use, as AWS does
        self.kms_key_id = kms.describe_key(requested).arn

    rds_models.DBCluster.__init__ = init


def _paginate(items: list, params: dict) -> tuple[list, str | None]:
    max_records = int(params.get("MaxRecords") or 100)
    start = int(params.get("Marker") or 0)
    end = start + max_records
    return items[start:end], (str(end) if end < len(items) else None)


def describe_calls_page() -> None:
    """`DescribeDBClusters` and `DescribeDBClusterSnapshots` return at most `MaxRecords` (default 100)
    items and a `Marker` for the rest.

    https://docs.aws.amazon.com/neptune/latest/apiref/API_DescribeDBClusters.html
    https://docs.aws.amazon.com/neptune/latest/apiref/API_DescribeDBClusterSnapshots.html
    """

    def paged(operation: str, result_key: str):
        original = getattr(rds_responses.RDSResponse, operation)

        @functools.wraps(original)
        def handler(self):
            full = original(self)._result
            page, marker = _paginate(list(full[result_key]), self.params)
            result = {result_key: page}
            if marker:
                result["Marker"] = marker
            return ActionResult(result)

        setattr(rds_responses.RDSResponse, operation, handler)

    paged("describe_db_clusters", "DBClusters")
    paged("describe_db_cluster_snapshots", "DBClusterSnapshots")


def assume_role_needs_the_role() -> None:
    """`AssumeRole` on a role that does not exist in the target account is refused with `AccessDenied`.

    https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html (Errors; the role's trust
    policy must allow the caller, and a missing role allows no one)
    """
    original = sts_models.STSBackend.assume_role
    role_arn_pattern = re.compile(r"^arn:[\w-]+:iam::(\d{12}):role/(?:.*/)?([\w+=,.@-]+)$")

    @functools.wraps(original)
    def assume_role(self, region_name, role_session_name, role_arn, policy, duration, external_id):
        match = role_arn_pattern.match(role_arn)
        account_id, role_name = (match.group(1), match.group(2)) if match else (None, None)
        roles = iam_backends[account_id][get_partition(region_name)].roles.values() if account_id else []
        if not any(role.name == role_name for role in roles):
            raise STSClientError(
                "AccessDenied", f"User: {self.account_id} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
            )
        return original(self, region_name, role_session_name, role_arn, policy, duration, external_id)

    sts_models.STSBackend.assume_role = assume_role


def _finding_values(finding: dict, name: str) -> list:
    """The values a Security Hub filter name selects in a finding (the names this project sends)."""
    nested = {
        "ComplianceStatus": lambda f: [f.get("Compliance", {}).get("Status")],
        "WorkflowStatus": lambda f: [f.get("Workflow", {}).get("Status")],
        "SeverityLabel": lambda f: [f.get("Severity", {}).get("Label")],
        "ResourceId": lambda f: [r.get("Id") for r in f.get("Resources", [])],
        "ResourceType": lambda f: [r.get("Type") for r in f.get("Resources", [])],
    }
    if name in nested:
        return nested[name](finding)
    if name in ("Id", "ProductArn", "GeneratorId", "RecordState", "AwsAccountId", "Region", "Title"):
        return [finding.get(name)]
    raise securityhub_exceptions.InvalidInputException(op="GetFindings", msg=f"filter {name} is not emulated by the sandbox")


def _string_filter_matches(values: list, condition: dict) -> bool:
    value, comparison = condition["Value"], condition.get("Comparison", "EQUALS")
    present = [v for v in values if isinstance(v, str)]
    if comparison == "EQUALS":
        return value in present
    if comparison == "PREFIX":
        return any(v.startswith(value) for v in present)
    if comparison == "NOT_EQUALS":
        return value not in present
    if comparison == "PREFIX_NOT_EQUALS":
        return not any(v.startswith(value) for v in present)
    raise securityhub_exceptions.InvalidInputException(op="GetFindings", msg=f"comparison {comparison} is not emulated")


def _matches(finding: dict, filters: dict) -> bool:
    # Conditions on one field are ORed for EQUALS/PREFIX and ANDed for the negative comparisons; fields are ANDed.
    for name, conditions in (filters or {}).items():
        values = _finding_values(finding, name)
        positive = [c for c in conditions if c.get("Comparison", "EQUALS") in ("EQUALS", "PREFIX")]
        negative = [c for c in conditions if c not in positive]
        if positive and not any(_string_filter_matches(values, c) for c in positive):
            return False
        if not all(_string_filter_matches(values, c) for c in negative):
            return False
    return True


def _require_hub(backend, operation: str) -> None:
    if not backend.enabled:
        raise SecurityHubClientError("InvalidAccessException", f"Account {backend.account_id} is not subscribed to AWS Security Hub ({operation})")


def security_hub_behaves_as_documented() -> None:
    """Security Hub, as its API reference documents it:

    - Calls in an account-region where Security Hub is not enabled fail with `InvalidAccessException`.
      https://docs.aws.amazon.com/securityhub/1.0/APIReference/API_GetFindings.html (Errors)
    - `GetFindings` returns only the findings that match `Filters` (string filters: EQUALS, PREFIX,
      NOT_EQUALS, PREFIX_NOT_EQUALS). https://docs.aws.amazon.com/securityhub/1.0/APIReference/API_AwsSecurityFindingFilters.html
    - `BatchImportFindings` from a custom integration accepts only findings whose `AwsAccountId` is the
      calling account and whose `ProductArn` is that account's default product; an existing finding
      is updated only when the new `UpdatedAt` is later, and `Workflow` and `Note` are not changed by
      an import (only by `BatchUpdateFindings`). A new finding starts with `Workflow.Status` NEW.
      https://docs.aws.amazon.com/securityhub/latest/userguide/finding-update-batchimportfindings.html
    - `BatchUpdateFindings` updates `Note` and `Workflow.Status` of the identified findings.
      https://docs.aws.amazon.com/securityhub/1.0/APIReference/API_BatchUpdateFindings.html
    """
    backend_class = securityhub_models.SecurityHubBackend

    @paginate(pagination_model=backend_class.PAGINATION_MODEL)
    def get_findings(self, filters=None, sort_criteria=None, max_results=None):
        _require_hub(self, "GetFindings")
        return [f.as_dict() for f in self.findings if _matches(f.as_dict(), filters)]

    def batch_import_findings(self, findings):
        _require_hub(self, "BatchImportFindings")
        failed = []
        for data in findings:
            own_product = f"arn:{get_partition(self.region_name)}:securityhub:{self.region_name}:{self.account_id}:product/{self.account_id}/default"
            if data.get("AwsAccountId") != self.account_id or data.get("ProductArn") != own_product:
                failed.append({"Id": data.get("Id", ""), "ErrorCode": "AccessDeniedException",
                               "ErrorMessage": "a custom integration may import only its own account's findings"})
                continue
            existing = next((f for f in self.findings if f.id == data["Id"]), None)
            if existing is None:
                self.findings.append(securityhub_models.Finding(data["Id"], {"Workflow": {"Status": "NEW"}, **data}))
            elif data.get("UpdatedAt", "") > existing.data.get("UpdatedAt", ""):
                kept = {k: existing.data[k] for k in ("Workflow", "Note") if k in existing.data}
                existing.data.update({**data, **kept})
        return len(failed), len(findings) - len(failed), failed

    def batch_update_findings(self, identifiers, note=None, workflow=None):
        _require_hub(self, "BatchUpdateFindings")
        processed, unprocessed = [], []
        for identifier in identifiers:
            finding = next((f for f in self.findings if f.id == identifier["Id"] and f.data.get("ProductArn") == identifier["ProductArn"]), None)
            if finding is None:
                unprocessed.append({"FindingIdentifier": identifier, "ErrorCode": "FindingNotFound", "ErrorMessage": "no such finding"})
                continue
            if note:
                finding.data["Note"] = {**note, "UpdatedAt": utcnow().isoformat() + "Z"}
            if workflow:
                finding.data["Workflow"] = {"Status": workflow["Status"]}
            processed.append(identifier)
        return processed, unprocessed

    def batch_update_findings_response(self):
        body = json.loads(self.body)
        processed, unprocessed = self.securityhub_backend.batch_update_findings(
            body["FindingIdentifiers"], body.get("Note"), body.get("Workflow")
        )
        return json.dumps({"ProcessedFindings": processed, "UnprocessedFindings": unprocessed})

    backend_class.get_findings = get_findings
    backend_class.batch_import_findings = batch_import_findings
    backend_class.batch_update_findings = batch_update_findings
    securityhub_responses.SecurityHubResponse.batch_update_findings = batch_update_findings_response
    securityhub_urls.url_paths["{0}/findings/batchupdate$"] = securityhub_responses.SecurityHubResponse.dispatch


def apply() -> None:
    """Apply every correction once per process."""
    global _applied
    if _applied:
        return
    aws_managed_keys_are_aws_managed()
    neptune_reports_real_key_arns()
    describe_calls_page()
    assume_role_needs_the_role()
    security_hub_behaves_as_documented()
    _applied = True
