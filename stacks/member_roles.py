"""The member account roles: audit (read, and importing its own findings) and remediation (what the
workflows call, no more). Deployed to every account of the Organization by the StackSet."""

from __future__ import annotations

from aws_cdk import Aws, CfnParameter, Stack
from aws_cdk import aws_iam as iam
from cdk_nag import NagSuppressions
from constructs import Construct

from neptune_guard.approve import approval_marks
from neptune_guard.remediate import finding_notes, naming
from neptune_guard.tags import (
    APPROVAL_MARKS,
    AUTHORIZING_TAGS,
    BOOKKEEPING_TAGS,
    CREATED_BY,
    CUTOVER,
    DECOMMISSION_APPROVED_BY,
    REENCRYPT_APPROVED_BY,
    REMEDIATED_BY,
    REPLACE_APPROVED_BY,
    REPLACED_BY,
    RETAINED_UNTIL,
    RETIRED_BY,
    TEMPORARY_FOR,
)
from neptune_guard.remediate import live_cutover
from neptune_guard.tags import ARCHIVED_BY, SERVED

from .config import APPROVAL_ROLE, DETECTOR_ROLE, PLANNER_ROLE, TRIGGER_ROLE, WORKFLOW_ROLE, Config


READ_NEPTUNE_ACTIONS = ["rds:DescribeDBClusters", "rds:DescribeDBInstances", "rds:DescribeDBClusterSnapshots",
                        "rds:DescribeDBClusterSnapshotAttributes", "rds:DescribeDBClusterEndpoints", "rds:ListTagsForResource"]
RESTORE_KMS_ACTIONS = [  # the permissions Neptune documents for creating an encrypted cluster
    "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptTo", "kms:ReEncryptFrom",
]


class MemberRolesStack(Stack):
    def _streams_path_grants(self, remediation: iam.Role, executions: str, tagged_for_an_execution) -> None:
        """The streams path (lambdas/neptune_guard/remediate/live_cutover.py, PERMISSIONS): the replicator's security group and
        role, each created with the execution's tag and changed or deleted only with it (its role can never hold more than
        the boundary policy); its function is invoked and deleted here, and created only by the regional creator role."""
        grants = live_cutover.PERMISSIONS
        ec2 = f"arn:{Aws.PARTITION}:ec2:*:{Aws.ACCOUNT_ID}"
        replicator_role = f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role{live_cutover.ROLE_PATH}{live_cutover.ROLE_PREFIX}*"
        functions = f"arn:{Aws.PARTITION}:lambda:*:{Aws.ACCOUNT_ID}:function:{live_cutover.FUNCTION_PREFIX}*"
        boundary = iam.ManagedPolicy(
            self, "ReplicatorBoundary", managed_policy_name=live_cutover.BOUNDARY,
            description="The most a Neptune Guard replicator role may hold: Neptune data access, and its function's network interfaces as Lambda manages them",
            document=iam.PolicyDocument.from_json(live_cutover.boundary_policy(Aws.PARTITION, Aws.ACCOUNT_ID)))
        statements = [
            ("ChooseThePath", grants["plan"] + grants["network_read"] + grants["find_code_signing"], ["*"], None),
            ("CreateTheReplicatorGroupTagged", ["ec2:CreateSecurityGroup"], [f"{ec2}:security-group/*"], tagged_for_an_execution(CREATED_BY, requested=True)),
            ("InTheClustersVpc", ["ec2:CreateSecurityGroup"], [f"{ec2}:vpc/*"], None),
            # No rule, on any group: IAM cannot limit what a rule would open. The replicator joins what the clusters
            # already admit (remediate/network.py); its own group admits nothing.
            ("TagOnlyWhatItCreates", ["ec2:CreateTags"], [f"{ec2}:security-group/*"], {"StringEquals": {"ec2:CreateAction": "CreateSecurityGroup"}}),
            ("DeleteOnlyTheExecutionsGroup", grants["security_group_delete"], [f"{ec2}:security-group/*"], tagged_for_an_execution(CREATED_BY)),
            ("TheReplicatorRoleWithinItsBoundary", ["iam:CreateRole", "iam:PutRolePolicy"], [replicator_role],
             {"StringEquals": {"iam:PermissionsBoundary": boundary.managed_policy_arn}}),
            ("ManageTheReplicatorRole", [a for a in grants["role"] if a not in ("iam:CreateRole", "iam:PutRolePolicy", "iam:GetRole")], [replicator_role], None),
            # Read before it may exist: a role not made has no path, so its name alone too (a read, harmless).
            ("ReadTheReplicatorRole", ["iam:GetRole"], [replicator_role, f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/{live_cutover.ROLE_PREFIX}*"], None),
            # Made by the member regional stack's creator role only (live_cutover.creator_policy): not this role's.
            ("TheReplicatorFunction", grants["function"], [functions], None),
            ("ReadTheRetiredOriginalsStream", grants["read_retired_stream"], [f"arn:{Aws.PARTITION}:rds:*:{Aws.ACCOUNT_ID}:cluster:*"],
             tagged_for_an_execution(CUTOVER)),
        ]
        # A managed policy of its own, named so that the guardrail SCP protects its versions (an inline policy this size
        # would overflow into managed policies with generated names).
        iam.ManagedPolicy(self, "LiveCutoverPolicy", managed_policy_name="NeptuneGuardRemediationLiveCutover", roles=[remediation],
                          statements=[iam.PolicyStatement(sid=sid, actions=actions, resources=resources, conditions=conditions)
                                      for sid, actions, resources, conditions in statements])

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

        # The one member role that imports this tool's findings: the scan's, and the trigger's and the workflow's notes on
        # the finding they act on (no other member role has Security Hub access, so the remediation role's credentials
        # cannot pass or archive a finding).
        audit = iam.Role(
            self, "AuditRole", role_name=config.audit_role_name,
            assumed_by=iam.CompositePrincipal(*(security_role(name) for name in (DETECTOR_ROLE, WORKFLOW_ROLE, TRIGGER_ROLE))),
            description="Neptune Guard: read Neptune clusters, snapshots, Neptune Analytics graphs and keys; import this account's findings",
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
        # The tool's own findings only, through its own product (an import names the product, and Security Hub takes a
        # custom integration's findings only for its own account's default product); no BatchUpdateFindings, which
        # would reach any product's findings, by any role.
        own_findings = [hub, f"arn:{Aws.PARTITION}:securityhub:*:{Aws.ACCOUNT_ID}:product/{Aws.ACCOUNT_ID}/default"]
        audit.add_to_policy(iam.PolicyStatement(
            sid="PublishOwnFindings", actions=finding_notes.PERMISSIONS, resources=own_findings))

        remediation = iam.Role(
            self, "RemediationRole", role_name=config.remediation_role_name,
            assumed_by=security_role(WORKFLOW_ROLE),
            description="Neptune Guard workflows: re-encrypt Neptune clusters and snapshots under a customer-managed key",
        )
        executions = f"arn:{Aws.PARTITION}:states:*:{security_account}:execution:NeptuneGuard*Remediation:*"
        granted: list[iam.PolicyStatement] = []
        grant = granted.append

        def tagged_for_an_execution(key: str, *, requested: bool = False) -> dict:
            return {"StringLike": {f"aws:{'RequestTag' if requested else 'ResourceTag'}/{key}": executions}}

        neptune_resources = [f"{account_rds}:cluster:*", f"{account_rds}:db:*", f"{account_rds}:cluster-snapshot:*",
                             f"{account_rds}:cluster-endpoint:*"]
        grant(iam.PolicyStatement(
            sid="ReadNeptune",
            actions=READ_NEPTUNE_ACTIONS, resources=neptune_resources))
        grant(iam.PolicyStatement(
            sid="MeasureWriteActivity", actions=["cloudwatch:GetMetricData"], resources=["*"]))
        def our_names(kind: str) -> list[str]:
            return [f"{account_rds}:{kind}:{pattern}" for pattern in naming.CREATED_NAMES[kind]]

        created = our_names("cluster") + our_names("db") + our_names("cluster-snapshot")
        settings = [f"{account_rds}:subgrp:*", f"{account_rds}:cluster-pg:*", f"{account_rds}:pg:*",
                    f"arn:{Aws.PARTITION}:ec2:*:{Aws.ACCOUNT_ID}:security-group/*"]
        own = {"StringLike": {f"aws:ResourceTag/{CREATED_BY}": executions}}
        marked = {"StringLike": {f"aws:ResourceTag/{CUTOVER}": executions}}
        # The new resource: only under the names the workflow derives, and only with its execution's tag. What a workflow
        # handed over keeps such a name (a re-encrypted copy, an archive) and the tag that says so: never tagged again.
        # A request carrying one authorizing tag carries no other: an approval mark written with a creation tag, in the
        # same call, would be a mark the approval endpoint never wrote.
        def only(key: str) -> dict:
            return {f"aws:RequestTag/{other}": "true" for other in AUTHORIZING_TAGS if other != key}

        # Nothing is made from a snapshot the replacement approval marked (an original about to be deleted, or its
        # shareable copy): RDS copies a source's tags (CopyTags) without authorizing them as the request's, so such a
        # copy could carry the mark that lets the role share it.
        unshareable_source = {f"aws:ResourceTag/{REPLACE_APPROVED_BY}": "true"}

        def created_for_an_execution(key: str) -> dict:
            return {**tagged_for_an_execution(key, requested=True),
                    "Null": {f"aws:ResourceTag/{REMEDIATED_BY}": "true", f"aws:ResourceTag/{ARCHIVED_BY}": "true", **unshareable_source,
                             **only(key)}}

        statements = [
            ("CreateTaggedForAnExecution", ["rds:CreateDBClusterSnapshot", "rds:CopyDBClusterSnapshot", "rds:RestoreDBClusterFromSnapshot",
                                            "rds:CreateDBInstance", "rds:AddTagsToResource"], created, created_for_an_execution(CREATED_BY)),
            ("CreateWithTheClustersSettings", ["rds:RestoreDBClusterFromSnapshot", "rds:CreateDBInstance"], settings,
             tagged_for_an_execution(CREATED_BY, requested=True)),
            # (never into a temporary cluster: that is restored only from the snapshot a re-encrypt approval marked)
            ("RestoreOnlyFromSnapshotsTaggedByCreate", ["rds:RestoreDBClusterFromSnapshot"], [f"{account_rds}:cluster-snapshot:*"],
             {**own, "Null": {f"aws:RequestTag/{TEMPORARY_FOR}": "true", **unshareable_source}}),
            # The archive: a snapshot (copied, or taken of a cluster the execution restored), kept by the customer.
            ("ArchiveTaggedForAnExecution", ["rds:CreateDBClusterSnapshot", "rds:CopyDBClusterSnapshot", "rds:AddTagsToResource"],
             our_names("cluster-snapshot"), created_for_an_execution(ARCHIVED_BY)),
        ]
        # A customer's unencrypted snapshot cannot be copied under a key: it is restored into a temporary cluster, under
        # a tag of its own and not the creation tag, so that the role may snapshot and delete that cluster but never give
        # it an instance or change it; and a restore from a snapshot the execution did not make may create nothing else.
        temporary = {"StringLike": {f"aws:RequestTag/{TEMPORARY_FOR}": executions},
                     "Null": {f"aws:RequestTag/{CREATED_BY}": "true", f"aws:RequestTag/{ARCHIVED_BY}": "true"}}
        statements += [
            ("RestoreIntoATemporaryCluster", ["rds:RestoreDBClusterFromSnapshot", "rds:AddTagsToResource"],
             [f"{account_rds}:cluster:{pattern}" for pattern in naming.TEMPORARY_CLUSTER_NAMES],
             {**tagged_for_an_execution(TEMPORARY_FOR, requested=True), "ForAllValues:StringEquals": {"aws:TagKeys": [TEMPORARY_FOR]}}),
            ("RestoreATemporaryClusterWithTheSettings", ["rds:RestoreDBClusterFromSnapshot"], settings, temporary),
            # ... and only the snapshot the same execution's approval marked (not another execution's, of other data).
            ("RestoreOnlyAnApprovedSnapshotIntoATemporaryCluster", ["rds:RestoreDBClusterFromSnapshot"],
             [f"{account_rds}:cluster-snapshot:*"],
             {**temporary, "Null": {**temporary["Null"], **unshareable_source},
              "StringLike": {**temporary["StringLike"], f"aws:ResourceTag/{REENCRYPT_APPROVED_BY}": executions},
              "StringEquals": {f"aws:ResourceTag/{REENCRYPT_APPROVED_BY}": "${aws:RequestTag/" + TEMPORARY_FOR + "}"}}),
            ("SnapshotAndDeleteTemporaryClusters", ["rds:CreateDBClusterSnapshot", "rds:DeleteDBCluster"], [f"{account_rds}:cluster:*"],
             {"StringLike": {f"aws:ResourceTag/{TEMPORARY_FOR}": executions}}),
        ]
        statements += [
            # What is snapshotted or copied: a customer's cluster or snapshot only once an approval marked it; what the
            # execution created.
            ("SnapshotOnlyAnApprovedOrOwnCluster", ["rds:CreateDBClusterSnapshot"], [f"{account_rds}:cluster:*"], marked),
            ("SnapshotOwnClusters", ["rds:CreateDBClusterSnapshot"], [f"{account_rds}:cluster:*"], own),
            ("CopyOnlyAnApprovedSnapshot", ["rds:CopyDBClusterSnapshot"], [f"{account_rds}:cluster-snapshot:*"],
             {**tagged_for_an_execution(REENCRYPT_APPROVED_BY), "Null": unshareable_source}),
            ("CopyOwnSnapshots", ["rds:CopyDBClusterSnapshot"], [f"{account_rds}:cluster-snapshot:*"], {**own, "Null": unshareable_source}),
            ("InstancesOnlyInOwnClusters", ["rds:CreateDBInstance"], [f"{account_rds}:cluster:*"], own),
            # Bookkeeping that authorizes nothing, on what an approval marked or the execution created.
            ("BookkeepingOnApprovedResources", ["rds:AddTagsToResource"], neptune_resources,
             {**marked, "ForAllValues:StringEquals": {"aws:TagKeys": [RETIRED_BY, REPLACED_BY, RETAINED_UNTIL, REMEDIATED_BY]}}),
            ("BookkeepingOnOwnResources", ["rds:AddTagsToResource"], neptune_resources,
             {**own, "ForAllValues:StringEquals": {"aws:TagKeys": [SERVED, REMEDIATED_BY]}}),
            # The retired original's automated snapshots say they go with it (Neptune names no cluster on them that a
            # condition could test); these keys authorize nothing, but the scan reads them as "kept on purpose", so only
            # on automated snapshots (`rds:` identifiers, which no manual snapshot can have) and naming an execution.
            ("BookkeepingOnTheRetiredOriginalsBackups", ["rds:AddTagsToResource"], [f"{account_rds}:cluster-snapshot:rds:*"],
             {"ForAllValues:StringEquals": {"aws:TagKeys": [RETIRED_BY, REPLACED_BY, RETAINED_UNTIL]}, "Null": {"aws:TagKeys": "false"},
              "StringLike": {f"aws:RequestTag/{RETIRED_BY}": executions}}),
            # Removing a tag only ever narrows what the role may do: hand-over and rollback give up their hold.
            ("RemoveOwnershipTagsOnly", ["rds:RemoveTagsFromResource"], neptune_resources,
             {"ForAllValues:StringEquals": {"aws:TagKeys": [CREATED_BY, CUTOVER, SERVED, REENCRYPT_APPROVED_BY, REPLACE_APPROVED_BY,
                                                            DECOMMISSION_APPROVED_BY, RETIRED_BY, REPLACED_BY, RETAINED_UNTIL]}}),
            ("ChangeOnlyWhatAnExecutionCreated", ["rds:ModifyDBCluster", "rds:ModifyDBInstance", "rds:StopDBCluster",
                                                  "rds:AddRoleToDBCluster", "rds:DeleteDBCluster", "rds:DeleteDBInstance",
                                                  "rds:DeleteDBClusterSnapshot"], neptune_resources, own),
            # Sharing: only the execution's own snapshot, once on-call approved its replacement (with the accounts the
            # plan names: IAM cannot see the account list, the step checks it).
            ("ShareOnlyAnApprovedReplacement", ["rds:ModifyDBClusterSnapshotAttribute"], [f"{account_rds}:cluster-snapshot:*"],
             {**own, "StringLike": {**own["StringLike"], f"aws:ResourceTag/{REPLACE_APPROVED_BY}": executions}}),
            ("RenameTheApprovedOriginal", ["rds:ModifyDBCluster", "rds:ModifyDBInstance", "rds:StopDBCluster",
                                           "rds:DeleteDBClusterEndpoint"],
             neptune_resources[:2] + neptune_resources[3:], marked),
            # A moved custom endpoint keeps the customer's name and tags (a tag policy may require them at creation), and
            # says which execution made it; it carries no other Neptune Guard tag, so nothing the role writes on an
            # endpoint lets it delete one: only the approval endpoint's cutover mark does (the original's, above).
            ("MoveTheApprovedCustomEndpoints", ["rds:CreateDBClusterEndpoint", "rds:AddTagsToResource"],
             [f"{account_rds}:cluster-endpoint:*"],
             {**tagged_for_an_execution(REMEDIATED_BY, requested=True),
              "Null": {f"aws:RequestTag/{other}": "true" for other in AUTHORIZING_TAGS + BOOKKEEPING_TAGS if other != REMEDIATED_BY}}),
            ("EndpointsOnApprovedClusters", ["rds:CreateDBClusterEndpoint"], [f"{account_rds}:cluster:*"], marked),
            ("EndpointsOnOwnClusters", ["rds:CreateDBClusterEndpoint"], [f"{account_rds}:cluster:*"], own),
            ("DecommissionOnlyWhatOnCallApproved", ["rds:DeleteDBCluster", "rds:DeleteDBInstance"], neptune_resources[:2],
             {"StringLike": {f"aws:ResourceTag/{DECOMMISSION_APPROVED_BY}": executions}}),
            ("DeleteTheApprovedOriginalSnapshot", ["rds:DeleteDBClusterSnapshot"], [f"{account_rds}:cluster-snapshot:*"],
             tagged_for_an_execution(REPLACE_APPROVED_BY)),
        ]
        for sid, actions, resources, conditions in statements:
            grant(iam.PolicyStatement(sid=sid, actions=actions, resources=resources, conditions=conditions))
        grant(iam.PolicyStatement(
            sid="CarryClusterRoles", actions=["iam:PassRole"], resources=[f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/*"],
            conditions={"StringEquals": {"iam:PassedToService": "rds.amazonaws.com"}}))
        grant(iam.PolicyStatement(
            sid="DescribeTargetKey", actions=["kms:DescribeKey", "kms:GetKeyPolicy"], resources=[f"arn:{Aws.PARTITION}:kms:*:*:key/*"]))
        # KMS through Neptune only, on this account's keys: the configured target key (by its alias) for the new
        # encryption; any of the account's keys to read an original encrypted under a key of its own.
        account_keys = [f"arn:{Aws.PARTITION}:kms:*:{Aws.ACCOUNT_ID}:key/*"]
        via_neptune = {"StringLike": {"kms:ViaService": "rds.*.amazonaws.com"}}
        target = ({"ForAnyValue:StringEquals": {"kms:ResourceAliases": [config.target_key]}}
                  if config.target_key.startswith("alias/") else {})
        grant(iam.PolicyStatement(
            sid="UseTargetKeyThroughNeptune", actions=RESTORE_KMS_ACTIONS, resources=account_keys, conditions={**via_neptune, **target}))
        grant(iam.PolicyStatement(
            sid="GrantTargetKeyToNeptune", actions=["kms:CreateGrant"], resources=account_keys,
            conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}, **via_neptune, **target}))
        grant(iam.PolicyStatement(
            sid="ReadTheOriginalThroughNeptune", actions=["kms:Decrypt"], resources=account_keys, conditions=via_neptune))
        grant(iam.PolicyStatement(
            sid="GrantTheOriginalsKeyToNeptune", actions=["kms:CreateGrant"], resources=account_keys,
            conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}, **via_neptune}))
        self._streams_path_grants(remediation, executions, tagged_for_an_execution)
        # Named managed policies, so that the guardrail SCP protects their versions (an inline policy this size would
        # overflow into managed policies with generated names); each under IAM's 6,144-character limit.
        third = -(-len(granted) // 3)
        for part, chunk in enumerate((granted[:third], granted[third:2 * third], granted[2 * third:]), start=1):
            iam.ManagedPolicy(self, f"RemediationPolicy{part}", managed_policy_name=f"NeptuneGuardRemediation{part}",
                              roles=[remediation], statements=chunk)

        trigger_access = iam.Role(
            self, "TriggerAccessRole", role_name=config.trigger_access_role_name, assumed_by=security_role(TRIGGER_ROLE),
            description="Neptune Guard trigger: read the resource a finding names; nothing else",
        )
        trigger_access.add_to_policy(iam.PolicyStatement(
            sid="ReadTheNamedResource", actions=["rds:DescribeDBClusters", "rds:DescribeDBClusterSnapshots"],
            resources=[f"{account_rds}:cluster:*", f"{account_rds}:cluster-snapshot:*"]))
        trigger_access.add_to_policy(iam.PolicyStatement(
            sid="ClassifyItsKey", actions=["kms:DescribeKey"], resources=[f"arn:{Aws.PARTITION}:kms:*:*:key/*"]))

        # The approval marks (neptune_guard/approve/approval_marks.py): written only by this role, which only the approval
        # endpoint assumes, after its checks; the remediation role cannot write them.
        marks = iam.Role(
            self, "ApprovalMarksRole", role_name=approval_marks.MARKS_ROLE, assumed_by=security_role(APPROVAL_ROLE),
            description="Neptune Guard approval endpoint: mark what an on-call approval covers; nothing else")
        marks.add_to_policy(iam.PolicyStatement(
            sid="ReadWhatThePlanNames", actions=approval_marks.PERMISSIONS["read"], resources=neptune_resources))
        marks.add_to_policy(iam.PolicyStatement(
            sid="WriteApprovalMarksOnly", actions=approval_marks.PERMISSIONS["mark"], resources=neptune_resources,
            conditions={"ForAllValues:StringEquals": {"aws:TagKeys": list(APPROVAL_MARKS)},
                        "StringLikeIfExists": {f"aws:RequestTag/{key}": executions for key in APPROVAL_MARKS}}))
        marks.add_to_policy(iam.PolicyStatement(
            sid="TakeBackApprovalMarksOnly", actions=approval_marks.PERMISSIONS["take back"], resources=neptune_resources,
            conditions={"ForAllValues:StringEquals": {"aws:TagKeys": list(APPROVAL_MARKS)}}))

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
                "created-by (set only at creation, under the workflow's names) or an approval mark (cutover, "
                "re-encrypt-approved-by, replace-approved-by, decommission-approved-by), which only the approval marks "
                "role writes; only the security account's workflow role may assume the remediation role.")}],
        )
