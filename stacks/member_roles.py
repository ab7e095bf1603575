"""The member account roles: audit (read, and importing its own findings) and remediation (what the
workflows call, no more). Deployed to every account of the Organization by the StackSet."""

from __future__ import annotations

from aws_cdk import Aws, CfnParameter, Stack
from aws_cdk import aws_iam as iam
from cdk_nag import NagSuppressions
from constructs import Construct

from .config import DETECTOR_ROLE, TRIGGER_ROLE, WORKFLOW_ROLE, Config

RESTORE_KMS_ACTIONS = [  # the permissions Neptune documents for creating an encrypted cluster
    "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptTo", "kms:ReEncryptFrom",
]


class MemberRolesStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: Config, **kwargs) -> None:
        super().__init__(scope, construct_id, description="Neptune Guard member account roles (audit, remediation)", **kwargs)
        security_account = CfnParameter(self, "SecurityAccountId", type="String", allowed_pattern=r"^\d{12}$",
                                        description="The account that runs Neptune Guard's detector and workflows").value_as_string
        organization_id = CfnParameter(self, "OrganizationId", type="String", default=config.organization_id,
                                       allowed_pattern=r"^o-[a-z0-9]{10,32}$").value_as_string
        in_organization = {"StringEquals": {"aws:PrincipalOrgID": organization_id}}

        def security_role(name: str) -> iam.IPrincipal:
            return iam.ArnPrincipal(f"arn:{Aws.PARTITION}:iam::{security_account}:role/{name}").with_conditions(in_organization)

        account_rds = f"arn:{Aws.PARTITION}:rds:*:{Aws.ACCOUNT_ID}"
        hub = f"arn:{Aws.PARTITION}:securityhub:*:{Aws.ACCOUNT_ID}:hub/default"

        audit = iam.Role(
            self, "AuditRole", role_name=config.audit_role_name, assumed_by=security_role(DETECTOR_ROLE),
            description="Neptune Guard detector: read Neptune clusters, snapshots and keys; import this account's findings",
        )
        audit.add_to_policy(iam.PolicyStatement(
            sid="ReadNeptune", actions=["rds:DescribeDBClusters", "rds:DescribeDBClusterSnapshots"],
            resources=[f"{account_rds}:cluster:*", f"{account_rds}:cluster-snapshot:*"]))
        audit.add_to_policy(iam.PolicyStatement(
            sid="ClassifyKeys", actions=["kms:DescribeKey"], resources=[f"arn:{Aws.PARTITION}:kms:*:*:key/*"]))
        audit.add_to_policy(iam.PolicyStatement(sid="FindRegions", actions=["ec2:DescribeRegions"], resources=["*"]))
        audit.add_to_policy(iam.PolicyStatement(
            sid="PublishOwnFindings", actions=["securityhub:GetFindings", "securityhub:BatchImportFindings"],
            resources=[hub, f"arn:{Aws.PARTITION}:securityhub:*:{Aws.ACCOUNT_ID}:product/{Aws.ACCOUNT_ID}/default"]))

        remediation = iam.Role(
            self, "RemediationRole", role_name=config.remediation_role_name,
            assumed_by=iam.CompositePrincipal(security_role(WORKFLOW_ROLE), security_role(TRIGGER_ROLE)),
            description="Neptune Guard workflows: re-encrypt Neptune clusters and snapshots under a customer-managed key",
        )
        remediation.add_to_policy(iam.PolicyStatement(
            sid="ReadNeptune",
            actions=["rds:DescribeDBClusters", "rds:DescribeDBInstances", "rds:DescribeDBClusterSnapshots", "rds:ListTagsForResource"],
            resources=[f"{account_rds}:cluster:*", f"{account_rds}:db:*", f"{account_rds}:cluster-snapshot:*"]))
        remediation.add_to_policy(iam.PolicyStatement(
            sid="BuildReEncryptedCopies",
            actions=["rds:CreateDBClusterSnapshot", "rds:CopyDBClusterSnapshot", "rds:RestoreDBClusterFromSnapshot",
                     "rds:CreateDBInstance", "rds:AddTagsToResource", "rds:ModifyDBCluster", "rds:ModifyDBInstance",
                     "rds:AddRoleToDBCluster", "rds:StopDBCluster"],
            resources=[f"{account_rds}:cluster:*", f"{account_rds}:db:*", f"{account_rds}:cluster-snapshot:*",
                       f"{account_rds}:subgrp:*", f"{account_rds}:cluster-pg:*", f"{account_rds}:pg:*",
                       f"arn:{Aws.PARTITION}:ec2:*:{Aws.ACCOUNT_ID}:security-group/*"]))
        remediation.add_to_policy(iam.PolicyStatement(
            sid="DeleteOnlyWhatTheWorkflowCreated",
            actions=["rds:DeleteDBCluster", "rds:DeleteDBInstance"],
            resources=[f"{account_rds}:cluster:*-cmk", f"{account_rds}:cluster:neptune-guard-tmp-*", f"{account_rds}:db:*-cmk"]))
        remediation.add_to_policy(iam.PolicyStatement(
            sid="DeleteReplacedSnapshotsAfterApproval", actions=["rds:DeleteDBClusterSnapshot"],
            resources=[f"{account_rds}:cluster-snapshot:*"]))
        remediation.add_to_policy(iam.PolicyStatement(
            sid="CarryClusterRoles", actions=["iam:PassRole"], resources=[f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/*"],
            conditions={"StringEquals": {"iam:PassedToService": "rds.amazonaws.com"}}))
        remediation.add_to_policy(iam.PolicyStatement(
            sid="DescribeTargetKey", actions=["kms:DescribeKey"], resources=[f"arn:{Aws.PARTITION}:kms:*:*:key/*"]))
        remediation.add_to_policy(iam.PolicyStatement(
            sid="UseTargetKeyThroughNeptune", actions=RESTORE_KMS_ACTIONS, resources=[f"arn:{Aws.PARTITION}:kms:*:*:key/*"],
            conditions={"StringLike": {"kms:ViaService": "rds.*.amazonaws.com"}}))
        remediation.add_to_policy(iam.PolicyStatement(
            sid="GrantTargetKeyToNeptune", actions=["kms:CreateGrant"], resources=[f"arn:{Aws.PARTITION}:kms:*:*:key/*"],
            conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}, "StringLike": {"kms:ViaService": "rds.*.amazonaws.com"}}))
        remediation.add_to_policy(iam.PolicyStatement(
            sid="ResolveFindings", actions=["securityhub:BatchUpdateFindings"], resources=[hub]))

        NagSuppressions.add_resource_suppressions(
            [audit, remediation], apply_to_children=True,
            suppressions=[{"id": "AwsSolutions-IAM5", "reason": (
                "Resources are scoped to this account and service resource type; the names of clusters, snapshots and "
                "keys are not known when the Organization-wide roles are deployed. ec2:DescribeRegions has no resource "
                "type. Deletion is limited to the workflow's own names (*-cmk, neptune-guard-tmp-*), except snapshots, "
                "whose deletion happens only after on-call approval.")}],
        )
