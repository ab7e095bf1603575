"""Corrections to moto where it departs from documented AWS behaviour.

Each correction names the AWS documentation it follows. Production code is never bent to moto: it
is moto that is brought in line here, once, before any mock or server starts (`apply()`).
"""

from __future__ import annotations

import collections.abc
import contextvars
import copy
import functools
import hashlib
import importlib
import json
import os
import re
import time
import traceback
import types
import uuid
from datetime import datetime

from moto.awslambda import models as awslambda_models
from moto.core.responses import ActionResult, EmptyResult
from moto.iam.models import iam_backends
from moto.kms import models as kms_models
from moto.core.utils import utcnow
from moto.rds import exceptions as rds_exceptions
from moto.rds import models as rds_models
from moto.rds import responses as rds_responses
from moto.securityhub import exceptions as securityhub_exceptions
from moto.securityhub import models as securityhub_models
from moto.securityhub.exceptions import SecurityHubClientError
from moto.stepfunctions import responses as stepfunctions_responses
from moto.stepfunctions.parser.asl.eval.callback import callback as stepfunctions_callback
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import distributed_iteration_component
from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval import (
    resource_eval_s3 as result_writer_s3)
from moto.sts import models as sts_models
from moto.sts.exceptions import STSClientError
from moto.utilities.paginator import paginate
from moto.utilities.utils import get_partition

from sandbox.aws import cluster_endpoints, code_signing, neptune_data, neptune_graph, write_activity

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
        iam_auth = kwargs.pop("enable_iam_database_authentication", None) if kwargs.get("engine") == "neptune" else None
        original(self, backend, **kwargs)
        if self.engine != "neptune":
            return
        self.iam_auth = bool(iam_auth)
        # A cluster endpoint is <identifier>.cluster-<suffix>.<region>.neptune.amazonaws.com, the suffix the same for
        # every cluster of the account and region: a cluster renamed to another's identifier answers at its old endpoint.
        # https://docs.aws.amazon.com/neptune/latest/userguide/feature-overview-endpoints.html
        self.url_identifier = hashlib.sha256(f"{self.account_id}:{self.region}".encode()).hexdigest()[:12]
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


def neptune_restores_as_documented() -> None:
    """`RestoreDBClusterFromSnapshot` builds a new cluster from the snapshot and the request alone: the
    source cluster's security groups, subnet group, parameter group, IAM roles, log exports, deletion
    protection, backup retention and windows are not carried over; `KmsKeyId` encrypts the new cluster
    under that key, also from an unencrypted snapshot. (moto copied the source cluster's whole
    configuration, and failed on Neptune snapshots.) Also: `EnableIAMDatabaseAuthentication` is
    accepted for Neptune on create and modify, and reported; a cluster renamed with
    `NewDBClusterIdentifier` keeps its instances as members.

    https://docs.aws.amazon.com/neptune/latest/apiref/API_RestoreDBClusterFromSnapshot.html
    https://docs.aws.amazon.com/neptune/latest/userguide/iam-auth-enable.html
    https://docs.aws.amazon.com/neptune/latest/apiref/API_ModifyDBCluster.html (NewDBClusterIdentifier)
    """
    original_restore = rds_models.RDSBackend.restore_db_cluster_from_snapshot
    original_modify = rds_models.RDSBackend.modify_db_cluster

    @functools.wraps(original_restore)
    def restore(self, from_snapshot_id, overrides):
        snapshot = self.describe_db_cluster_snapshots(db_cluster_identifier=None, db_snapshot_identifier=from_snapshot_id)[0]
        if snapshot.engine != "neptune":
            return original_restore(self, from_snapshot_id, overrides)
        request = {_snake(k): v for k, v in overrides.items()}
        kms_key_id = request.get("kms_key_id")
        return self.create_db_cluster(
            {
                "db_cluster_identifier": request["db_cluster_identifier"],
                "engine": "neptune",
                "engine_version": request.get("engine_version") or snapshot.engine_version,
                "port": request.get("port") or snapshot.port,
                "storage_encrypted": bool(kms_key_id) or snapshot.storage_encrypted,
                "kms_key_id": kms_key_id or snapshot.kms_key_id,
                "vpc_security_group_ids": request.get("vpc_security_group_ids"),
                "db_subnet_group_name": request.get("db_subnet_group_name"),
                "db_cluster_parameter_group_name": request.get("db_cluster_parameter_group_name"),
                "enable_iam_database_authentication": request.get("enable_iam_database_authentication"),
                "enable_cloudwatch_logs_exports": request.get("enable_cloudwatch_logs_exports"),
                "deletion_protection": bool(request.get("deletion_protection")),
                "copy_tags_to_snapshot": bool(request.get("copy_tags_to_snapshot")),
                "tags": request.get("tags") or [],
                "storage_type": request.get("storage_type"),
                "serverless_v2_scaling_configuration": request.get("serverless_v2_scaling_configuration"),
                "backup_retention_period": 1,
            }
        )

    @functools.wraps(original_modify)
    def modify(self, kwargs):
        old_identifier = kwargs["db_cluster_identifier"].lower()
        identifier = (kwargs.get("new_db_cluster_identifier") or old_identifier).lower()
        result = original_modify(self, kwargs)
        cluster = self.clusters[identifier]
        if identifier != old_identifier:  # a renamed cluster keeps its instances
            for instance in self.databases.values():
                if isinstance(instance, rds_models.DBInstanceClustered) and instance.db_cluster_identifier == old_identifier:
                    instance.db_cluster_identifier = identifier
        if cluster.engine == "neptune" and kwargs.get("enable_iam_database_authentication") is not None:
            cluster.iam_auth = result.iam_auth = bool(kwargs["enable_iam_database_authentication"])
        return result

    rds_models.RDSBackend.restore_db_cluster_from_snapshot = restore
    rds_models.RDSBackend.modify_db_cluster = modify


def default_cluster_parameter_groups_exist() -> None:
    """A cluster created without a parameter group is in the engine family's default group (`default.neptune1.3`),
    which DescribeDBClusterParameters describes like any other; its parameters are Neptune's defaults (moto knows
    none of them, so it lists none: `neptune_streams` absent reads as its default, 0).
    https://docs.aws.amazon.com/neptune/latest/userguide/parameter-groups.html
    https://docs.aws.amazon.com/neptune/latest/apiref/API_DescribeDBClusterParameters.html
    """
    original = rds_models.RDSBackend.describe_db_cluster_parameters

    @functools.wraps(original)
    def describe(self, db_cluster_parameter_group_name):
        if db_cluster_parameter_group_name.startswith("default.") and db_cluster_parameter_group_name not in self.db_cluster_parameter_groups:
            return []
        return original(self, db_cluster_parameter_group_name)

    rds_models.RDSBackend.describe_db_cluster_parameters = describe


def _snake(name: str) -> str:
    name = name.replace("DBCluster", "DbCluster").replace("DBSubnet", "DbSubnet").replace("IAMDatabase", "IamDatabase")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def unencrypted_snapshots_cannot_be_encrypted_by_copy() -> None:
    """`CopyDBClusterSnapshot` with `KmsKeyId` on an unencrypted snapshot is refused: an unencrypted
    snapshot can only be encrypted by restoring it with a key.

    https://docs.aws.amazon.com/neptune/latest/apiref/API_CopyDBClusterSnapshot.html ("If you copy an
    unencrypted DB cluster snapshot and specify a value for the KmsKeyId parameter, an error is returned.")
    """
    original = rds_models.RDSBackend.copy_db_cluster_snapshot

    @functools.wraps(original)
    def copy(self, source_db_cluster_snapshot_identifier, target_db_cluster_snapshot_identifier, kms_key_id=None, **kwargs):
        source = self.get_db_cluster_snapshot(source_db_cluster_snapshot_identifier)
        if kms_key_id and not source.storage_encrypted:
            raise rds_exceptions.InvalidParameterValue(
                "The specified KmsKeyId cannot be used to copy an unencrypted DB cluster snapshot."
            )
        if source.engine == "neptune" and kms_key_id:
            kms = _kms_backend(self.account_id, self.region_name)
            kms_key_id = kms.describe_key(kms_key_id.split(":key/")[-1] if ":key/" in kms_key_id else kms_key_id).arn
        return original(self, source_db_cluster_snapshot_identifier, target_db_cluster_snapshot_identifier, kms_key_id=kms_key_id, **kwargs)

    rds_models.RDSBackend.copy_db_cluster_snapshot = copy


def copies_name_their_source() -> None:
    """A copied cluster snapshot names the snapshot it was copied from (`SourceDBClusterSnapshotArn`); moto left it out.

    https://docs.aws.amazon.com/neptune/latest/apiref/API_DBClusterSnapshot.html ("SourceDBClusterSnapshotArn: If the
    DB cluster snapshot was copied from a source DB cluster snapshot, the Amazon Resource Name (ARN) for the source DB
    cluster snapshot, otherwise, a null value.")
    """
    original = rds_models.RDSBackend.copy_db_cluster_snapshot

    @functools.wraps(original)
    def copy(self, source_db_cluster_snapshot_identifier, target_db_cluster_snapshot_identifier, *args, **kwargs):
        source = self.get_db_cluster_snapshot(source_db_cluster_snapshot_identifier)
        target = original(self, source_db_cluster_snapshot_identifier, target_db_cluster_snapshot_identifier, *args, **kwargs)
        target.source_db_cluster_snapshot_arn = source.db_cluster_snapshot_arn
        return target

    rds_models.RDSBackend.copy_db_cluster_snapshot = copy


def neptune_storage_types() -> None:
    """A Neptune cluster's `StorageType` is `standard` (the default) or `iopt1` (I/O-Optimized); Neptune
    allocates storage itself. (moto knew only the instance storage types, refused `iopt1` and reported `gp2`.)

    https://docs.aws.amazon.com/neptune/latest/apiref/API_CreateDBCluster.html (StorageType)
    https://docs.aws.amazon.com/neptune/latest/userguide/storage-types.html
    """
    original_init = rds_models.DBCluster.__init__
    original_allocated = rds_models.DBCluster.default_allocated_storage

    @functools.wraps(original_init)
    def init(self, backend, **kwargs):
        neptune = kwargs.get("engine") == "neptune"
        if neptune:
            kwargs["storage_type"] = kwargs.get("storage_type") or "standard"
        original_init(self, backend, **kwargs)

    def allocated(engine, storage_type):
        return 0 if engine == "neptune" else original_allocated(engine, storage_type)

    rds_models.DBCluster.__init__ = init
    rds_models.DBCluster.default_allocated_storage = staticmethod(allocated)


def snapshots_shared_with_the_account_are_listed_when_asked() -> None:
    """`DescribeDBClusterSnapshots` with `IncludeShared` also returns the manual snapshots other accounts shared
    with the caller's account (their `restore` attribute names it), as `SnapshotType` `shared`. (moto ignored it.)

    https://docs.aws.amazon.com/neptune/latest/apiref/API_DescribeDBClusterSnapshots.html (IncludeShared, SnapshotType)
    """
    original = rds_responses.RDSResponse.describe_db_cluster_snapshots

    @functools.wraps(original)
    def describe(self):
        result = original(self)
        if str(self.params.get("IncludeShared", "")).lower() != "true" or self.params.get("DBClusterSnapshotIdentifier"):
            return result
        shared = []
        for account_id, regions in rds_models.rds_backends.items():
            backend = regions.get(self.region) if account_id != self.current_account else None
            for snapshot in list(backend.cluster_snapshots.values()) if backend else []:
                if self.current_account in snapshot.attributes.get("restore", []) or "all" in snapshot.attributes.get("restore", []):
                    seen = copy.copy(snapshot)
                    seen.snapshot_type = "shared"
                    shared.append(seen)
        return ActionResult({"DBClusterSnapshots": list(result._result["DBClusterSnapshots"]) + shared})

    rds_responses.RDSResponse.describe_db_cluster_snapshots = describe


def deleting_a_cluster_deletes_its_automated_backups() -> None:
    """`DeleteDBCluster` deletes the cluster's automated backups (its `rds:` snapshots); manual snapshots stay.
    (moto kept them, so a deleted cluster's automated snapshot stayed in every later scan.)

    https://docs.aws.amazon.com/neptune/latest/userguide/manage-console-delete.html ("automated backups ...
    are deleted when you delete the DB cluster"; keep a final or manual snapshot to retain the data)
    """
    original = rds_models.RDSBackend.delete_db_cluster

    @functools.wraps(original)
    def delete(self, cluster_identifier, snapshot_name=None):
        cluster = original(self, cluster_identifier, snapshot_name)
        for snapshot_id in [i for i, s in self.cluster_snapshots.items() if s.snapshot_type == "automated" and s.cluster.db_cluster_resource_id == cluster.db_cluster_resource_id]:
            del self.cluster_snapshots[snapshot_id]
        return cluster

    rds_models.RDSBackend.delete_db_cluster = delete


_invocation_environment: contextvars.ContextVar = contextvars.ContextVar("invocation_environment", default=None)


class _InvocationEnviron(collections.abc.MutableMapping):
    """`os.environ` as an invocation sees it: its function's variables over the process's, so that two functions
    with different values (two executions' replicators) running on two threads each read their own."""

    def __init__(self, process):
        self.process = process

    def _visible(self) -> dict:
        return {**self.process, **(_invocation_environment.get() or {})}

    def __getitem__(self, key):
        overlay = _invocation_environment.get() or {}
        return overlay[key] if key in overlay else self.process[key]

    def __setitem__(self, key, value):
        self.process[key] = value

    def __delitem__(self, key):
        del self.process[key]

    def __iter__(self):
        return iter(self._visible())

    def __len__(self):
        return len(self._visible())

    def copy(self) -> dict:
        return self._visible()


def lambda_runs_handlers_in_process() -> None:
    """Lambda invocations run the function's real handler in this process (moto would need Docker,
    which is not here). Not an AWS behaviour correction: the local stand-in for the Lambda runtime.
    The handler named by the function (`module.function`) gets the event; the function's environment is
    what `os.environ` shows it during the call (and is left applied to the process, where code outside any
    invocation, as the tests' own, may read it). An exception becomes a `FunctionError` with the `errorType`
    and `errorMessage` Lambda reports. https://docs.aws.amazon.com/lambda/latest/dg/python-exceptions.html
    """
    if not isinstance(os.environ, _InvocationEnviron):
        os.environ = _InvocationEnviron(os.environ)

    def invoke_in_process(self, event=None):
        module_name, function_name = self.handler.rsplit(".", 1)
        payload = json.loads(event) if isinstance(event, str) else (event or {})
        context = types.SimpleNamespace(
            function_name=self.function_name, memory_limit_in_mb=self.memory_size, aws_request_id=str(uuid.uuid4()),
            invoked_function_arn=self.function_arn, get_remaining_time_in_millis=lambda: 900_000,
        )
        environment = {k: str(v) for k, v in self.environment_vars.items()}
        os.environ.update(environment)
        own = _invocation_environment.set(environment)
        calling = neptune_data.calling_function.set(self)  # where the code runs: a VPC-attached function reaches Neptune
        try:
            result = getattr(importlib.import_module(module_name), function_name)(payload, context)
        except Exception as error:  # the runtime's contract: any exception is a function error
            return json.dumps({"errorType": type(error).__name__, "errorMessage": str(error)}), True, traceback.format_exc()
        finally:
            neptune_data.calling_function.reset(calling)
            _invocation_environment.reset(own)
        return json.dumps(result), False, ""

    awslambda_models.LambdaFunction._invoke_lambda = invoke_in_process


class _LambdaNetworkInterfaces:
    """Which network interfaces Lambda made for which function, and when a deleted function's are due to go."""

    made: dict[tuple[str, str, str], list[str]] = {}  # (account, region, function name) -> ENI ids
    releasing: dict[str, tuple[float, str, str, str]] = {}  # ENI id -> (due, account, region, execution role ARN)


def lambda_manages_vpc_network_interfaces() -> None:
    """A function attached to a VPC gets a network interface for each of its subnets, in its security groups, made
    and deleted by Lambda with the function's execution role; deleting the function releases them some time later
    (CloudFormation waits for that before it deletes the role or the groups), and only while the role still exists to
    do it. EC2 refuses to delete a security group a network interface still uses (DependencyViolation).
    https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html ("Lambda uses your function's permissions to
    create and manage network interfaces"; one interface per subnet and security-group combination)
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-lambda-function-vpcconfig.html
    https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DeleteSecurityGroup.html (DependencyViolation)
    """
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models import ec2_backends
    from moto.ec2.models import elastic_network_interfaces as enis_models
    from moto.ec2.models import security_groups as groups_models

    release_after = 1.0  # seconds: minutes in AWS; long enough here that deleting in the wrong order shows

    original_create = awslambda_models.LambdaBackend.create_function

    @functools.wraps(original_create)
    def create_function(self, spec):
        function = original_create(self, spec)
        config = spec.get("VpcConfig") or {}
        if config.get("SubnetIds") and config.get("SecurityGroupIds"):
            ec2 = ec2_backends[self.account_id][self.region_name]
            _LambdaNetworkInterfaces.made[(self.account_id, self.region_name, function.function_name)] = [
                ec2.create_network_interface(ec2.get_subnet(subnet), None, group_ids=list(config["SecurityGroupIds"]),
                                             description=f"AWS Lambda VPC ENI-{function.function_name}").id
                for subnet in config["SubnetIds"]]
        return function

    original_delete = awslambda_models.LambdaBackend.delete_function

    @functools.wraps(original_delete)
    def delete_function(self, function_name, qualifier=None):
        function = self._lambdas.get_function_by_name_or_arn_forbid_qualifier(function_name)
        original_delete(self, function_name, qualifier)
        for eni_id in _LambdaNetworkInterfaces.made.pop((self.account_id, self.region_name, function.function_name), []):
            _LambdaNetworkInterfaces.releasing[eni_id] = (time.monotonic() + release_after, self.account_id, self.region_name, function.role)

    def release_due(ec2) -> None:
        for eni_id, (due, account, region, role_arn) in list(_LambdaNetworkInterfaces.releasing.items()):
            if (account, region) != (ec2.account_id, ec2.region_name) or time.monotonic() < due:
                continue
            if role_arn not in {r.arn for r in iam_backends[account][get_partition(region)].roles.values()}:
                continue  # no role to act with: the interface stays
            del _LambdaNetworkInterfaces.releasing[eni_id]
            if eni_id in ec2.enis:
                ec2.delete_network_interface(eni_id)

    original_describe = enis_models.NetworkInterfaceBackend.get_all_network_interfaces

    @functools.wraps(original_describe)
    def get_all_network_interfaces(self, eni_ids=None, filters=None):
        release_due(self)
        return original_describe(self, eni_ids, filters)

    original_delete_group = groups_models.SecurityGroupBackend.delete_security_group

    @functools.wraps(original_delete_group)
    def delete_security_group(self, name=None, group_id=None):
        release_due(self)
        if group_id and any(group_id in [g.id for g in eni.group_set] for eni in self.enis.values()):
            raise EC2ClientError("DependencyViolation", f"resource {group_id} has a dependent object")
        return original_delete_group(self, name, group_id)

    awslambda_models.LambdaBackend.create_function = create_function
    awslambda_models.LambdaBackend.delete_function = delete_function
    enis_models.NetworkInterfaceBackend.get_all_network_interfaces = get_all_network_interfaces
    groups_models.SecurityGroupBackend.delete_security_group = delete_security_group


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
      an import (only by `BatchUpdateFindings`, which Neptune Guard does not call). A new finding starts with
      `Workflow.Status` NEW. https://docs.aws.amazon.com/securityhub/latest/userguide/finding-update-batchimportfindings.html
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

    backend_class.get_findings = get_findings
    backend_class.batch_import_findings = batch_import_findings


def send_task_failure_keeps_its_cause() -> None:
    """`SendTaskFailure` passes its `cause` on: to the `TaskFailed` event and to the state's Catch
    (`{"Error", "Cause"}`). (moto's request handler dropped it, so a rejection's reason was lost.)

    https://docs.aws.amazon.com/step-functions/latest/apireference/API_SendTaskFailure.html
    https://docs.aws.amazon.com/step-functions/latest/apireference/API_TaskFailedEventDetails.html
    """

    def send_task_failure(self):
        self.stepfunction_backend.send_task_failure(self._get_param("taskToken"), error=self._get_param("error"),
                                                    cause=self._get_param("cause"))
        return EmptyResult()

    stepfunctions_responses.StepFunctionResponse.send_task_failure = send_task_failure


def a_task_token_is_answered_once() -> None:
    """A task token answered once (`SendTaskSuccess` or `SendTaskFailure`) is closed: a second answer is refused and
    changes nothing. (moto's callback pool took every answer, so of two people answering one question at once both
    were told it was theirs.) AWS names the refusal `TaskTimedOut` ("the task associated with the token has already
    been closed"); here it is `InvalidToken`, which the approval endpoint treats alike, and a token whose task timed
    out is not yet closed by this correction.

    https://docs.aws.amazon.com/step-functions/latest/apireference/API_SendTaskSuccess.html#API_SendTaskSuccess_Errors
    """
    notify = stepfunctions_callback.CallbackPoolManager.notify

    def notify_once(self, callback_id, outcome):
        endpoint = self.get(callback_id)
        if endpoint is not None and endpoint.get_outcome() is not None:
            return False  # send_task_success/failure then raise InvalidToken, as no running execution holds it
        return notify(self, callback_id, outcome)

    stepfunctions_callback.CallbackPoolManager.notify = notify_once


def execution_history_is_answered_in_json_directly() -> None:
    """`GetExecutionHistory` as the JSON protocol writes it (timestamps as epoch seconds), without moto's generic
    serializer, which tries every one of a history event's sixty optional members on every event: a few hundred
    events took 0.6 s a read, and every step of a workflow reads its execution's history. The events are moto's own;
    their timestamps, which moto's interpreter keeps as ISO-8601 text, are written as epoch seconds as AWS writes
    them (botocore read the text back through dateutil, most of a streams demo's time).
    https://docs.aws.amazon.com/step-functions/latest/apireference/API_GetExecutionHistory.html
    https://smithy.io/2.0/aws/protocols/aws-json-1_0-protocol.html (timestamps: epoch-seconds)
    """

    def as_json(value):
        if isinstance(value, datetime):
            return value.timestamp()
        raise TypeError(f"not serializable: {type(value).__name__}")

    def epoch(event: dict) -> dict:
        stamp = event.get("timestamp")
        if isinstance(stamp, str):
            return {**event, "timestamp": datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()}
        return event

    def get_execution_history(self):
        history = self.stepfunction_backend.get_execution_history(self._get_param("executionArn"))
        events = [epoch(event) for event in history["events"]]
        if self._get_param("reverseOrder"):
            events.reverse()
        return json.dumps({"events": events}, default=as_json)

    stepfunctions_responses.StepFunctionResponse.get_execution_history = get_execution_history


def stopping_an_execution_aborts_it_at_once() -> None:
    """`StopExecution` answers with the stop date once the execution is stopped: from then on it is `ABORTED`, and
    a new execution may take its name's resource. (moto's interpreter marked it only when its thread next looked.)

    https://docs.aws.amazon.com/step-functions/latest/apireference/API_StopExecution.html
    https://docs.aws.amazon.com/step-functions/latest/apireference/API_DescribeExecution.html (status)
    """
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.backend import execution as parser_execution

    original = parser_execution.Execution.stop

    @functools.wraps(original)
    def stop(self, stop_date, error, cause):
        original(self, stop_date=stop_date, error=error, cause=cause)
        if self.exec_status == ExecutionStatus.RUNNING:
            self.exec_status, self.stop_date = ExecutionStatus.ABORTED, stop_date

    parser_execution.Execution.stop = stop


def distributed_map_writes_its_results() -> None:
    """A Distributed Map's ResultWriter writes the child executions' results, not only a manifest: result files of
    execution records (SUCCEEDED_0.json, FAILED_0.json) under `<Prefix>/<map run id>/`, each a JSON array of records
    whose `Input` and `Output` are JSON strings, and a manifest.json that lists them with their sizes.
    (moto's writer wrote a manifest listing no files: "TODO: generate result files".)

    https://docs.aws.amazon.com/step-functions/latest/dg/input-output-resultwriter.html
    """
    original_map_run = distributed_iteration_component.DistributedIterationComponent._map_run

    def map_run(self, env, eval_input):
        inputs = list(env.stack[-1])
        original_map_run(self, env, eval_input)
        eval_input.map_run_record.sandbox_items = list(zip(inputs, env.stack[-1]))

    def put_object(env, resource_runtime_part, state_credentials):
        parameters = env.stack.pop()
        env.stack.pop()  # the outputs alone; the records need each one's input too (map_run, above)
        s3 = result_writer_s3.ResourceEvalS3._get_s3_client(resource_runtime_part=resource_runtime_part,
                                                             state_credentials=state_credentials)
        record = env.map_run_record_pool_manager.get_all().pop()
        prefix = parameters.get("Prefix", "")
        prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        folder = f"{prefix}{record.map_run_arn.split(':')[-1]}/"
        now = utcnow().isoformat()
        records = {"SUCCEEDED": [], "FAILED": []}
        for index, (item, output) in enumerate(getattr(record, "sandbox_items", [])):
            entry = {"ExecutionArn": f"{record.map_run_arn}:{index}", "Input": json.dumps(item), "InputDetails": {"Included": True},
                     "Name": str(index), "RedriveCount": 0, "RedriveStatus": "NOT_REDRIVABLE", "StartDate": now,
                     "StateMachineArn": record.map_state_machine_arn, "StopDate": now}
            if output is None:
                records["FAILED"].append({**entry, "Status": "FAILED", "Error": "States.TaskFailed"})
            else:
                records["SUCCEEDED"].append({**entry, "Status": "SUCCEEDED", "Output": json.dumps(output),
                                             "OutputDetails": {"Included": True}})
        files = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
        for status, entries in records.items():
            if entries:
                body = json.dumps(entries).encode()
                key = f"{folder}{status}_0.json"
                s3.put_object(Bucket=parameters["Bucket"], Key=key, Body=body)
                files[status].append({"Key": key, "Size": len(body)})
        manifest = f"{folder}manifest.json"
        s3.put_object(Bucket=parameters["Bucket"], Key=manifest, Body=json.dumps(
            {"DestinationBucket": parameters["Bucket"], "MapRunArn": record.map_run_arn, "ResultFiles": files}).encode())
        env.stack.append({"MapRunArn": record.map_run_arn, "ResultWriterDetails": {"Bucket": parameters["Bucket"], "Key": manifest}})

    distributed_iteration_component.DistributedIterationComponent._map_run = map_run
    result_writer_s3.ResourceEvalS3._handle_put_object = staticmethod(put_object)


def apply() -> None:
    """Apply every correction once per process."""
    global _applied
    if _applied:
        return
    aws_managed_keys_are_aws_managed()
    neptune_reports_real_key_arns()
    snapshots_shared_with_the_account_are_listed_when_asked()  # before paging, which pages what it returns
    describe_calls_page()
    assume_role_needs_the_role()
    security_hub_behaves_as_documented()
    neptune_restores_as_documented()
    default_cluster_parameter_groups_exist()
    unencrypted_snapshots_cannot_be_encrypted_by_copy()
    copies_name_their_source()
    deleting_a_cluster_deletes_its_automated_backups()
    neptune_storage_types()
    lambda_runs_handlers_in_process()
    lambda_manages_vpc_network_interfaces()
    a_task_token_is_answered_once()
    # Not corrections: stand-ins for what moto lacks, each documented in its own module.
    cluster_endpoints.install()
    code_signing.install()
    neptune_graph.install()
    neptune_data.install()
    write_activity.install()
    send_task_failure_keeps_its_cause()
    execution_history_is_answered_in_json_directly()
    stopping_an_execution_aborts_it_at_once()
    distributed_map_writes_its_results()
    _applied = True
