"""Corrections to moto where it departs from documented AWS behaviour.

Each correction names the AWS documentation it follows. Production code is never bent to moto: it
is moto that is brought in line here, once, before any mock or server starts (`apply()`).
"""

from __future__ import annotations

import functools
import re

from moto.core.responses import ActionResult
from moto.iam.models import iam_backends
from moto.kms import models as kms_models
from moto.rds import models as rds_models
from moto.rds import responses as rds_responses
from moto.sts import models as sts_models
from moto.sts.exceptions import STSClientError
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


def apply() -> None:
    """Apply every correction once per process."""
    global _applied
    if _applied:
        return
    aws_managed_keys_are_aws_managed()
    neptune_reports_real_key_arns()
    describe_calls_page()
    assume_role_needs_the_role()
    _applied = True
