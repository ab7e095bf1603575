"""The member accounts' change forwarding: in every region the StackSet names, an EventBridge rule sends the CloudTrail
management calls that can change a verdict to the security account's change bus, where they start a targeted scan of
that account-region (stacks/security.py). EventBridge receives CloudTrail management events on the default bus of
the region the call was made in, without a trail being needed.
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-service-event-cloudtrail.html
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cross-account.html"""

from __future__ import annotations

from aws_cdk import Aws, CfnParameter, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from neptune_guard.detect.changes import CLOUDTRAIL, WATCHED

from .config import CHANGE_BUS, Config


class MemberEventsStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: Config, **kwargs) -> None:
        super().__init__(scope, construct_id, description="Neptune Guard: forward Neptune and KMS changes to the security account",
                         **kwargs)
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
