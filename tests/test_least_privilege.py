"""What the synthesized member remediation role allows, evaluated as IAM evaluates it (sandbox/aws/iam_policy.py):
nothing of the customer's can be renamed, stopped, unprotected or deleted unless a Neptune Guard execution of
the security account tagged it; and the evaluator itself denies what it should."""

import json
from pathlib import Path

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template

from sandbox.aws.iam_policy import evaluate, role_policies
from stacks.app import build

ROOT = Path(__file__).resolve().parent.parent
MEMBER, SECURITY, REGION = "111111111111", "999999999999", "us-east-1"
OURS = f"arn:aws:states:{REGION}:{SECURITY}:execution:NeptuneGuardClusterRemediation:orders-1a2b3c4d5e6f7a8b"
REFERENCES = {"AWS::Partition": "aws", "AWS::AccountId": MEMBER, "AWS::Region": REGION, "SecurityAccountId": SECURITY,
              "OrganizationId": "o-exampleorgid"}
DESTRUCTIVE = {
    "cluster": ["rds:ModifyDBCluster", "rds:StopDBCluster", "rds:DeleteDBCluster", "rds:AddRoleToDBCluster"],
    "db": ["rds:ModifyDBInstance", "rds:DeleteDBInstance"],
    "cluster-snapshot": ["rds:DeleteDBClusterSnapshot", "rds:ModifyDBClusterSnapshotAttribute"],
}
# Customer resources, Neptune and Aurora, under any name: some look like the workflow's own.
NAMES = ["orders-graph", "billing-cmk", "ledger-pre-cmk", "neptune-guard-tmp-1a2b", "orders-retired-1a2b3c4d", "aurora-prod",
         "orders-cmk-20261204", "orders-final-20261204"]


@pytest.fixture(scope="module")
def remediation_policies(tmp_path_factory):
    from tests.conftest import EXAMPLE_ORGANIZATION

    context = {**json.loads((ROOT / "cdk.json").read_text())["context"], "neptune-guard:organizationId": EXAMPLE_ORGANIZATION}
    app = App(context=context, outdir=str(tmp_path_factory.mktemp("cdk.out")))
    _, members = build(app)
    return role_policies(Template.from_stack(members).to_json(), "NeptuneGuardRemediation", REFERENCES)


def arn(resource_type: str, name: str) -> str:
    return f"arn:aws:rds:{REGION}:{MEMBER}:{resource_type}:{name}"


def tags(key: str, value: str) -> dict:
    return {f"aws:ResourceTag/{key}": value}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("resource_type", DESTRUCTIVE)
def test_an_untagged_customer_resource_cannot_be_renamed_stopped_unprotected_or_deleted(remediation_policies, resource_type, name):
    for action in DESTRUCTIVE[resource_type]:
        decision = evaluate(remediation_policies, action, arn(resource_type, name), {})
        assert not decision.allowed, f"{action} on {name}: {decision.reason}"
        # customer tags, and a Neptune Guard tag naming someone else's execution, change nothing
        for context in ({"aws:ResourceTag/team": "orders"},
                        tags("neptune-guard:created-by", OURS.replace(SECURITY, "222222222222")),
                        tags("neptune-guard:created-by", OURS.replace("NeptuneGuardClusterRemediation", "SomeoneElses")),
                        tags("neptune-guard:remediated-by", OURS)):
            assert not evaluate(remediation_policies, action, arn(resource_type, name), context).allowed, (action, context)


@pytest.mark.parametrize("resource_type", DESTRUCTIVE)
def test_what_an_execution_created_it_may_change(remediation_policies, resource_type):
    for action in DESTRUCTIVE[resource_type]:
        context = tags("neptune-guard:created-by", OURS)
        if action == "rds:ModifyDBClusterSnapshotAttribute":  # sharing: only once on-call approved the replacement
            assert not evaluate(remediation_policies, action, arn(resource_type, "anything"), context).allowed
            context = {**context, **tags("neptune-guard:replace-approved-by", OURS)}
        decision = evaluate(remediation_policies, action, arn(resource_type, "anything"), context)
        assert decision.allowed, f"{action}: {decision.reason}"


def test_the_approved_original_may_be_renamed_and_stopped_but_deleted_only_once_decommission_is_approved(remediation_policies):
    original, marked = arn("cluster", "orders-graph"), tags("neptune-guard:cutover", OURS)
    assert evaluate(remediation_policies, "rds:CreateDBClusterSnapshot", original, marked).allowed
    assert not evaluate(remediation_policies, "rds:CreateDBClusterSnapshot", original, {}).allowed
    assert evaluate(remediation_policies, "rds:ModifyDBCluster", original, marked).allowed
    assert evaluate(remediation_policies, "rds:StopDBCluster", original, marked).allowed
    assert not evaluate(remediation_policies, "rds:DeleteDBCluster", original, marked).allowed
    assert not evaluate(remediation_policies, "rds:DeleteDBCluster", original, tags("neptune-guard:retired-by", OURS)).allowed
    assert evaluate(remediation_policies, "rds:DeleteDBCluster", original, tags("neptune-guard:decommission-approved-by", OURS)).allowed
    snapshot = arn("cluster-snapshot", "orders-before-migration")
    assert not evaluate(remediation_policies, "rds:DeleteDBClusterSnapshot", snapshot, marked).allowed
    assert evaluate(remediation_policies, "rds:DeleteDBClusterSnapshot", snapshot, tags("neptune-guard:replace-approved-by", OURS)).allowed


def test_creating_needs_the_executions_tag_on_the_request_and_one_of_its_own_names(remediation_policies):
    request = {"aws:RequestTag/neptune-guard:created-by": OURS, "aws:TagKeys": ["neptune-guard:created-by"]}
    for action, resource in (("rds:RestoreDBClusterFromSnapshot", arn("cluster", "orders-graph-cmk-ng1a2b3c4d")),
                             ("rds:CreateDBInstance", arn("db", "orders-graph-1-cmk-ng1a2b3c4d")),
                             ("rds:AddTagsToResource", arn("cluster-snapshot", "x-pre-cmk-ng1a2b3c4d"))):
        assert not evaluate(remediation_policies, action, resource, {}).allowed, action
        assert evaluate(remediation_policies, action, resource, request).allowed, action
        customers = resource.rsplit(":", 1)[0] + ":orders-graph"
        assert not evaluate(remediation_policies, action, customers, request).allowed, (action, customers)


def test_the_remediation_role_cannot_write_an_approval_mark_or_bookkeeping_on_a_customer_resource(remediation_policies):
    cluster = arn("cluster", "orders-graph")
    for key in ("cutover", "decommission-approved-by", "replace-approved-by", "created-by", "retired-by", "remediated-by"):
        request = {f"aws:RequestTag/neptune-guard:{key}": OURS, "aws:TagKeys": [f"neptune-guard:{key}"]}
        assert not evaluate(remediation_policies, "rds:AddTagsToResource", cluster, request).allowed, key
        assert not evaluate(remediation_policies, "rds:AddTagsToResource", cluster, {**request, **tags("neptune-guard:cutover", OURS)}).allowed \
            or key in ("retired-by", "remediated-by"), key  # on the approved original: bookkeeping only, never a mark
    assert not evaluate(remediation_policies, "rds:RemoveTagsFromResource", cluster, {"aws:TagKeys": ["team"]}).allowed
    assert not evaluate(remediation_policies, "ec2:TerminateInstances", f"arn:aws:ec2:{REGION}:{MEMBER}:instance/i-1", {}).allowed
    assert not evaluate(remediation_policies, "rds:DeleteDBCluster", arn("cluster", "x").replace(MEMBER, "222222222222"),
                        tags("neptune-guard:created-by", OURS)).allowed  # another account's cluster


def test_the_evaluator_can_say_no():
    """Explicit deny wins, a missing key fails its condition, wildcards and NotAction behave as documented."""
    allow = {"Effect": "Allow", "Action": "rds:Delete*", "Resource": "arn:aws:rds:*:*:cluster:*",
             "Condition": {"StringLike": {"aws:ResourceTag/owner": "team-*"}}}
    deny = {"Effect": "Deny", "Action": "rds:DeleteDBCluster", "Resource": "*", "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "false"}}}
    policies = [{"Statement": [allow]}]
    cluster = "arn:aws:rds:us-east-1:111111111111:cluster:c"
    assert evaluate(policies, "rds:DeleteDBCluster", cluster, {"aws:ResourceTag/owner": "team-a"}).allowed
    assert not evaluate(policies, "rds:DeleteDBCluster", cluster, {}).allowed  # missing key: condition false
    assert not evaluate(policies, "rds:DeleteDBCluster", cluster.replace("cluster:", "db:"), {"aws:ResourceTag/owner": "team-a"}).allowed
    assert not evaluate(policies, "rds:CreateDBCluster", cluster, {"aws:ResourceTag/owner": "team-a"}).allowed
    both = [{"Statement": [allow, deny]}]
    assert not evaluate(both, "rds:DeleteDBCluster", cluster, {"aws:ResourceTag/owner": "team-a", "aws:MultiFactorAuthPresent": "false"}).allowed
    only_tags = [{"Statement": [{"Effect": "Allow", "Action": "rds:AddTagsToResource", "Resource": "*",
                                 "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["a"]}}}]}]
    assert evaluate(only_tags, "rds:AddTagsToResource", cluster, {"aws:TagKeys": ["a"]}).allowed
    assert not evaluate(only_tags, "rds:AddTagsToResource", cluster, {"aws:TagKeys": ["a", "b"]}).allowed
    not_guard = [{"Statement": [{"Effect": "Allow", "Action": "rds:AddTagsToResource", "Resource": "*",
                                 "Condition": {"ForAllValues:StringNotEquals": {"aws:TagKeys": ["guard"]}}}]}]
    assert evaluate(not_guard, "rds:AddTagsToResource", cluster, {"aws:TagKeys": ["a", "b"]}).allowed
    assert not evaluate(not_guard, "rds:AddTagsToResource", cluster, {"aws:TagKeys": ["a", "guard"]}).allowed
    assert evaluate(not_guard, "rds:AddTagsToResource", cluster, {}).allowed  # ForAllValues: true for a missing set
    some_other = [{"Statement": [{"Effect": "Allow", "Action": "rds:AddTagsToResource", "Resource": "*",
                                  "Condition": {"ForAnyValue:StringNotEquals": {"aws:TagKeys": ["guard"]}}}]}]
    assert evaluate(some_other, "rds:AddTagsToResource", cluster, {"aws:TagKeys": ["a", "guard"]}).allowed
    assert not evaluate(some_other, "rds:AddTagsToResource", cluster, {"aws:TagKeys": ["guard"]}).allowed
    assert not evaluate(some_other, "rds:AddTagsToResource", cluster, {}).allowed  # ForAnyValue: false for a missing set
