"""The prevention guardrails (guardrails/), each on inputs it must let through and inputs it must stop.

- The SCP, evaluated by sandbox/aws/iam_policy.py beside FullAWSAccess (an SCP only denies) against request
  contexts carrying the condition keys the Service Authorization Reference lists for rds:CreateDBCluster.
- The CloudFormation Guard rules, run by the real cfn-guard (pinned in package.json; `make test` installs it)
  on templates and on a Guard Hook's resource input.
- The Terraform plan check, run as CI runs it, on plans written to HashiCorp's JSON plan format.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sandbox.aws.iam_policy import evaluate

ROOT = Path(__file__).resolve().parent.parent
GUARDRAILS = ROOT / "guardrails"
SCP = json.loads((GUARDRAILS / "scp" / "deny-unencrypted-neptune-clusters.json").read_text())
GUARD_RULES = GUARDRAILS / "cloudformation" / "neptune_encryption.guard"
CHECK_PLAN = GUARDRAILS / "terraform" / "check_plan.py"
CFN_GUARD = ROOT / "node_modules" / "@cdklabs" / "cdk-validator-cfnguard" / "bin" / "ubuntu" / platform.machine() / "cfn-guard"

CLUSTER_RULE = "neptune_cluster_encrypted_with_cmk"
GRAPH_RULE = "neptune_graph_encrypted_with_cmk"
KEY_ARN = "arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab"


# --- the service control policy -------------------------------------------------------------------------

FULL_AWS_ACCESS = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
CLUSTER_ARN = "arn:aws:rds:us-east-1:111111111111:cluster:orders-graph"


def scp_allows(action: str, context: dict) -> bool:
    return evaluate([FULL_AWS_ACCESS, SCP], action, CLUSTER_ARN, context).allowed


@pytest.mark.parametrize(
    "context",
    [
        {"rds:DatabaseEngine": "neptune", "rds:StorageEncrypted": "false"},
        {"rds:DatabaseEngine": "neptune"},  # StorageEncrypted left out of the request
        {"rds:DatabaseEngine": "Neptune", "rds:StorageEncrypted": "false"},
    ],
    ids=["unencrypted", "encryption-unspecified", "engine-spelled-in-capitals"],
)
def test_scp_denies_creating_a_neptune_cluster_without_storage_encryption(context):
    decision = evaluate([FULL_AWS_ACCESS, SCP], "rds:CreateDBCluster", CLUSTER_ARN, context)
    assert (decision.allowed, decision.statements) == (False, ["DenyNeptuneClustersWithoutStorageEncryption"])


@pytest.mark.parametrize(
    "action, context",
    [
        ("rds:CreateDBCluster", {"rds:DatabaseEngine": "neptune", "rds:StorageEncrypted": "true"}),
        ("rds:CreateDBCluster", {"rds:DatabaseEngine": "aurora-postgresql", "rds:StorageEncrypted": "false"}),
        ("rds:CreateDBInstance", {"rds:DatabaseEngine": "neptune"}),
        ("rds:ModifyDBCluster", {}),
    ],
    ids=["encrypted-neptune", "other-engine", "instance-in-a-cluster", "other-action"],
)
def test_scp_allows_encrypted_neptune_clusters_and_what_it_does_not_govern(action, context):
    assert scp_allows(action, context)


def test_scp_fits_the_organizations_size_limit():
    # SCPs may be at most 5,120 characters (AWS Organizations quotas); whitespace counts, so deploy it minified.
    for policy in (SCP, PROTECT_ROLES, PROTECT_APPROVALS):
        assert len(json.dumps(policy, separators=(",", ":"))) <= 5120


PROTECT_ROLES = json.loads((GUARDRAILS / "scp" / "protect-neptune-guard-roles.json").read_text())
MEMBER_ADMIN = "arn:aws:iam::111111111111:role/Admin"
ROLE_CHANGES = PROTECT_ROLES["Statement"][0]["Action"]


@pytest.mark.parametrize("action", ROLE_CHANGES)
@pytest.mark.parametrize("role", ["NeptuneGuardAudit", "NeptuneGuardRemediation", "NeptuneGuardTriggerAccess", "NeptuneGuardPlanner"])
def test_scp_stops_a_members_administrator_from_changing_or_deleting_the_neptune_guard_roles(action, role):
    decision = evaluate([FULL_AWS_ACCESS, PROTECT_ROLES], action, f"arn:aws:iam::111111111111:role/{role}",
                        {"aws:PrincipalArn": MEMBER_ADMIN})
    assert (decision.allowed, decision.statements) == (False, ["OnlyStackSetsChangeNeptuneGuardRoles"])


@pytest.mark.parametrize("principal, role", [
    ("arn:aws:iam::111111111111:role/stacksets-exec-0123456789abcdef", "NeptuneGuardAudit"),  # a self-managed StackSet
    ("arn:aws:iam::111111111111:role/AWSCloudFormationStackSetExecutionRole", "NeptuneGuardAudit"),
    (MEMBER_ADMIN, "OrdersAppRole"),  # the account's own roles are the account's
])
def test_scp_lets_stacksets_deploy_the_roles_and_members_manage_their_own(principal, role):
    assert all(evaluate([FULL_AWS_ACCESS, PROTECT_ROLES], action, f"arn:aws:iam::111111111111:role/{role}",
                        {"aws:PrincipalArn": principal}).allowed for action in ROLE_CHANGES)


STACKSET_EXEC = "arn:aws:iam::111111111111:role/stacksets-exec-0123456789abcdef"


@pytest.mark.parametrize("action", PROTECT_ROLES["Statement"][1]["Action"])
@pytest.mark.parametrize("role", ["stacksets-exec-mine", "AWSCloudFormationStackSetExecutionRole"])
def test_scp_stops_an_administrator_from_making_or_retrusting_a_role_the_exemption_names(action, role):
    # A role named like the StackSet's execution role would pass the exemption above: nobody but StackSets makes one.
    decision = evaluate([FULL_AWS_ACCESS, PROTECT_ROLES], action, f"arn:aws:iam::111111111111:role/{role}",
                        {"aws:PrincipalArn": MEMBER_ADMIN})
    assert (decision.allowed, decision.statements) == (False, ["NobodyMakesOrRetrustsAStackSetExecutionRole"])
    assert evaluate([FULL_AWS_ACCESS, PROTECT_ROLES], action, f"arn:aws:iam::111111111111:role/{role}",
                    {"aws:PrincipalArn": STACKSET_EXEC}).allowed


@pytest.mark.parametrize("action", PROTECT_ROLES["Statement"][2]["Action"])
def test_scp_stops_a_new_version_of_the_member_roles_managed_policies_except_by_stacksets(action):
    policy = "arn:aws:iam::111111111111:policy/NeptuneGuardReplicatorBoundary"
    decision = evaluate([FULL_AWS_ACCESS, PROTECT_ROLES], action, policy, {"aws:PrincipalArn": MEMBER_ADMIN})
    assert (decision.allowed, decision.statements) == (False, ["OnlyStackSetsChangeNeptuneGuardPolicies"])
    assert evaluate([FULL_AWS_ACCESS, PROTECT_ROLES], action, policy, {"aws:PrincipalArn": STACKSET_EXEC}).allowed
    assert evaluate([FULL_AWS_ACCESS, PROTECT_ROLES], action, "arn:aws:iam::111111111111:policy/OrdersApp",
                    {"aws:PrincipalArn": MEMBER_ADMIN}).allowed


PROTECT_APPROVALS = json.loads((GUARDRAILS / "scp" / "protect-approvals.json").read_text())
APPROVAL_FUNCTION = "arn:aws:lambda:us-east-1:222222222222:function:NeptuneGuardApproval"
ON_CALL_ROLE_ID = "AROAEXAMPLEONCALL0001"


def on_call(session: str, source_identity: str | None, **context) -> dict:
    return {"aws:PrincipalArn": "arn:aws:iam::222222222222:role/NeptuneGuardOnCall", "aws:userid": f"{ON_CALL_ROLE_ID}:{session}",
            **({"aws:SourceIdentity": source_identity} if source_identity else {}), **context}


def test_scp_lets_a_person_reach_the_approval_endpoint_only_through_its_url_as_themselves():
    def allowed(action, context):
        return evaluate([FULL_AWS_ACCESS, PROTECT_APPROVALS], action, APPROVAL_FUNCTION, context)

    assert allowed("lambda:InvokeFunctionUrl", on_call("alice", "alice")).allowed
    assert allowed("lambda:InvokeFunction", on_call("alice", "alice", **{"lambda:InvokedViaFunctionUrl": "true"})).allowed
    # A direct invoke writes its own requestContext: refused, however it is signed.
    assert allowed("lambda:InvokeFunction", on_call("alice", "alice")).statements == ["TheApprovalFunctionOnlyThroughItsUrl"]
    assert not allowed("lambda:InvokeFunction", {"aws:PrincipalArn": MEMBER_ADMIN, "lambda:InvokedViaFunctionUrl": "false"}).allowed
    # A second session name is not a second person; nor is a session without a source identity anyone.
    assert allowed("lambda:InvokeFunctionUrl", on_call("alice-again", "alice")).statements == ["AnApproversSessionIsNamedForThem"]
    assert allowed("lambda:InvokeFunctionUrl", on_call("bob", None)).statements == ["ApproversCarryASourceIdentity"]


@pytest.mark.parametrize("principal, allowed", [
    ("arn:aws:iam::222222222222:role/NeptuneGuardApproval", True),
    ("arn:aws:iam::222222222222:role/NeptuneGuardTrigger", True),
    ("arn:aws:iam::222222222222:role/NeptuneGuardOnCall", False),
    ("arn:aws:iam::222222222222:role/Admin", False),
])
def test_scp_lets_only_the_endpoint_and_the_trigger_start_a_remediation_and_only_the_endpoint_answer(principal, allowed):
    machine = "arn:aws:states:us-east-1:222222222222:stateMachine:NeptuneGuardClusterRemediation"
    assert evaluate([FULL_AWS_ACCESS, PROTECT_APPROVALS], "states:StartExecution", machine,
                    {"aws:PrincipalArn": principal}).allowed is allowed
    assert evaluate([FULL_AWS_ACCESS, PROTECT_APPROVALS], "states:SendTaskSuccess", "*",
                    {"aws:PrincipalArn": principal}).allowed is principal.endswith("/NeptuneGuardApproval")


# --- CloudFormation Guard ----------------------------------------------------------------------------------


def guard(document: dict, tmp_path: Path) -> tuple[int, dict]:
    if not CFN_GUARD.is_file():
        pytest.fail(f"{CFN_GUARD} is missing: run `npm ci` (make test does)")
    data = tmp_path / "input.json"
    data.write_text(json.dumps(document))
    # --structured: the default text reporter of cfn-guard 3.1.1 panics on a hook's resource input.
    run = subprocess.run(
        [str(CFN_GUARD), "validate", "--rules", str(GUARD_RULES), "--data", str(data), "--structured", "--output-format", "json", "--show-summary", "none"],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode in (0, 19), run.stderr
    [report] = json.loads(run.stdout)
    return run.returncode, report


def failed_rules(report: dict) -> list[str]:
    return sorted(entry["Rule"]["name"] for entry in report["not_compliant"])


def failed_checks(report: dict) -> str:
    """The failing clauses' text, to tell which requirement failed."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "context" and isinstance(value, str):
                    found.append(value)
                elif key == "error_message" and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(report["not_compliant"])
    return "\n".join(found)


def template(*resources: tuple[str, dict | None]) -> dict:
    body = {}
    for number, (resource_type, properties) in enumerate(resources):
        body[f"Resource{number}"] = {"Type": resource_type} | ({} if properties is None else {"Properties": properties})
    return {"AWSTemplateFormatVersion": "2010-09-09", "Resources": body}


def cluster(**properties) -> tuple[str, dict]:
    return "AWS::Neptune::DBCluster", properties


def graph(**properties) -> tuple[str, dict]:
    return "AWS::NeptuneGraph::Graph", {"ProvisionedMemory": 16} | properties


@pytest.mark.parametrize(
    "document",
    [
        template(cluster(StorageEncrypted=True, KmsKeyId={"Ref": "NeptuneKey"})),
        template(cluster(StorageEncrypted="true", KmsKeyId=KEY_ARN)),
        template(cluster(StorageEncrypted=True, KmsKeyId="alias/neptune-cmk")),
        template(cluster(StorageEncrypted=True, KmsKeyId={"Fn::GetAtt": ["NeptuneKey", "Arn"]}), graph(KmsKeyIdentifier=KEY_ARN)),
        template(cluster(StorageEncrypted=True, KmsKeyId={"Fn::Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:alias/neptune"})),
        template(cluster(StorageEncrypted=True, KmsKeyId={"Fn::Sub": ["arn:aws:kms:${R}:111111111111:key/${K}", {"R": "us-east-1", "K": "k"}]})),
    ],
    ids=["key-by-ref", "string-true-and-key-arn", "customer-alias", "cluster-and-graph", "customer-alias-by-sub", "key-by-sub-with-variables"],
)
def test_guard_passes_neptune_resources_under_a_customer_managed_key(document, tmp_path):
    code, report = guard(document, tmp_path)
    assert (code, report["status"], failed_rules(report)) == (0, "PASS", [])


@pytest.mark.parametrize(
    "properties, failing",
    [
        ({"KmsKeyId": KEY_ARN}, "StorageEncrypted"),
        ({"StorageEncrypted": False, "KmsKeyId": KEY_ARN}, "StorageEncrypted"),
        ({"StorageEncrypted": "false", "KmsKeyId": KEY_ARN}, "StorageEncrypted"),
        ({"StorageEncrypted": True}, "KmsKeyId EXISTS"),
        ({"StorageEncrypted": True, "KmsKeyId": "alias/aws/rds"}, "alias\\x2Faws"),
        ({"StorageEncrypted": True, "KmsKeyId": "arn:aws:kms:us-east-1:111111111111:alias/aws/rds"}, "alias\\x2Faws"),
        ({"StorageEncrypted": True, "KmsKeyId": ""}, "alias\\x2Faws"),
        ({"StorageEncrypted": True, "KmsKeyId": {"Fn::Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:alias/aws/rds"}},
         "Fn::Sub"),
        ({"StorageEncrypted": True, "KmsKeyId": {"Fn::Sub": ["arn:aws:kms:${R}:${A}:alias/aws/rds", {"R": "us-east-1", "A": "1"}]}},
         "Fn::Sub"),
        (None, "Properties"),
    ],
    ids=["encryption-unset", "unencrypted", "unencrypted-as-string", "aws-rds-by-default", "aws-managed-alias", "aws-managed-alias-arn",
         "empty-key", "aws-managed-alias-by-sub", "aws-managed-alias-by-sub-with-variables", "no-properties"],
)
def test_guard_fails_a_cluster_without_storage_encryption_under_a_cmk(properties, failing, tmp_path):
    code, report = guard(template(("AWS::Neptune::DBCluster", properties)), tmp_path)
    assert (code, failed_rules(report)) == (19, [CLUSTER_RULE])
    assert failing in failed_checks(report)


def test_guard_fails_a_graph_without_its_own_key(tmp_path):
    code, report = guard(template(graph(), cluster(StorageEncrypted=True, KmsKeyId=KEY_ARN)), tmp_path)
    assert (code, failed_rules(report)) == (19, [GRAPH_RULE])
    assert "KmsKeyIdentifier" in failed_checks(report)


def test_guard_fails_one_bad_cluster_among_good_ones(tmp_path):
    document = template(cluster(StorageEncrypted=True, KmsKeyId=KEY_ARN), cluster(StorageEncrypted=True))
    code, report = guard(document, tmp_path)
    assert (code, failed_rules(report)) == (19, [CLUSTER_RULE])
    assert "/Resources/Resource1/" in failed_checks(report)


def test_guard_skips_templates_without_neptune(tmp_path):
    code, report = guard(template(("AWS::S3::Bucket", {})), tmp_path)
    assert (code, report["status"], sorted(report["not_applicable"])) == (0, "SKIP", [CLUSTER_RULE, GRAPH_RULE])


def hook_input(invocation_point: str, resource_type: str, properties: dict) -> dict:
    # The Guard Hook's resource input (TargetType RESOURCE), as the CloudFormation Hooks user guide shows it.
    return {
        "HookContext": {"AWSAccountID": "111111111111", "InvocationPoint": invocation_point, "TargetType": "RESOURCE", "TargetLogicalId": "Graph"},
        "Resources": {"Graph": {"ResourceType": resource_type, "ResourceProperties": properties}},
    }


def test_guard_hook_stops_creating_an_unencrypted_cluster(tmp_path):
    code, report = guard(hook_input("CREATE_PRE_PROVISION", "AWS::Neptune::DBCluster", {"StorageEncrypted": "false"}), tmp_path)
    assert (code, failed_rules(report)) == (19, [CLUSTER_RULE])


def test_guard_hook_stops_updating_a_graph_without_its_key(tmp_path):
    code, report = guard(hook_input("UPDATE_PRE_PROVISION", "AWS::NeptuneGraph::Graph", {"ProvisionedMemory": 32}), tmp_path)
    assert (code, failed_rules(report)) == (19, [GRAPH_RULE])


def test_guard_hook_passes_a_compliant_cluster_and_lets_a_noncompliant_one_be_deleted(tmp_path):
    compliant = {"StorageEncrypted": "true", "KmsKeyId": KEY_ARN}
    code, report = guard(hook_input("CREATE_PRE_PROVISION", "AWS::Neptune::DBCluster", compliant), tmp_path)
    assert (code, report["status"]) == (0, "PASS")
    code, report = guard(hook_input("DELETE_PRE_PROVISION", "AWS::Neptune::DBCluster", {"StorageEncrypted": "false"}), tmp_path)
    assert (code, failed_rules(report)) == (0, [])


# --- the Terraform plan check ----------------------------------------------------------------------------


def change(resource_type: str, name: str, actions: list[str], after: dict | None, after_unknown: dict | None = None, module: str | None = None) -> dict:
    address = f"{resource_type}.{name}" if module is None else f"{module}.{resource_type}.{name}"
    entry = {
        "address": address, "mode": "managed", "type": resource_type, "name": name,
        "provider_name": "registry.terraform.io/hashicorp/aws",
        "change": {"actions": actions, "before": None, "after": after, "after_unknown": after_unknown or {}},
    }
    if module is not None:
        entry["module_address"] = module
    return entry


def plan(*changes: dict, configuration: dict | None = None) -> dict:
    return {
        "format_version": "1.2", "terraform_version": "1.9.8", "planned_values": {"root_module": {}},
        "resource_changes": list(changes), "configuration": configuration or {"root_module": {}},
    }


def configured(resource_type: str, name: str, **expressions) -> dict:
    return {"address": f"{resource_type}.{name}", "mode": "managed", "type": resource_type, "name": name, "expressions": expressions}


KEY_REFERENCE = {"references": ["aws_kms_key.neptune.arn", "aws_kms_key.neptune"]}
ENCRYPTED_CLUSTER = {"engine": "neptune", "storage_encrypted": True, "kms_key_arn": KEY_ARN}
# The provider's default for a graph without a key of its own, as a planned update shows it.
GRAPH_ON_AWS_OWNED_KEY = {"graph_name": "orders", "provisioned_memory": 16, "kms_key_identifier": "AWS_OWNED_KEY"}


def check_plan(document, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "plan.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return subprocess.run([sys.executable, str(CHECK_PLAN), str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "document",
    [
        plan(change("aws_neptune_cluster", "orders", ["create"], ENCRYPTED_CLUSTER)),
        # A key created in the same plan is unknown until apply; the configuration shows it is set.
        plan(
            change("aws_neptune_cluster", "orders", ["create"], {"storage_encrypted": True}, {"kms_key_arn": True}, module="module.graph_db[0]"),
            change("aws_neptunegraph_graph", "analytics", ["create"], {"provisioned_memory": 16}, {"kms_key_identifier": True}, module="module.graph_db[0]"),
            configuration={"root_module": {"module_calls": {"graph_db": {"module": {"resources": [
                configured("aws_neptune_cluster", "orders", storage_encrypted={"constant_value": True}, kms_key_arn=KEY_REFERENCE),
                configured("aws_neptunegraph_graph", "analytics", kms_key_identifier=KEY_REFERENCE),
            ]}}}}},
        ),
        plan(change("aws_neptune_cluster", "legacy", ["delete"], None), change("aws_neptunegraph_graph", "legacy", ["delete"], None)),
        plan(change("aws_neptunegraph_graph", "legacy", ["no-op"], GRAPH_ON_AWS_OWNED_KEY)),
        plan(change("aws_s3_bucket", "logs", ["create"], {"bucket": "logs"})),
        {"format_version": "1.2", "planned_values": {}},  # no changes: Terraform leaves resource_changes out
    ],
    ids=["cluster-with-key", "unknown-keys-set-in-a-module", "deletions", "unchanged-graph", "no-neptune", "empty-plan"],
)
def test_plan_check_passes(document, tmp_path):
    run = check_plan(document, tmp_path)
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")


@pytest.mark.parametrize(
    "document, expected",
    [
        (plan(change("aws_neptune_cluster", "orders", ["create"], {"storage_encrypted": False, "kms_key_arn": KEY_ARN})),
         ["aws_neptune_cluster.orders: storage_encrypted must be true"]),
        # Unset, the key is computed: unknown at plan time, and not in the configuration (aws/rds at apply).
        (plan(change("aws_neptune_cluster", "orders", ["create"], {"storage_encrypted": True}, {"kms_key_arn": True}),
              configuration={"root_module": {"resources": [configured("aws_neptune_cluster", "orders", storage_encrypted={"constant_value": True})]}}),
         ["aws_neptune_cluster.orders: kms_key_arn must name a customer-managed KMS key"]),
        (plan(change("aws_neptune_cluster", "orders", ["create"], {"storage_encrypted": True}, {"kms_key_arn": True}),
              configuration={"root_module": {"resources": [configured("aws_neptune_cluster", "orders", kms_key_arn={"constant_value": None})]}}),
         ["aws_neptune_cluster.orders: kms_key_arn must name a customer-managed KMS key"]),
        (plan(change("aws_neptune_cluster", "orders", ["delete", "create"], ENCRYPTED_CLUSTER | {"kms_key_arn": "arn:aws:kms:us-east-1:111111111111:alias/aws/rds"})),
         ["aws_neptune_cluster.orders: kms_key_arn names an AWS-managed or AWS-owned key (arn:aws:kms:us-east-1:111111111111:alias/aws/rds); use a customer-managed key"]),
        (plan(change("aws_neptunegraph_graph", "analytics", ["create"], {"provisioned_memory": 16}, {"kms_key_identifier": True})),
         ["aws_neptunegraph_graph.analytics: kms_key_identifier must name a customer-managed KMS key"]),
        # The Cloud Control provider's resources are held to the same.
        (plan(change("awscc_neptune_db_cluster", "orders", ["create"], {"storage_encrypted": True, "kms_key_id": ""})),
         ["awscc_neptune_db_cluster.orders: kms_key_id must name a customer-managed KMS key"]),
        (plan(change("awscc_neptunegraph_graph", "analytics", ["create"], {"provisioned_memory": 16, "kms_key_identifier": "AWS_OWNED_KEY"})),
         ["awscc_neptunegraph_graph.analytics: kms_key_identifier names an AWS-managed or AWS-owned key (AWS_OWNED_KEY); use a customer-managed key"]),
        (plan(change("aws_neptunegraph_graph", "analytics", ["update"], GRAPH_ON_AWS_OWNED_KEY)),
         ["aws_neptunegraph_graph.analytics: kms_key_identifier names an AWS-managed or AWS-owned key (AWS_OWNED_KEY); use a customer-managed key"]),
        (plan(change("aws_neptune_cluster", "orders", ["create"], {"storage_encrypted": False}),
              change("aws_neptune_cluster", "audit", ["create"], ENCRYPTED_CLUSTER)),
         ["aws_neptune_cluster.orders: storage_encrypted must be true", "aws_neptune_cluster.orders: kms_key_arn must name a customer-managed KMS key"]),
    ],
    ids=["unencrypted-cluster", "cluster-key-unset", "cluster-key-set-to-null", "replacement-on-aws-managed-alias", "graph-key-unset",
         "awscc-cluster-empty-key", "awscc-graph-on-aws-owned-key", "graph-on-aws-owned-key", "one-bad-cluster-of-two"],
)
def test_plan_check_fails_with_one_line_per_violation(document, expected, tmp_path):
    run = check_plan(document, tmp_path)
    assert (run.returncode, run.stdout.splitlines(), run.stderr) == (1, expected, "")


def test_plan_check_does_not_take_a_same_named_resource_of_another_module_as_configuration(tmp_path):
    document = plan(
        change("aws_neptune_cluster", "orders", ["create"], {"storage_encrypted": True}, {"kms_key_arn": True}, module="module.team_a"),
        configuration={"root_module": {
            "resources": [configured("aws_neptune_cluster", "orders", kms_key_arn=KEY_REFERENCE)],
            "module_calls": {"team_a": {"module": {"resources": [configured("aws_neptune_cluster", "orders")]}}},
        }},
    )
    run = check_plan(document, tmp_path)
    assert (run.returncode, run.stdout) == (1, "module.team_a.aws_neptune_cluster.orders: kms_key_arn must name a customer-managed KMS key\n")


@pytest.mark.parametrize(
    "document",
    ["not json", json.dumps({"format_version": "1.0", "values": {}}), json.dumps(["a", "list"]),
     json.dumps({"format_version": "1.2", "planned_values": {}, "resource_changes": [{"mode": "managed", "type": "aws_neptune_cluster"}]})],
    ids=["not-json", "state-not-plan", "not-an-object", "change-without-its-change"],
)
def test_plan_check_refuses_what_is_not_a_plan_in_one_line(document, tmp_path):
    run = check_plan(document, tmp_path)
    assert (run.returncode, run.stdout, len(run.stderr.splitlines())) == (2, "", 1)
    assert run.stderr.startswith("check_plan.py: ")


def test_ci_example_runs_the_check_on_the_json_of_the_plan_it_made():
    workflow = yaml.safe_load((GUARDRAILS / "terraform" / "ci-example.yml").read_text())
    steps = workflow["jobs"]["plan"]["steps"]
    commands = [step["run"] for step in steps if "run" in step]
    assert commands[-3:] == [
        "terraform plan -input=false -lock=false -out=plan.out",
        "terraform show -json plan.out > plan.json",
        "python3 guardrails/terraform/check_plan.py plan.json",
    ]
    setup = next(step for step in steps if step.get("uses", "").startswith("hashicorp/setup-terraform@"))
    assert setup["with"]["terraform_wrapper"] is False



RCP_FULL_AWS_ACCESS = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}]}
REPLICATOR_ROLES_RCP = json.loads((GUARDRAILS / "rcp" / "replicator-roles-only-for-lambda.json").read_text())
REPLICATOR_ROLE = "arn:aws:iam::111111111111:role/neptune-guard/NeptuneGuardReplicator-1a2b3c4d"


@pytest.mark.parametrize("action", ["sts:AssumeRole", "sts:AssumeRoleWithWebIdentity", "sts:AssumeRoleWithSAML", "sts:TagSession",
                                    "sts:SetSourceIdentity"])
@pytest.mark.parametrize("principal", [
    {"aws:PrincipalArn": "arn:aws:iam::999999999999:role/Mallory", "aws:PrincipalAccount": "999999999999"},  # another account
    {"aws:PrincipalArn": "arn:aws:iam::111111111111:role/NeptuneGuardRemediation", "aws:PrincipalAccount": "111111111111"},
    {"aws:PrincipalIsAWSService": "true", "aws:PrincipalServiceName": "ecs-tasks.amazonaws.com"},  # a container of one's own
    {},  # a web identity or SAML federation: no principal ARN at all
])
def test_rcp_lets_no_one_but_lambda_assume_a_replicator_role(action, principal):
    """A replicator role's trust policy is whatever its creator wrote (IAM offers no condition on it): the resource
    control policy makes any other trust void, so the role's credentials exist only inside a Lambda function."""
    decision = evaluate([RCP_FULL_AWS_ACCESS, REPLICATOR_ROLES_RCP], action, REPLICATOR_ROLE, principal)
    assert (decision.allowed, decision.statements) == (False, ["OnlyLambdaAssumesAReplicatorRole"])


def test_rcp_lets_lambda_assume_a_replicator_role_and_leaves_every_other_role_alone():
    lambda_service = {"aws:PrincipalIsAWSService": "true", "aws:PrincipalServiceName": "lambda.amazonaws.com"}
    assert evaluate([RCP_FULL_AWS_ACCESS, REPLICATOR_ROLES_RCP], "sts:AssumeRole", REPLICATOR_ROLE, lambda_service).allowed
    for role in ("arn:aws:iam::111111111111:role/NeptuneGuardRemediation", "arn:aws:iam::111111111111:role/OrdersApp",
                 "arn:aws:iam::111111111111:role/NeptuneGuardReplicator-1a2b3c4d"):  # the same name outside the path is not one
        assert evaluate([RCP_FULL_AWS_ACCESS, REPLICATOR_ROLES_RCP], "sts:AssumeRole", role,
                        {"aws:PrincipalArn": "arn:aws:iam::999999999999:role/Partner"}).allowed, role


def test_rcp_fits_the_organizations_size_limit():
    # RCPs may be at most 5,120 characters, as SCPs (AWS Organizations quotas).
    assert len(json.dumps(REPLICATOR_ROLES_RCP, separators=(",", ":"))) <= 5120
