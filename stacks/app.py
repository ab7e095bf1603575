"""Building the CDK app: shared by app.py and the tests."""

from __future__ import annotations

from aws_cdk import App, Aspects, DefaultStackSynthesizer, Stage
from cdk_nag import AwsSolutionsChecks

from .config import Config
from .member_events import MemberEventsStack
from .member_roles import MemberRolesStack
from .security import SecurityStack


def build(app: App) -> tuple[SecurityStack, MemberRolesStack]:
    config = Config.from_context(app.node)
    Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    # The member roles are their own stack, in their own stage: deployable alone (to the management account,
    # which service-managed StackSets skip) and synthesized first so that the StackSet can carry its template.
    members = Stage(app, "Members")
    Aspects.of(members).add(AwsSolutionsChecks(verbose=True))
    member_stack = MemberRolesStack(members, "NeptuneGuardMemberRoles", config=config, analytics_reporting=False,
                                    synthesizer=DefaultStackSynthesizer(generate_bootstrap_version_rule=False))
    events_stack = MemberEventsStack(members, "NeptuneGuardMemberEvents", config=config, analytics_reporting=False,
                                     synthesizer=DefaultStackSynthesizer(generate_bootstrap_version_rule=False))
    assembly = members.synth()
    member_template = assembly.get_stack_artifact(member_stack.artifact_id).template
    events_template = assembly.get_stack_artifact(events_stack.artifact_id).template
    security = SecurityStack(app, "NeptuneGuardSecurity", config=config, member_template=member_template,
                             member_events_template=events_template)
    return security, member_stack
