"""The member account roles: audit (read, and importing its own findings) and remediation (what the
workflows call, no more). Deployed to every account of the Organization by the StackSet."""

from __future__ import annotations

from aws_cdk import Aws, CfnParameter, Stack
from aws_cdk import aws_iam as iam
from cdk_nag import NagSuppressions
from constructs import Construct

from neptune_guard.rds_resources import (
    CREATED_BY,
    CUTOVER,
    REMEDIATED_BY,
    REPLACE_APPROVED_BY,
    REPLACED_BY,
    RETAINED_UNTIL,
    RETIRED_BY,
)
from neptune_guard import live_cutover
from neptune_guard.remediation import ARCHIVED_BY, SERVED

from .config import DETECTOR_ROLE, PLANNER_ROLE, TRIGGER_ROLE, WORKFLOW_ROLE, Config

BOOKKEEPING_TAGS = (CUTOVER, RETIRED_BY, REPLACED_BY, RETAINED_UNTIL, REMEDIATED_BY, SERVED, REPLACE_APPROVED_BY)

READ_NEPTUNE_ACTIONS = ["rds:DescribeDBClusters", "rds:DescribeDBInstances", "rds:DescribeDBClusterSnapshots",
                        "rds:DescribeDBClusterSnapshotAttributes", "rds:DescribeDBClusterEndpoints", "rds:ListTagsForResource"]
RESTORE_KMS_ACTIONS = [  # the permissions Neptune documents for creating an encrypted cluster
    "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptTo", "kms:ReEncryptFrom",
]


class MemberRolesStack(Stack):
    def _streams_path_grants(self, remediation: iam.Role, executions: str, tagged_for_an_execution) -> None:
        """The streams path (lambdas/neptune_guard/live_cutover.py, PERMISSIONS): the replicator's security group, role and
        function, each created with the execution's tag and changed or deleted only with it; its role can never hold more
        than the boundary policy, and may be passed to Lambda only."""
        grants = live_cutover.PERMISSIONS
        ec2 = f"arn:{Aws.PARTITION}:ec2:*:{Aws.ACCOUNT_ID}"
        replicator_role = f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role{live_cutover.ROLE_PATH}{live_cutover.ROLE_PREFIX}*"
        functions = f"arn:{Aws.PARTITION}:lambda:*:{Aws.ACCOUNT_ID}:function:{live_cutover.FUNCTION_PREFIX}*"
        boundary = iam.ManagedPolicy(
            self, "ReplicatorBoundary", managed_policy_name=live_cutover.BOUNDARY,
            description="The most a Neptune Guard replicator role may hold: Neptune data access and its function's network interfaces",
            statements=[iam.PolicyStatement(actions=live_cutover.REPLICATION_ACTIONS,
                                            resources=[f"arn:{Aws.PARTITION}:neptune-db:*:{Aws.ACCOUNT_ID}:*/*"]),
                        iam.PolicyStatement(actions=live_cutover.VPC_ACCESS_ACTIONS, resources=["*"])])
        statements = [
            ("ChooseThePath", grants["plan"] + grants["network_read"], ["*"], None),
            ("CreateTheReplicatorGroupTagged", ["ec2:CreateSecurityGroup"], [f"{ec2}:security-group/*"], tagged_for_an_execution(CREATED_BY, requested=True)),
            ("InTheClustersVpc", ["ec2:CreateSecurityGroup"], [f"{ec2}:vpc/*"], None),
            ("TagOnlyWhatItCreates", ["ec2:CreateTags"], [f"{ec2}:security-group/*", f"{ec2}:security-group-rule/*"],
             {"StringEquals": {"ec2:CreateAction": ["CreateSecurityGroup", "AuthorizeSecurityGroupIngress"]}}),
            ("AdmitTheReplicatorWithATaggedRule", ["ec2:AuthorizeSecurityGroupIngress"], [f"{ec2}:security-group/*", f"{ec2}:security-group-rule/*"],
             tagged_for_an_execution(CREATED_BY, requested=True)),
            ("RevokeOnlyTheExecutionsRules", ["ec2:RevokeSecurityGroupIngress"], [f"{ec2}:security-group-rule/*"], tagged_for_an_execution(CREATED_BY)),
            ("RevokeOnTheClustersGroups", ["ec2:RevokeSecurityGroupIngress"], [f"{ec2}:security-group/*"], None),
            ("DeleteOnlyTheExecutionsGroup", grants["security_group_delete"], [f"{ec2}:security-group/*"], tagged_for_an_execution(CREATED_BY)),
            ("TheReplicatorRoleWithinItsBoundary", ["iam:CreateRole", "iam:PutRolePolicy"], [replicator_role],
             {"StringEquals": {"iam:PermissionsBoundary": boundary.managed_policy_arn}}),
            ("ManageTheReplicatorRole", [a for a in grants["role"] if a not in ("iam:CreateRole", "iam:PutRolePolicy")], [replicator_role], None),
            ("PassTheReplicatorRoleToLambdaOnly", grants["pass_role"], [replicator_role],
             {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}),
            ("TheReplicatorFunction", grants["function"], [functions], None),
            ("ReadTheRetiredOriginalsStream", grants["read_retired_stream"], [f"arn:{Aws.PARTITION}:rds:*:{Aws.ACCOUNT_ID}:cluster:*"],
             tagged_for_an_execution(RETIRED_BY)),
        ]
        for sid, actions, resources, conditions in statements:
            remediation.add_to_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources, conditions=conditions))

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
            description="Neptune Guard detector: read Neptune clusters, snapshots, Neptune Analytics graphs and keys; import this account's findings",
        )
        audit.add_to_policy(iam.PolicyStatement(
            # Tags come with the descriptions (inventory.read_region); ListTagsForResource is the fallback for one without.
            sid="ReadNeptune", actions=["rds:DescribeDBClusters", "rds:DescribeDBClusterSnapshots", "rds:ListTagsForResource"],
            resources=[f"{account_rds}:cluster:*", f"{account_rds}:cluster-snapshot:*"]))
        audit.add_to_policy(iam.PolicyStatement(
            sid="ReadNeptuneAnalytics",
            actions=["neptune-graph:ListGraphs", "neptune-graph:ListGraphSnapshots", "neptune-graph:ListTagsForResource"],
            resources=[f"arn:{Aws.PARTITION}:neptune-graph:*:{Aws.ACCOUNT_ID}:graph/*",
                       f"arn:{Aws.PARTITION}:neptune-graph:*:{Aws.ACCOUNT_ID}:graph-snapshot/*"]))
        audit.add_to_policy(iam.PolicyStatement(
            sid="ClassifyKeys", actions=["kms:DescribeKey"], resources=[f"arn:{Aws.PARTITION}:kms:*:*:key/*"]))
        audit.add_to_policy(iam.PolicyStatement(sid="FindRegions", actions=["ec2:DescribeRegions"], resources=["*"]))
        audit.add_to_policy(iam.PolicyStatement(
            sid="PublishOwnFindings", actions=["securityhub:GetFindings", "securityhub:BatchImportFindings", "securityhub:BatchUpdateFindings"],
            resources=[hub, f"arn:{Aws.PARTITION}:securityhub:*:{Aws.ACCOUNT_ID}:product/{Aws.ACCOUNT_ID}/default"]))

        remediation = iam.Role(
            self, "RemediationRole", role_name=config.remediation_role_name,
            assumed_by=security_role(WORKFLOW_ROLE),
            description="Neptune Guard workflows: re-encrypt Neptune clusters and snapshots under a customer-managed key",
        )
        executions = f"arn:{Aws.PARTITION}:states:*:{security_account}:execution:NeptuneGuard*Remediation:*"

        def tagged_for_an_execution(key: str, *, requested: bool = False) -> dict:
            return {"StringLike": {f"aws:{'RequestTag' if requested else 'ResourceTag'}/{key}": executions}}

        neptune_resources = [f"{account_rds}:cluster:*", f"{account_rds}:db:*", f"{account_rds}:cluster-snapshot:*",
                             f"{account_rds}:cluster-endpoint:*"]
        build_resources = neptune_resources + [f"{account_rds}:subgrp:*", f"{account_rds}:cluster-pg:*", f"{account_rds}:pg:*",
                                               f"arn:{Aws.PARTITION}:ec2:*:{Aws.ACCOUNT_ID}:security-group/*"]
        remediation.add_to_policy(iam.PolicyStatement(
            sid="ReadNeptune",
            actions=READ_NEPTUNE_ACTIONS, resources=neptune_resources))
        remediation.add_to_policy(iam.PolicyStatement(
            sid="MeasureWriteActivity", actions=["cloudwatch:GetMetricData"], resources=["*"]))
        for sid, key in (("CreateOnlyTaggedForAnExecution", CREATED_BY), ("ArchiveOnlyTaggedForAnExecution", ARCHIVED_BY)):
            remediation.add_to_policy(iam.PolicyStatement(
                sid=sid,
                actions=["rds:CreateDBClusterSnapshot", "rds:CopyDBClusterSnapshot", "rds:RestoreDBClusterFromSnapshot",
                         "rds:CreateDBInstance", "rds:AddTagsToResource"],
                resources=build_resources, conditions=tagged_for_an_execution(key, requested=True)))
        remediation.add_to_policy(iam.PolicyStatement(
            sid="BookkeepingTagsOnly", actions=["rds:AddTagsToResource"], resources=neptune_resources,
            conditions={"ForAllValues:StringEquals": {"aws:TagKeys": list(BOOKKEEPING_TAGS)}}))
        remediation.add_to_policy(iam.PolicyStatement(
            sid="RemoveOwnershipTagsOnly", actions=["rds:RemoveTagsFromResource"], resources=neptune_resources,
            conditions={"ForAllValues:StringEquals": {"aws:TagKeys": [CREATED_BY, CUTOVER, SERVED]}}))
        remediation.add_to_policy(iam.PolicyStatement(
            sid="ChangeOnlyWhatAnExecutionCreated",
            actions=["rds:ModifyDBCluster", "rds:ModifyDBInstance", "rds:StopDBCluster", "rds:AddRoleToDBCluster",
                     "rds:DeleteDBCluster", "rds:DeleteDBInstance", "rds:DeleteDBClusterSnapshot", "rds:ModifyDBClusterSnapshotAttribute"],
            resources=build_resources, conditions=tagged_for_an_execution(CREATED_BY)))
        remediation.add_to_policy(iam.PolicyStatement(
            sid="RenameTheApprovedOriginal",
            actions=["rds:ModifyDBCluster", "rds:ModifyDBInstance", "rds:StopDBCluster", "rds:DeleteDBClusterEndpoint"],
            resources=neptune_resources[:2] + neptune_resources[3:], conditions=tagged_for_an_execution(CUTOVER)))
        remediation.add_to_policy(iam.PolicyStatement(
            sid="MoveTheApprovedCustomEndpoints", actions=["rds:CreateDBClusterEndpoint", "rds:AddTagsToResource"],
            resources=[f"{account_rds}:cluster:*", f"{account_rds}:cluster-endpoint:*"],
            conditions=tagged_for_an_execution(CUTOVER, requested=True)))
        remediation.add_to_policy(iam.PolicyStatement(
            sid="DecommissionTheRetiredOriginal",
            actions=["rds:ModifyDBCluster", "rds:StopDBCluster", "rds:DeleteDBCluster", "rds:DeleteDBInstance"],
            resources=neptune_resources[:2], conditions=tagged_for_an_execution(RETIRED_BY)))
        remediation.add_to_policy(iam.PolicyStatement(
            sid="DeleteTheApprovedOriginalSnapshot", actions=["rds:DeleteDBClusterSnapshot"],
            resources=[f"{account_rds}:cluster-snapshot:*"], conditions=tagged_for_an_execution(REPLACE_APPROVED_BY)))
        remediation.add_to_policy(iam.PolicyStatement(
            sid="CarryClusterRoles", actions=["iam:PassRole"], resources=[f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/*"],
            conditions={"StringEquals": {"iam:PassedToService": "rds.amazonaws.com"}}))
        remediation.add_to_policy(iam.PolicyStatement(
            sid="DescribeTargetKey", actions=["kms:DescribeKey", "kms:GetKeyPolicy"], resources=[f"arn:{Aws.PARTITION}:kms:*:*:key/*"]))
        remediation.add_to_policy(iam.PolicyStatement(
            sid="UseTargetKeyThroughNeptune", actions=RESTORE_KMS_ACTIONS, resources=[f"arn:{Aws.PARTITION}:kms:*:*:key/*"],
            conditions={"StringLike": {"kms:ViaService": "rds.*.amazonaws.com"}}))
        remediation.add_to_policy(iam.PolicyStatement(
            sid="GrantTargetKeyToNeptune", actions=["kms:CreateGrant"], resources=[f"arn:{Aws.PARTITION}:kms:*:*:key/*"],
            conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}, "StringLike": {"kms:ViaService": "rds.*.amazonaws.com"}}))
        remediation.add_to_policy(iam.PolicyStatement(
            sid="ResolveFindings", actions=["securityhub:BatchUpdateFindings"], resources=[hub]))
        self._streams_path_grants(remediation, executions, tagged_for_an_execution)

        trigger_access = iam.Role(
            self, "TriggerAccessRole", role_name=config.trigger_access_role_name, assumed_by=security_role(TRIGGER_ROLE),
            description="Neptune Guard trigger: read the resource a finding names, and note the finding; nothing else",
        )
        trigger_access.add_to_policy(iam.PolicyStatement(
            sid="ReadTheNamedResource", actions=["rds:DescribeDBClusters", "rds:DescribeDBClusterSnapshots"],
            resources=[f"{account_rds}:cluster:*", f"{account_rds}:cluster-snapshot:*"]))
        trigger_access.add_to_policy(iam.PolicyStatement(
            sid="ClassifyItsKey", actions=["kms:DescribeKey"], resources=[f"arn:{Aws.PARTITION}:kms:*:*:key/*"]))
        trigger_access.add_to_policy(iam.PolicyStatement(
            sid="NoteTheFinding", actions=["securityhub:BatchUpdateFindings"], resources=[hub]))

        # On-call's `plan` reads what a remediation would carry, and nothing else; their own sessions assume it.
        if config.on_call_roles:
            on_call = [iam.ArnPrincipal(f"arn:{Aws.PARTITION}:iam::{account or security_account}:role/{name}").with_conditions(
                in_organization) for account, name in config.on_call_roles]
            planner = iam.Role(
                self, "PlannerRole", role_name=PLANNER_ROLE, assumed_by=iam.CompositePrincipal(*on_call) if len(on_call) > 1 else on_call[0],
                description="Neptune Guard plan, for on-call: read the Neptune resources and keys a remediation would carry")
            planner.add_to_policy(iam.PolicyStatement(
                sid="ReadNeptune", actions=READ_NEPTUNE_ACTIONS, resources=neptune_resources))
            planner.add_to_policy(iam.PolicyStatement(
                sid="ClassifyKeys", actions=["kms:DescribeKey", "kms:GetKeyPolicy"], resources=[f"arn:{Aws.PARTITION}:kms:*:*:key/*"]))
            planner.add_to_policy(iam.PolicyStatement(
                sid="ChooseThePath", actions=live_cutover.PERMISSIONS["plan"],
                resources=["*"]))

        # Stack-wide: the stack holds only these roles, and the remediation role's policy is large enough that the CDK
        # splits it into overflow policies created after this point.
        NagSuppressions.add_stack_suppressions(
            self,
            [{"id": "AwsSolutions-IAM5", "reason": (
                "Resources are scoped to this account and service resource type; the names of clusters, snapshots and "
                "keys are not known when the Organization-wide roles are deployed. ec2:DescribeRegions and "
                "cloudwatch:GetMetricData have no resource type. Every rename, stop, deletion-protection change and "
                "deletion is conditioned on a Neptune Guard tag naming a remediation execution of the security account: "
                "created-by (set only at creation), cutover (the original, after on-call approval), retired-by (after the "
                "cutover) or replace-approved-by (a snapshot whose deletion on-call approved). A principal holding this role "
                "can add those bookkeeping tags itself; only the security account's workflow role may assume it.")}],
        )
