"""The count the authorization issue is judged by: every destructive, modifying or sharing grant (action x resource
kind) the member roles hold on a customer's resource, in the three situations an attacker holding a role can arrange:
no tags; tags the caller chooses in the request; and after writing a tag the role may write. Evaluated on the
synthesized templates by sandbox/aws/iam_policy.py. What remains is what IAM cannot express, each named below and in
docs/iam.md."""

from __future__ import annotations

import itertools

import pytest

from sandbox.aws.iam_policy import evaluate, resolve, role_policies

MEMBER, SECURITY, REGION = "111111111111", "999999999999", "us-east-1"
OURS = f"arn:aws:states:{REGION}:{SECURITY}:execution:NeptuneGuardClusterRemediation:orders-1a2b3c4d5e6f7a8b"
REFERENCES = {"AWS::Partition": "aws", "AWS::AccountId": MEMBER, "AWS::Region": REGION, "SecurityAccountId": SECURITY,
              "OrganizationId": "o-exampleorgid"}
KEYS = [f"neptune-guard:{k}" for k in ("created-by", "archived-by", "cutover", "retired-by", "replaced-by", "retained-until",
                                        "remediated-by", "served-production", "replace-approved-by", "re-encrypt-approved-by", "decommission-approved-by",
                                        "temporary-for")]
AUTHORIZING = {f"neptune-guard:{k}" for k in ("created-by", "archived-by", "cutover", "replace-approved-by", "re-encrypt-approved-by",
                                               "decommission-approved-by", "temporary-for")}
ACTIONS = {
    "cluster": ["ModifyDBCluster", "StopDBCluster", "StartDBCluster", "DeleteDBCluster", "AddRoleToDBCluster", "RemoveRoleFromDBCluster",
                "CreateDBClusterSnapshot", "CreateDBInstance", "CreateDBClusterEndpoint", "FailoverDBCluster", "RebootDBCluster"],
    "db": ["ModifyDBInstance", "DeleteDBInstance", "RebootDBInstance"],
    "cluster-snapshot": ["DeleteDBClusterSnapshot", "ModifyDBClusterSnapshotAttribute", "RestoreDBClusterFromSnapshot",
                         "CopyDBClusterSnapshot"],
    "cluster-endpoint": ["DeleteDBClusterEndpoint", "ModifyDBClusterEndpoint"],
}
ROLES = ("NeptuneGuardRemediation", "NeptuneGuardAudit", "NeptuneGuardTriggerAccess", "NeptuneGuardPlanner")
# A customer's snapshot is copied or restored only once the re-encrypt approval marked it; a custom endpoint is deleted
# only where the approval endpoint's cutover mark is. (Security Hub has no condition on a finding's product: no role may
# suppress, re-rate or mark false a finding; a Note and one status at most.) Nothing is left that IAM cannot express on
# a resource under the customer's own names (docs/iam.md): the count is 0.


# RDS authorizes tag-on-create as a plain AddTagsToResource, so the creation tags may be written on the names the
# workflow derives (naming.CREATED_NAMES, `*-cmk-ng????????`, ...): to IAM, a customer's resource that bears such a name
# is one the workflow could have made. docs/iam.md. A customer's own dated names (`orders-final-20261204`) are not such.
CUSTOMER_NAMES = dict.fromkeys(ACTIONS, "orders-graph")
DATED_NAMES = {"cluster": "orders-cmk-20261204", "db": "orders-cmk-20261204", "cluster-snapshot": "orders-final-20261204",
               "cluster-endpoint": "orders-graph"}
RESERVED_NAMES = {"cluster": "orders-cmk-ng20261204", "db": "orders-cmk-ng20261204", "cluster-snapshot": "orders-final-ng20261204",
                  "cluster-endpoint": "orders-graph"}
RESERVED_NAME_RESIDUAL = {("NeptuneGuardRemediation", f"rds:{action}", kind) for kind, actions in {
    "cluster": ["AddTagsToResource", "ModifyDBCluster", "StopDBCluster", "DeleteDBCluster", "AddRoleToDBCluster",
                "CreateDBClusterSnapshot", "CreateDBInstance", "CreateDBClusterEndpoint"],
    "db": ["AddTagsToResource", "ModifyDBInstance", "DeleteDBInstance"],
    "cluster-snapshot": ["AddTagsToResource", "DeleteDBClusterSnapshot", "RestoreDBClusterFromSnapshot", "CopyDBClusterSnapshot"],
}.items() for action in actions}


def grants_on_customer_resources(policies: list[dict], role: str, names: dict[str, str] = CUSTOMER_NAMES,
                                 carrying: dict[str, str] | None = None) -> set[tuple[str, str, str]]:
    """`carrying`: the tags the resources already have (none: a customer's resource the tool never touched)."""
    found, held = set(), {f"aws:ResourceTag/{k}": v for k, v in (carrying or {}).items()}
    # One request may carry one tag or several: every key alone, and every pair (a creation tag with a mark).
    requests = [(k,) for k in KEYS] + list(itertools.combinations(KEYS, 2))
    for kind, actions in ACTIONS.items():
        resource = f"arn:aws:rds:{REGION}:{MEMBER}:{kind}:{names[kind]}"  # any engine's: Aurora's ARNs look the same
        requested = [{**held, **{f"aws:RequestTag/{k}": OURS for k in keys}, "aws:TagKeys": list(keys)} for keys in requests]
        written = [keys for keys, context in zip(requests, requested)
                   if evaluate(policies, "rds:AddTagsToResource", resource, context).allowed]
        # A tag counts when it authorizes something: the creation tags and the approval marks.
        found |= {(role, "rds:AddTagsToResource", kind) for keys in written if AUTHORIZING & set(keys)}
        after = [{**held, **{f"aws:ResourceTag/{k}": OURS for k in keys}} for keys in written + [tuple(set().union(*written))]]
        for action in (f"rds:{a}" for a in actions):
            if any(evaluate(policies, action, resource, context).allowed for context in [held] + requested + after):
                found.add((role, action, kind))
    hub = f"arn:aws:securityhub:{REGION}:{MEMBER}:hub/default"
    # Any product's findings: BatchUpdateFindings has no condition on the product, so no role may call it at all.
    for field, value in (("Workflow.Status", "SUPPRESSED"), ("Workflow.Status", "RESOLVED"), ("Workflow.Status", "NOTIFIED"),
                         ("Severity.Label", "INFORMATIONAL"), ("VerificationState", "FALSE_POSITIVE"), ("Note.Text", "x")):
        if evaluate(policies, "securityhub:BatchUpdateFindings", hub, {f"securityhub:ASFFSyntaxPath/{field}": value}).allowed:
            found.add((role, "securityhub:BatchUpdateFindings", field))
    for product in ("aws/guardduty", "aws/securityhub", f"{MEMBER}/some-other-integration"):
        if evaluate(policies, "securityhub:BatchImportFindings", f"arn:aws:securityhub:{REGION}::product/{product}", {}).allowed:
            found.add((role, "securityhub:BatchImportFindings", product))
    for action in ("kms:Decrypt", "kms:CreateGrant", "kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom"):
        if evaluate(policies, action, f"arn:aws:kms:{REGION}:222222222222:key/1234abcd", {
                "kms:ViaService": f"rds.{REGION}.amazonaws.com", "kms:GrantIsForAWSResource": "true"}).allowed:
            found.add((role, action, "another account's key"))
    return found


@pytest.mark.parametrize("role", ROLES)
def test_no_member_role_reaches_a_customer_resource_without_our_creation_tag_or_an_approval_mark(synthesized, role):
    _, members = synthesized
    policies = role_policies(members, role, REFERENCES)
    for names in (CUSTOMER_NAMES, DATED_NAMES):
        assert grants_on_customer_resources(policies, role, names) == set(), names


@pytest.mark.parametrize("role", ROLES)
def test_a_customer_resource_under_a_name_the_workflow_derives_is_reached_as_if_the_workflow_made_it(synthesized, role):
    """What stays open because IAM cannot tell tag-on-create from tagging (docs/iam.md), held here so it cannot grow."""
    _, members = synthesized
    found = grants_on_customer_resources(role_policies(members, role, REFERENCES), role, RESERVED_NAMES)
    assert found == {grant for grant in RESERVED_NAME_RESIDUAL if grant[0] == role}


# What the workflows hand over keeps a name they derive: the snapshot workflow's re-encrypted copy (`remediated-by`) and
# the cluster workflow's archive of a decommissioned original (`archived-by`), by then its only copy.
HANDED_OVER = {
    "the re-encrypted copy of a snapshot": ({"cluster-snapshot": "orders-daily-cmk-ng1a2b3c4d"}, {"neptune-guard:remediated-by": OURS}),
    "the archive of a decommissioned original": ({"cluster-snapshot": "orders-archive-ng1a2b3c4d"}, {"neptune-guard:archived-by": OURS}),
}


@pytest.mark.parametrize("handed_over", HANDED_OVER)
@pytest.mark.parametrize("role", ROLES)
def test_what_a_workflow_handed_over_under_its_names_is_not_reached_again(synthesized, role, handed_over):
    """Its name is one the workflow derives, so the name cannot keep a creation tag off it: the tags it keeps do."""
    _, members = synthesized
    names, carrying = HANDED_OVER[handed_over]
    found = grants_on_customer_resources(role_policies(members, role, REFERENCES), role, {**CUSTOMER_NAMES, **names}, carrying)
    assert found == set()


@pytest.mark.parametrize("name", ["orders-pre-cmk-ng1a2b3c4d", "orders-final-ng1a2b3c4d", "orders-daily-cmk-ng1a2b3c4d"])
def test_no_snapshot_the_workflow_makes_can_be_shared_without_the_approval_endpoints_mark(synthesized, name):
    """The workflow's own snapshots hold the customer's data (the one before the key, unencrypted when the original
    was): sharing needs the replacement approval's mark, which no request of the remediation role may carry, alone
    or beside a creation tag."""
    _, members = synthesized
    policies = role_policies(members, "NeptuneGuardRemediation", REFERENCES)
    snapshot = f"arn:aws:rds:{REGION}:{MEMBER}:cluster-snapshot:{name}"
    own = {"aws:ResourceTag/neptune-guard:created-by": OURS}
    for keys in [(k,) for k in KEYS] + list(itertools.combinations(KEYS, 2)):
        request = {**{f"aws:RequestTag/{k}": OURS for k in keys}, "aws:TagKeys": list(keys)}
        if "neptune-guard:replace-approved-by" in keys:
            assert not evaluate(policies, "rds:AddTagsToResource", snapshot, {**own, **request}).allowed, keys
            for action in ("rds:CreateDBClusterSnapshot", "rds:CopyDBClusterSnapshot"):  # made with the mark on it
                assert not evaluate(policies, action, snapshot, request).allowed, (action, keys)
    assert not evaluate(policies, "rds:ModifyDBClusterSnapshotAttribute", snapshot, own).allowed
    assert evaluate(policies, "rds:ModifyDBClusterSnapshotAttribute", snapshot,
                    {**own, "aws:ResourceTag/neptune-guard:replace-approved-by": OURS}).allowed  # what the approval opens


def test_only_a_retired_originals_automated_backups_can_be_said_to_be_kept_on_purpose(synthesized):
    """The retention tags authorize nothing, but the scan reads them as "kept on purpose" and leaves the finding out of
    the failures: on a customer's manual snapshot they would hide it."""
    _, members = synthesized
    policies = role_policies(members, "NeptuneGuardRemediation", REFERENCES)
    retained = {"aws:RequestTag/neptune-guard:retired-by": OURS, "aws:RequestTag/neptune-guard:retained-until": "2099-01-01",
                "aws:TagKeys": ["neptune-guard:retired-by", "neptune-guard:retained-until"]}
    backup = f"arn:aws:rds:{REGION}:{MEMBER}:cluster-snapshot:rds:orders-2026-12-04-06-00"
    assert evaluate(policies, "rds:AddTagsToResource", backup, retained).allowed
    manual = f"arn:aws:rds:{REGION}:{MEMBER}:cluster-snapshot:payments-unencrypted-manual"
    assert not evaluate(policies, "rds:AddTagsToResource", manual, retained).allowed
    assert not evaluate(policies, "rds:AddTagsToResource", backup, {**retained, "aws:RequestTag/neptune-guard:retired-by": "anything"}).allowed


def test_a_temporary_cluster_takes_no_tag_but_its_own(synthesized):
    """Restored from a customer's snapshot only to be snapshotted and deleted: given the creation tag too, it could be
    given instances and changed."""
    _, members = synthesized
    policies = role_policies(members, "NeptuneGuardRemediation", REFERENCES)
    temporary = f"arn:aws:rds:{REGION}:{MEMBER}:cluster:orders-tmp-ng1a2b3c4d"
    own = {"aws:RequestTag/neptune-guard:temporary-for": OURS}
    assert evaluate(policies, "rds:AddTagsToResource", temporary, {**own, "aws:TagKeys": ["neptune-guard:temporary-for"]}).allowed
    for key in ("neptune-guard:created-by", "neptune-guard:archived-by", "neptune-guard:cutover", "owner"):
        assert not evaluate(policies, "rds:AddTagsToResource", temporary,
                            {**own, f"aws:RequestTag/{key}": OURS, "aws:TagKeys": ["neptune-guard:temporary-for", key]}).allowed, key


def test_the_target_key_is_used_only_through_neptune_and_by_its_alias(synthesized):
    _, members = synthesized
    policies = role_policies(members, "NeptuneGuardRemediation", REFERENCES)
    key = f"arn:aws:kms:{REGION}:{MEMBER}:key/1234abcd"
    via = {"kms:ViaService": f"rds.{REGION}.amazonaws.com"}
    assert evaluate(policies, "kms:GenerateDataKey", key, {**via, "kms:ResourceAliases": ["alias/neptune-guard"]}).allowed
    assert not evaluate(policies, "kms:GenerateDataKey", key, {**via, "kms:ResourceAliases": ["alias/payments"]}).allowed
    assert not evaluate(policies, "kms:Decrypt", key, {}).allowed  # not through Neptune


def test_the_tools_own_findings_are_updated_through_its_own_product_and_no_other_products_at_all(synthesized):
    _, members = synthesized
    hub = f"arn:aws:securityhub:{REGION}:{MEMBER}:hub/default"
    own = f"arn:aws:securityhub:{REGION}:{MEMBER}:product/{MEMBER}/default"
    for role in ROLES:
        policies = role_policies(members, role, REFERENCES)
        assert not evaluate(policies, "securityhub:BatchUpdateFindings", hub, {"securityhub:ASFFSyntaxPath/Note.Text": "x"}).allowed, role
        # Only the audit role imports, for the scan and, assumed by the trigger and the workflow, for their notes
        # (review: the remediation role's import could archive or pass the tool's own findings).
        expected = role == "NeptuneGuardAudit"
        for action in ("securityhub:BatchImportFindings", "securityhub:GetFindings"):
            assert evaluate(policies, action, own, {}).allowed is expected, (role, action)


@pytest.mark.parametrize("role", ROLES)
def test_no_member_role_adds_a_rule_to_any_security_group_or_deletes_a_customers(synthesized, role):
    """A rule could open anything (IAM cannot see its source or ports): no role adds, changes or removes one, on a
    customer's group or on the execution's own; the replicator joins what the clusters already admit."""
    _, members = synthesized
    policies = role_policies(members, role, REFERENCES)
    group = f"arn:aws:ec2:{REGION}:{MEMBER}:security-group/sg-0123456789abcdef0"
    tagged_rule = {"aws:RequestTag/neptune-guard:created-by": OURS, "aws:TagKeys": ["neptune-guard:created-by"]}
    own_group = {"aws:ResourceTag/neptune-guard:created-by": OURS}
    for action in ("ec2:AuthorizeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress",
                   "ec2:RevokeSecurityGroupEgress", "ec2:ModifySecurityGroupRules", "ec2:UpdateSecurityGroupRuleDescriptionsIngress"):
        for context in ({}, tagged_rule, own_group, {**own_group, **tagged_rule}):
            assert not evaluate(policies, action, group, context).allowed, (role, action, context)
    for context in ({}, tagged_rule):
        assert not evaluate(policies, "ec2:DeleteSecurityGroup", group, context).allowed, (role, context)
    expected = role == "NeptuneGuardRemediation"
    assert evaluate(policies, "ec2:DeleteSecurityGroup", group, own_group).allowed is expected


def test_a_temporary_cluster_is_restored_only_from_the_snapshot_its_own_executions_approval_marked(synthesized):
    """Another execution's approved snapshot holds other data: restored under this execution's temporary name, it
    would be taken for this execution's restore."""
    _, members = synthesized
    policies = role_policies(members, "NeptuneGuardRemediation", REFERENCES)
    other = OURS.replace("1a2b3c4d5e6f7a8b", "ffffffffffffffff")
    snapshot = f"arn:aws:rds:{REGION}:{MEMBER}:cluster-snapshot:orders-daily"
    request = {"aws:RequestTag/neptune-guard:temporary-for": OURS, "aws:TagKeys": ["neptune-guard:temporary-for"]}
    assert evaluate(policies, "rds:RestoreDBClusterFromSnapshot", snapshot,
                    {**request, "aws:ResourceTag/neptune-guard:re-encrypt-approved-by": OURS}).allowed
    assert not evaluate(policies, "rds:RestoreDBClusterFromSnapshot", snapshot,
                        {**request, "aws:ResourceTag/neptune-guard:re-encrypt-approved-by": other}).allowed


@pytest.mark.parametrize("role", ROLES)
def test_the_one_tag_write_on_a_customers_resource_is_a_moved_endpoints_which_authorizes_nothing(synthesized, role):
    """A moved custom endpoint is created with the customer's tags (a tag policy may require them) and `remediated-by`:
    to IAM, a tag write any endpoint could receive. It carries no other Neptune Guard tag, and no tag lets the role
    delete or change an endpoint: only the approval endpoint's cutover mark does."""
    _, members = synthesized
    policies = role_policies(members, role, REFERENCES)
    moved = {"aws:RequestTag/neptune-guard:remediated-by": OURS, "aws:RequestTag/team": "orders",
             "aws:TagKeys": ["neptune-guard:remediated-by", "team"]}
    for kind in ACTIONS:
        resource = f"arn:aws:rds:{REGION}:{MEMBER}:{kind}:orders-graph"
        expected = role == "NeptuneGuardRemediation" and kind == "cluster-endpoint"
        assert evaluate(policies, "rds:AddTagsToResource", resource, moved).allowed is expected, kind
        assert not evaluate(policies, "rds:AddTagsToResource", resource, {"aws:RequestTag/team": "x", "aws:TagKeys": ["team"]}).allowed
        for other in (k for k in KEYS if k != "neptune-guard:remediated-by"):
            context = {**moved, f"aws:RequestTag/{other}": OURS, "aws:TagKeys": moved["aws:TagKeys"] + [other]}
            assert not evaluate(policies, "rds:AddTagsToResource", resource, context).allowed, (kind, other)
    endpoint = f"arn:aws:rds:{REGION}:{MEMBER}:cluster-endpoint:orders-graph"
    for action in ("rds:DeleteDBClusterEndpoint", "rds:ModifyDBClusterEndpoint"):
        assert not evaluate(policies, action, endpoint, {"aws:ResourceTag/neptune-guard:remediated-by": OURS, "aws:ResourceTag/team": "orders"}).allowed
    assert evaluate(policies, "rds:DeleteDBClusterEndpoint", endpoint, {"aws:ResourceTag/neptune-guard:cutover": OURS}).allowed is (
        role == "NeptuneGuardRemediation")


@pytest.mark.parametrize("name", ["orders-daily", "orders-daily-cmk-ng1a2b3c4d"])
def test_nothing_is_made_from_a_snapshot_the_replacement_approval_marked(synthesized, name):
    """RDS copies a source's tags (CopyTags) without authorizing them as the request's: a copy of the marked original,
    or of its marked re-encrypted copy, would carry the mark that lets the role share it (with any account, or all)."""
    _, members = synthesized
    policies = role_policies(members, "NeptuneGuardRemediation", REFERENCES)
    source = f"arn:aws:rds:{REGION}:{MEMBER}:cluster-snapshot:{name}"
    marked = {"aws:ResourceTag/neptune-guard:re-encrypt-approved-by": OURS, "aws:ResourceTag/neptune-guard:replace-approved-by": OURS,
              **({"aws:ResourceTag/neptune-guard:created-by": OURS} if "-ng" in name else {})}
    for keys in (("neptune-guard:created-by",), ("neptune-guard:archived-by",), ("neptune-guard:temporary-for",)):
        request = {**{f"aws:RequestTag/{k}": OURS for k in keys}, "aws:TagKeys": list(keys)}
        for action in ("rds:CopyDBClusterSnapshot", "rds:RestoreDBClusterFromSnapshot"):
            assert not evaluate(policies, action, source, {**marked, **request}).allowed, (action, keys)
            unmarked = {k: v for k, v in marked.items() if "replace-approved-by" not in k}
            if action == "rds:CopyDBClusterSnapshot" and keys == ("neptune-guard:created-by",):
                assert evaluate(policies, action, source, {**unmarked, **request}).allowed  # before the replacement approval


def test_the_replicator_boundary_keeps_a_functions_code_off_every_network_interface(synthesized):
    """The boundary reaches the account's graphs (Neptune's data-access condition keys include nothing that names the
    function, so the RCP keeps the role's credentials inside Lambda), and the network-interface actions only as Lambda
    manages them, outside the function (no lambda:SourceFunctionArn), never from the function's code."""
    _, members = synthesized
    boundary = next(r["Properties"]["PolicyDocument"] for r in members["Resources"].values()
                    if r["Type"] == "AWS::IAM::ManagedPolicy" and r["Properties"].get("ManagedPolicyName") == "NeptuneGuardReplicatorBoundary")
    boundary = resolve(boundary, REFERENCES)
    replicator = f"arn:aws:lambda:{REGION}:{MEMBER}:function:neptune-guard-replicator-1a2b3c4d5e6f7a8b"
    for action in ("neptune-db:ReadDataViaQuery", "neptune-db:WriteDataViaQuery", "neptune-db:DeleteDataViaQuery", "neptune-db:GetStreamRecords"):
        assert evaluate([boundary], action, f"arn:aws:neptune-db:{REGION}:{MEMBER}:cluster-ABCDEFGHIJKLMNOPQRSTUVWXYZ/*", {}).allowed, action
        assert not evaluate([boundary], action, f"arn:aws:neptune-db:{REGION}:222222222222:cluster-ABCDEFGHIJKLMNOPQRSTUVWXYZ/*", {}).allowed
    interface = f"arn:aws:ec2:{REGION}:{MEMBER}:network-interface/eni-0123456789abcdef0"
    for action in ("ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:UnassignPrivateIpAddresses"):
        assert evaluate([boundary], action, interface, {}).allowed, action
        assert not evaluate([boundary], action, interface, {"lambda:SourceFunctionArn": replicator}).allowed, action

