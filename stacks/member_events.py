"""What member accounts need in each region the StackSet names:
- change forwarding: an EventBridge rule sends the CloudTrail management calls that can change a verdict to the
  security account's change bus, where they start a targeted scan of that account-region (stacks/security.py).
  EventBridge receives CloudTrail management events on the default bus of the region the call was made in, without a
  trail being needed;
- the replicator's code signing: a code-signing configuration that accepts only the security stack's signing profile
  and blocks anything else, and the one role that may create a replicator function here, under that configuration,
  which only the security account's workflow role may assume (remediate/replicator_package.py and
  live_cutover.creator_policy say why).
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-service-event-cloudtrail.html
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cross-account.html
https://docs.aws.amazon.com/lambda/latest/dg/configuration-codesigning.html"""

from __future__ import annotations

from aws_cdk import Aws, CfnParameter, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from cdk_nag import NagSuppressions
from constructs import Construct

from neptune_guard.detect.changes import CLOUDTRAIL, WATCHED
from neptune_guard.remediate import live_cutover

from .config import CHANGE_BUS, WORKFLOW_ROLE, Config


class MemberEventsStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: Config, **kwargs) -> None:
        super().__init__(scope, construct_id, description=("Neptune Guard: forward Neptune and KMS changes to the security account; "
                                                            "accept only Neptune Guard's signed replicator code"), **kwargs)
        security_account = CfnParameter(self, "SecurityAccountId", type="String", allowed_pattern=r"^\d{12}$",
                                        description="The account that runs Neptune Guard").value_as_string
        security_region = CfnParameter(self, "SecurityRegion", type="String", allowed_pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$",
                                       description="The region of Neptune Guard's change bus").value_as_string
        bus_arn = f"arn:{Aws.PARTITION}:events:{security_region}:{security_account}:event-bus/{CHANGE_BUS}"
        # A rule whose target is a bus in another account (or region) sends with a role that may put events on it (the
        # target grants the role events:PutEvents on that bus alone).
        forwarder = iam.Role(self, "ForwardChanges", assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
                             description="Neptune Guard: put this region's Neptune and KMS changes on the security account's bus")
        events.Rule(self, "NeptuneChanges", description="Neptune Guard: Neptune, Neptune Analytics and KMS calls that change a verdict",
                    event_pattern=events.EventPattern(source=sorted(WATCHED), detail_type=[CLOUDTRAIL],
                                                      detail={"eventName": sorted({n for names in WATCHED.values() for n in names})}),
                    targets=[targets.EventBus(events.EventBus.from_event_bus_arn(self, "ChangeBus", bus_arn), role=forwarder)])
        self._replicator_code_signing(security_account)

    def _replicator_code_signing(self, security_account: str) -> None:
        organization_id = CfnParameter(self, "OrganizationId", type="String", allowed_pattern=r"^o-[a-z0-9]{10,32}$",
                                       description="The Organization whose security account may assume the creator role").value_as_string
        profile_version = CfnParameter(self, "ReplicatorSigningProfileVersionArn", type="String",
                                       allowed_pattern=r"^arn:aws[a-z-]*:signer:[a-z0-9-]+:\d{12}:/signing-profiles/[A-Za-z0-9_]{2,64}/[A-Za-z0-9]+$",
                                       description="The security stack's signing profile version: the replicator's one publisher").value_as_string
        # The L1: the L2 builds a profile version's ARN in this stack's account, and the profile is the security account's.
        signing = lambda_.CfnCodeSigningConfig(
            self, "ReplicatorCodeSigning", description="Neptune Guard replicator: only code Neptune Guard signed",
            allowed_publishers=lambda_.CfnCodeSigningConfig.AllowedPublishersProperty(signing_profile_version_arns=[profile_version]),
            code_signing_policies=lambda_.CfnCodeSigningConfig.CodeSigningPoliciesProperty(untrusted_artifact_on_deployment="Enforce"))
        workflow = iam.ArnPrincipal(f"arn:{Aws.PARTITION}:iam::{security_account}:role/{WORKFLOW_ROLE}").with_conditions(
            {"StringEquals": {"aws:PrincipalOrgID": organization_id}})
        creator = iam.Role(self, "ReplicatorCreator", role_name=f"{live_cutover.CREATOR_PREFIX}{Aws.REGION}", assumed_by=workflow,
                           description="Neptune Guard workflow: create this region's replicator functions, from signed code only",
                           inline_policies={"CreateReplicators": iam.PolicyDocument.from_json(live_cutover.creator_policy(
                               Aws.PARTITION, Aws.REGION, Aws.ACCOUNT_ID, signing.attr_code_signing_config_arn))})
        NagSuppressions.add_resource_suppressions(creator, [{"id": "AwsSolutions-IAM5", "reason": (
            "Replicator functions and roles are named for the execution's token, unknown in advance; a function may be created "
            "only under this region's code-signing configuration, which accepts only Neptune Guard's signed code. The EC2 "
            "reads Lambda authorizes for a VPC configuration have no resource-level permissions.")}])
