"""The CDK app: what it deploys, how it is wired, and the least-privilege rules, via aws_cdk.assertions."""

import json
import re
from pathlib import Path

import pytest
from aws_cdk import App
from aws_cdk.assertions import Annotations, Match, Template

from stacks.app import build
from tests.conftest import EXAMPLE_ORGANIZATION

ROOT = Path(__file__).resolve().parent.parent
CONTEXT = {**json.loads((ROOT / "cdk.json").read_text())["context"], "neptune-guard:organizationId": EXAMPLE_ORGANIZATION}


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    app = App(context=CONTEXT, outdir=str(tmp_path_factory.mktemp("cdk.out")))
    security, members = build(app)
    return security, members, Template.from_stack(security), Template.from_stack(members)


def statements(template: Template):
    for resource in list(template.find_resources("AWS::IAM::Policy").values()) + list(
            template.find_resources("AWS::IAM::ManagedPolicy").values()):
        yield from resource["Properties"]["PolicyDocument"]["Statement"]
    for role in template.find_resources("AWS::IAM::Role").values():
        for policy in role["Properties"].get("Policies", []):
            yield from policy["PolicyDocument"]["Statement"]


def actions(statement) -> list[str]:
    return statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]


def test_no_unsuppressed_cdk_nag_errors(stacks):
    security, members, _, _ = stacks
    for stack in (security, members):
        assert Annotations.from_stack(stack).find_error("*", Match.string_like_regexp("AwsSolutions-.*")) == []


def test_no_iam_statement_allows_every_action(stacks):
    _, _, security, members = stacks
    for template in (security, members):
        for statement in statements(template):
            assert all(action != "*" and not action.endswith(":*") for action in actions(statement)), statement


def detector_function(template: Template) -> dict:
    return next(f for f in template.find_resources("AWS::Lambda::Function").values()
                if f["Properties"]["Handler"].startswith(("neptune_guard.handlers.detector.", "neptune_guard.handlers.scheduled_scan.")))


def test_the_schedule_starts_the_distributed_scan_whose_items_run_in_the_detector(stacks):
    _, _, security, _ = stacks
    security.has_resource_properties("AWS::Events::Rule", {
        "ScheduleExpression": CONTEXT["neptune-guard:schedule"],
        "Targets": [Match.object_like({"Arn": {"Ref": Match.string_like_regexp("ScheduledScan")}})],
    })
    detector = detector_function(security)["Properties"]
    assert detector["Handler"] == "neptune_guard.handlers.scheduled_scan.handler" and detector["Runtime"] == "python3.13"
    assert detector["TracingConfig"] == {"Mode": "Active"} and detector["Timeout"] == 900
    variables = detector["Environment"]["Variables"]
    assert {k: variables[k] for k in ("ACCOUNTS", "AUDIT_ROLE_NAME", "PUBLISH", "MAP_CONCURRENCY", "MINIMUM_COVERAGE")} == {
        "ACCOUNTS": "org", "AUDIT_ROLE_NAME": "NeptuneGuardAudit", "PUBLISH": "true",
        "MAP_CONCURRENCY": str(CONTEXT["neptune-guard:mapConcurrency"]), "MINIMUM_COVERAGE": str(CONTEXT["neptune-guard:minimumCoverage"])}
    assert "RUNS_BUCKET" in variables
    (layer_parameter,) = [ref["Ref"] for ref in detector["Layers"]]
    assert security.to_json()["Parameters"][layer_parameter]["Default"] == "/aws/service/powertools/python/arm64/python3.13/3.37.0"
    security.has_resource_properties("AWS::CloudWatch::Alarm", {"MetricName": "Errors", "AlarmActions": [{"Ref": Match.any_value()}]})
    security.has_resource_properties("AWS::CloudWatch::Alarm", {"MetricName": "ExecutionsFailed", "AlarmActions": [{"Ref": Match.any_value()}]})
    security.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": CONTEXT["neptune-guard:logRetentionDays"]})
    security.has_resource_properties("AWS::S3::Bucket", {"BucketEncryption": Match.any_value(), "LifecycleConfiguration": {
        "Rules": [Match.object_like({"ExpirationInDays": CONTEXT["neptune-guard:logRetentionDays"]})]}})


def test_the_scan_state_machine_may_run_its_map_and_nothing_else(stacks):
    security = stacks[0]
    template = Template.from_stack(security)
    machine_role = next(logical for logical, m in template.find_resources("AWS::StepFunctions::StateMachine").items()
                        if m["Properties"]["StateMachineName"] == "NeptuneGuardScheduledScan")
    role = template.find_resources("AWS::StepFunctions::StateMachine")[machine_role]["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    policy = next(p for p in template.find_resources("AWS::IAM::Policy").values() if {"Ref": role} in p["Properties"]["Roles"])
    granted = {a for st in policy["Properties"]["PolicyDocument"]["Statement"] for a in actions(st)}
    required = {"states:StartExecution", "states:DescribeExecution", "states:StopExecution", "lambda:InvokeFunction",
                "s3:GetObject", "s3:PutObject"}
    # besides: multipart uploads of large result files, and tracing and log delivery
    others = {"s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"}
    assert required <= granted
    assert not {a for a in granted - required - others if not a.startswith(("xray:", "logs:"))}, granted
    start = next(st for st in policy["Properties"]["PolicyDocument"]["Statement"] if "states:StartExecution" in actions(st))
    assert "stateMachine:NeptuneGuardScheduledScan" in json.dumps(start["Resource"])


def test_a_small_organization_may_scan_in_the_detector_alone(tmp_path):
    app = App(context={**CONTEXT, "neptune-guard:scanMode": "single"}, outdir=str(tmp_path))
    security, _ = build(app)
    template = Template.from_stack(security)
    assert detector_function(template)["Properties"]["Handler"] == "neptune_guard.handlers.detector.handler"
    template.has_resource_properties("AWS::Events::Rule", {
        "ScheduleExpression": CONTEXT["neptune-guard:schedule"],
        "Targets": [{"Arn": {"Fn::GetAtt": [Match.string_like_regexp("Detector"), "Arn"]}, "Id": Match.any_value()}],
    })
    assert [k for k in template.find_resources("AWS::S3::Bucket") if not k.startswith("ReplicatorPackage")] == []  # no runs bucket
    for metric in ("accounts_failed", "account_regions_failed", "account_regions_partly_read", "account_regions_unpublished"):
        template.has_resource_properties("AWS::CloudWatch::Alarm", {"MetricName": metric, "AlarmActions": [{"Ref": Match.any_value()}]})
    assert len(template.find_resources("AWS::StepFunctions::StateMachine")) == 2


def test_custom_action_rule_invokes_the_trigger(stacks):
    _, _, security, _ = stacks
    rule = next(r for r in security.find_resources("AWS::Events::Rule").values()
                if r["Properties"].get("EventPattern", {}).get("source") == ["aws.securityhub"])
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["detail-type"] == ["Security Hub Findings - Custom Action"]
    assert "action/custom/RemediateWithCMK" in json.dumps(pattern["resources"])
    assert "Trigger" in json.dumps(rule["Properties"]["Targets"])
    create = next(r for r in security.find_resources("Custom::AWS").values())["Properties"]["Create"]
    assert "createActionTarget" in json.dumps(create) and "Remediate with CMK" in json.dumps(create)


def test_every_end_of_a_remediation_execution_takes_its_marks_off_as_the_workflows_role(stacks):
    _, _, security, _ = stacks
    rule = next(r for r in security.find_resources("AWS::Events::Rule").values()
                if r["Properties"].get("EventPattern", {}).get("source") == ["aws.states"])
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert sorted(pattern["detail"]["status"]) == ["ABORTED", "FAILED", "SUCCEEDED", "TIMED_OUT"]
    assert len(pattern["detail"]["stateMachineArn"]) == 2 and "ExecutionEnded" in json.dumps(rule["Properties"]["Targets"])
    functions = {f["Properties"]["Handler"]: f["Properties"] for f in security.find_resources("AWS::Lambda::Function").values()
                 if "Handler" in f["Properties"]}
    assert functions["neptune_guard.handlers.execution_ended.handler"]["Role"] == functions["neptune_guard.handlers.steps.handler"]["Role"]


def test_state_machines_are_the_asl_files_with_every_placeholder_substituted(stacks):
    _, _, security, _ = stacks
    machines = security.find_resources("AWS::StepFunctions::StateMachine")
    assert len(machines) == 3
    for machine in machines.values():
        properties = machine["Properties"]
        definition = json.dumps(properties["DefinitionString"])
        substitutions = properties.get("DefinitionSubstitutions", {})
        placeholders = set(re.findall(r"\$\{(\w+)\}", definition)) - {"AWS::Partition", "AWS::Region", "AWS::AccountId"}
        assert placeholders <= set(substitutions), placeholders - set(substitutions)
        function = substitutions.get("StepsFunctionArn") or substitutions["ScanFunctionArn"]
        assert ("Steps" if "StepsFunctionArn" in substitutions else "Detector") in json.dumps(function)
        assert properties["TracingConfiguration"] == {"Enabled": True}
        assert properties["LoggingConfiguration"]["Level"] == "ALL"
    names = {m["Properties"]["StateMachineName"] for m in machines.values()}
    assert names == {"NeptuneGuardClusterRemediation", "NeptuneGuardSnapshotRemediation", "NeptuneGuardScheduledScan"}


def test_on_call_topic_is_encrypted_with_a_rotated_cmk(stacks):
    _, _, security, _ = stacks
    security.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    security.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_security_roles_may_assume_only_the_member_roles_by_name(stacks):
    _, _, security, _ = stacks
    assumes = [s for s in statements(security) if s["Action"] == "sts:AssumeRole"]
    resources = {json.dumps(s["Resource"]) for s in assumes}
    assert len(resources) == 6 and all(re.search(r":role/NeptuneGuard(Audit|Remediation|TriggerAccess|Planner|ApprovalMarks|ReplicatorCreator-\*)\"", r)
                                       for r in resources)
    # and only in the Organization's accounts, whatever account a configuration or a finding names
    assert all(st["Condition"] == {"StringEquals": {"aws:ResourceOrgID": CONTEXT["neptune-guard:organizationId"]}} for st in assumes)
    planner = next(s for s in assumes if "Planner" in json.dumps(s["Resource"]))
    assert planner["Sid"] == "PlanInMemberAccounts"  # on-call's approver policy, for plan: read-only
    trigger = next(s for s in assumes if "TriggerAccess" in json.dumps(s["Resource"]))
    assert "Remediation" not in json.dumps([s["Resource"] for s in assumes if s is not trigger and "Trigger" in json.dumps(s)])


def test_member_roles_trust_the_security_roles_in_the_organization_only(stacks):
    _, _, _, members = stacks
    roles = members.find_resources("AWS::IAM::Role")
    assert {r["Properties"]["RoleName"] for r in roles.values()} == {"NeptuneGuardAudit", "NeptuneGuardRemediation", "NeptuneGuardTriggerAccess",
                                                                    "NeptuneGuardPlanner", "NeptuneGuardApprovalMarks"}
    marks = next(r for r in roles.values() if r["Properties"]["RoleName"] == "NeptuneGuardApprovalMarks")
    assert "role/NeptuneGuardApproval\"" in json.dumps(marks["Properties"]["AssumeRolePolicyDocument"])  # the endpoint's, alone
    remediation = next(r for r in roles.values() if r["Properties"]["RoleName"] == "NeptuneGuardRemediation")
    assert "NeptuneGuardWorkflow" in json.dumps(remediation["Properties"]["AssumeRolePolicyDocument"])
    assert "NeptuneGuardTrigger" not in json.dumps(remediation["Properties"]["AssumeRolePolicyDocument"])  # the trigger reads, never remediates
    for role in roles.values():
        for statement in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
            assert statement["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}}
            principal = json.dumps(statement["Principal"])
            assert "SecurityAccountId" in principal and re.search(r"role/NeptuneGuard(Detector|Workflow|Trigger|OnCall|Approval)", principal)
    planner = next(logical for logical, r in roles.items() if r["Properties"]["RoleName"] == "NeptuneGuardPlanner")
    planner_policy = next(p for p in members.find_resources("AWS::IAM::Policy").values() if {"Ref": planner} in p["Properties"]["Roles"])
    planner_actions = {a for s in planner_policy["Properties"]["PolicyDocument"]["Statement"] for a in actions(s)}
    assert planner_actions and all(a.split(":")[1].startswith(("Describe", "List", "Get")) for a in planner_actions), planner_actions


DESTRUCTIVE = {"rds:ModifyDBCluster", "rds:ModifyDBInstance", "rds:StopDBCluster", "rds:DeleteDBCluster", "rds:DeleteDBInstance",
               "rds:DeleteDBClusterSnapshot", "rds:ModifyDBClusterSnapshotAttribute", "rds:AddRoleToDBCluster"}


def test_destructive_actions_need_a_neptune_guard_execution_tag_not_a_name(stacks):
    _, _, _, members = stacks
    destructive = [s for s in statements(members) if DESTRUCTIVE & set(actions(s))]
    assert {a for s in destructive for a in actions(s)} >= {"rds:DeleteDBCluster", "rds:ModifyDBCluster", "rds:DeleteDBClusterSnapshot"}
    for statement in destructive:
        assert statement["Condition"]["StringLike"]
        for tag_key, executions in statement["Condition"]["StringLike"].items():
            assert tag_key.startswith("aws:ResourceTag/neptune-guard:")
            assert ":execution:NeptuneGuard*Remediation:*" in json.dumps(executions)
        assert not any(pattern in json.dumps(statement["Resource"]) for pattern in ("-cmk", "tmp"))  # no name patterns
    creates = [s for s in statements(members) if "rds:RestoreDBClusterFromSnapshot" in actions(s)]
    assert creates and all(key.startswith(("aws:RequestTag/neptune-guard:", "aws:ResourceTag/neptune-guard:"))
                           for s in creates for key in s["Condition"]["StringLike"])
    kms = [s for s in statements(members) if any(a.startswith("kms:") for a in actions(s))]
    assert {a for s in kms for a in actions(s)} == {
        "kms:DescribeKey", "kms:GetKeyPolicy", "kms:CreateGrant", "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey",
        "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptTo", "kms:ReEncryptFrom"}
    grant = next(s for s in kms if s["Action"] == "kms:CreateGrant")
    assert grant["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": "true"}


def test_stack_set_deploys_the_member_roles_to_the_organization(stacks):
    _, _, security, _ = stacks
    stack_set = next(iter(security.find_resources("AWS::CloudFormation::StackSet").values()))["Properties"]
    assert stack_set["PermissionModel"] == "SERVICE_MANAGED"
    assert stack_set["AutoDeployment"] == {"Enabled": True, "RetainStacksOnAccountRemoval": False}
    assert stack_set["StackInstancesGroup"][0]["DeploymentTargets"]["OrganizationalUnitIds"] == ["r-exmp"]
    template = json.loads(stack_set["TemplateBody"])
    assert {r["Properties"]["RoleName"] for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Role"} == {
        "NeptuneGuardAudit", "NeptuneGuardRemediation", "NeptuneGuardTriggerAccess", "NeptuneGuardPlanner", "NeptuneGuardApprovalMarks"}
    assert {p["ParameterKey"] for p in stack_set["Parameters"]} == {"SecurityAccountId", "OrganizationId"}
    assert "BootstrapVersion" not in template.get("Parameters", {})


def test_bad_configuration_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="organizationId"):
        build(App(context={**CONTEXT, "neptune-guard:organizationId": "my-org"}))
    with pytest.raises(ValueError, match="organizationId is required"):  # cdk.json as shipped: synth must be told
        build(App(context=json.loads((ROOT / "cdk.json").read_text())["context"]))
    with pytest.raises(ValueError, match="customer-managed"):
        build(App(context={**CONTEXT, "neptune-guard:targetKey": "alias/aws/rds"}))


def test_people_approve_only_through_the_iam_authorized_endpoint(stacks):
    _, _, security, _ = stacks
    security.has_resource_properties("AWS::Lambda::Url", {"AuthType": "AWS_IAM", "TargetFunctionArn": {
        "Fn::GetAtt": [Match.string_like_regexp("^Approval"), "Arn"]}})
    endpoint = next(f for f in security.find_resources("AWS::Lambda::Function").values()
                    if f["Properties"]["Handler"] == "neptune_guard.handlers.approval.handler")
    assert "assumed-role/NeptuneGuardOnCall/*" in json.dumps(endpoint["Properties"]["Environment"]["Variables"]["APPROVER_PRINCIPALS"])
    approver = next(p for p in security.find_resources("AWS::IAM::ManagedPolicy").values()
                    if p["Properties"]["ManagedPolicyName"] == "NeptuneGuardApprover")["Properties"]["PolicyDocument"]["Statement"]
    granted = {a: s for s in approver for a in actions(s)}
    assert not [a for a in granted if a.startswith("states:SendTask") or a == "states:StartExecution"]
    assert granted["lambda:InvokeFunctionUrl"]["Condition"] == {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}
    assert granted["lambda:InvokeFunction"]["Condition"] == {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}
    assert all("Approval" in json.dumps(granted[a]["Resource"]) for a in ("lambda:InvokeFunctionUrl", "lambda:InvokeFunction"))
    # Only the endpoint answers task tokens (actions with no resource type: "*"); it starts only our two workflows.
    answering = [s for s in statements(security) if "states:SendTaskSuccess" in actions(s)]
    assert len(answering) == 1 and set(actions(answering[0])) == {"states:SendTaskSuccess", "states:SendTaskFailure"}
    assert answering[0]["Sid"] == "AnswerTheirTaskTokens" and answering[0]["Resource"] == "*"
    starting = next(s for s in statements(security) if s.get("Sid") == "StartTheWorkflows")
    assert "ClusterRemediation" in json.dumps(starting["Resource"]) and "SnapshotRemediation" in json.dumps(starting["Resource"])
    assert "ApprovalUrl" in security.find_outputs("*")


@pytest.mark.parametrize("principals, complaint", [
    ("", "must name who may approve"), ("*", "not a principal ARN pattern"), ("arn:aws:sts::*:*", "not a principal ARN pattern"),
    ("arn:aws:iam::111122223333:role/OnCall", "callers through a role are its sessions"),
])
def test_a_bad_approver_allow_list_is_refused(principals, complaint):
    with pytest.raises(ValueError, match=complaint):
        build(App(context={**CONTEXT, "neptune-guard:approverPrincipals": principals}))


def test_logs_are_encrypted_and_carry_no_execution_data(stacks):
    _, _, security, _ = stacks
    log_groups = security.find_resources("AWS::Logs::LogGroup")
    assert log_groups and all("KmsKeyId" in group["Properties"] for group in log_groups.values())
    for machine in security.find_resources("AWS::StepFunctions::StateMachine").values():
        logging = machine["Properties"]["LoggingConfiguration"]
        assert logging["IncludeExecutionData"] is False  # plans and task tokens stay in the execution history


def test_members_forward_the_watched_changes_to_a_bus_only_the_organization_may_use(stacks):
    from neptune_guard.detect.changes import WATCHED

    _, _, security, _ = stacks
    stack_set = next(s["Properties"] for s in security.find_resources("AWS::CloudFormation::StackSet").values()
                     if s["Properties"]["StackSetName"] == "NeptuneGuardMemberEvents")
    assert stack_set["StackInstancesGroup"][0]["Regions"] == CONTEXT["neptune-guard:changeRegions"].split(",")
    members = Template.from_json(json.loads(stack_set["TemplateBody"]))
    (rule,) = members.find_resources("AWS::Events::Rule").values()
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == sorted(WATCHED) and pattern["detail-type"] == ["AWS API Call via CloudTrail"]
    assert set(pattern["detail"]["eventName"]) >= {"CreateDBCluster", "RestoreDBClusterFromSnapshot", "ModifyDBCluster",
                                                   "CreateDBClusterSnapshot", "CopyDBClusterSnapshot", "ModifyDBClusterSnapshotAttribute",
                                                   "DisableKey", "ScheduleKeyDeletion", "CancelKeyDeletion", "EnableKey",
                                                   "CreateGraph", "RestoreGraphFromSnapshot"}
    (target,) = rule["Properties"]["Targets"]
    assert "event-bus/NeptuneGuardChanges" in json.dumps(target["Arn"]) and "RoleArn" in target
    (policy,) = [p for p in members.find_resources("AWS::IAM::Policy").values() if "Ref" in p["Properties"]["Roles"][0]]
    (put,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert actions(put) == ["events:PutEvents"] and "event-bus/NeptuneGuardChanges" in json.dumps(put["Resource"])

    (bus_policy,) = security.find_resources("AWS::Events::EventBusPolicy").values()
    statement = bus_policy["Properties"]["Statement"]
    assert statement["Action"] == "events:PutEvents" and statement["Principal"] == {"AWS": "*"}
    assert statement["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": CONTEXT["neptune-guard:organizationId"]}}
    security.has_resource_properties("AWS::Lambda::EventSourceMapping", {
        "BatchSize": 100, "MaximumBatchingWindowInSeconds": CONTEXT["neptune-guard:changeBatchingSeconds"],
        "ScalingConfig": {"MaximumConcurrency": 5}, "FunctionResponseTypes": ["ReportBatchItemFailures"]})
    for metric in ("Errors", "ApproximateNumberOfMessagesVisible", "accounts_unreached", "account_regions_unpublished"):
        security.has_resource_properties("AWS::CloudWatch::Alarm", {"MetricName": metric, "AlarmActions": [{"Ref": Match.any_value()}]})
    change_scan = next(f["Properties"] for f in security.find_resources("AWS::Lambda::Function").values()
                       if f["Properties"]["Handler"] == "neptune_guard.handlers.change_scan.handler")
    assert change_scan["Role"] == detector_function(security)["Properties"]["Role"]  # the role the audit roles trust
    detector_variables = detector_function(security)["Properties"]["Environment"]["Variables"]
    assert {k: change_scan["Environment"]["Variables"][k] for k in ("ACCOUNTS", "REGIONS", "CONCURRENCY")} == {
        k: detector_variables[k] for k in ("ACCOUNTS", "REGIONS", "CONCURRENCY")}  # the scheduled scan's scope


def test_every_function_runs_on_arm64(stacks):
    _, _, security, _ = stacks
    functions = security.find_resources("AWS::Lambda::Function")
    ours = {k: f for k, f in functions.items() if f["Properties"].get("Handler", "").startswith("neptune_guard.handlers.")}
    assert len(ours) == 8 and all(f["Properties"]["Architectures"] == ["arm64"] for f in ours.values())


def test_no_state_machine_definition_holds_a_partial_placeholder(stacks):
    """A placeholder is a whole value (CloudFormation substitutes it entirely), never part of an ARN."""
    _, _, security, _ = stacks
    for machine in security.find_resources("AWS::StepFunctions::StateMachine").values():
        definition = machine["Properties"]["DefinitionString"]
        assert isinstance(definition, str)
        partial = [v for v in re.findall(r'"([^"]*\$\{\w+\}[^"]*)"', definition) if not re.fullmatch(r"\$\{\w+\}", v)]
        assert partial == []


def test_cfn_lint_finds_no_error_in_the_synthesized_templates(stacks, tmp_path):
    """cfn-lint once over every template the app synthesizes (the security stack, the member roles and events)."""
    import subprocess
    import sys

    app = stacks[0].node.root
    assembly = app.synth()
    templates = sorted(str(path) for path in Path(assembly.directory).rglob("*.template.json"))
    assert len(templates) == 3, templates
    run = "import sys; from cfnlint.runner import main; sys.exit(main())"  # what the cfn-lint console script runs
    linted = subprocess.run([sys.executable, "-c", run, "--format", "json", *templates], capture_output=True, text=True, timeout=600)
    findings = json.loads(linted.stdout or "[]")
    errors = [f"{f['Rule']['Id']} {f['Message']} ({f['Filename']})" for f in findings if f["Level"] == "Error"]
    assert errors == [] and linted.returncode in (0, 4, 8, 12), linted.stderr  # 4, 8: warnings and informational only


def test_a_replicator_can_be_made_only_from_the_code_the_security_stack_signed(stacks):
    """The security stack signs the replicator at deployment and hands its profile version to the regional member
    stack, whose code-signing configuration accepts that profile alone and enforces it; only that stack's creator role,
    which only the security account's workflow role may assume, creates a function, under that configuration."""
    from neptune_guard.remediate import live_cutover, replicator_package

    _, _, security, members_roles = stacks
    profile = next(iter(security.find_resources("AWS::Signer::SigningProfile")))
    security.has_resource_properties("AWS::Signer::SigningProfile", {"PlatformId": "AWSLambda-SHA384-ECDSA"})
    stack_sets = {s["Properties"]["StackSetName"]: (k, s) for k, s in security.find_resources("AWS::CloudFormation::StackSet").items()}
    _, events = stack_sets["NeptuneGuardMemberEvents"]
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in events["Properties"]["Parameters"]}
    assert parameters["OrganizationId"] == CONTEXT["neptune-guard:organizationId"]
    assert parameters["ReplicatorSigningProfileVersionArn"] == {"Fn::GetAtt": [profile, "ProfileVersionArn"]}
    steps = next(f["Properties"] for f in security.find_resources("AWS::Lambda::Function").values()
                 if f["Properties"]["Handler"] == "neptune_guard.handlers.steps.handler")["Environment"]["Variables"]
    assert steps[replicator_package.PROFILE_ENVIRONMENT] == {"Fn::GetAtt": [profile, "ProfileVersionArn"]}
    (signed,) = security.find_resources("AWS::CloudFormation::CustomResource").values()
    assert steps[replicator_package.PACKAGE_ENVIRONMENT]["Fn::GetAtt"][1] == "Package"
    assert signed["Properties"]["CodeSha256"] == __import__("hashlib").sha256(replicator_package.code_zip()).hexdigest()

    regional = Template.from_json(json.loads(events["Properties"]["TemplateBody"]))
    (config_id, config), = regional.find_resources("AWS::Lambda::CodeSigningConfig").items()
    assert config["Properties"]["AllowedPublishers"] == {"SigningProfileVersionArns": [{"Ref": "ReplicatorSigningProfileVersionArn"}]}
    assert config["Properties"]["CodeSigningPolicies"] == {"UntrustedArtifactOnDeployment": "Enforce"}
    (creator,) = [r["Properties"] for r in regional.find_resources("AWS::IAM::Role").values()
                  if "ReplicatorCreator" in json.dumps(r["Properties"].get("RoleName"))]
    (trust,) = creator["AssumeRolePolicyDocument"]["Statement"]
    assert "role/NeptuneGuardWorkflow" in json.dumps(trust["Principal"]) and trust["Condition"] == {
        "StringEquals": {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}}
    (policy,) = creator["Policies"]
    expected = live_cutover.creator_policy("PARTITION", "REGION", "ACCOUNT", "CONFIG")["Statement"]
    by_sid = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert set(by_sid) == {s["Sid"] for s in expected}
    assert by_sid["CreateTheReplicatorOnlyFromSignedCode"]["Condition"] == {
        "StringEquals": {"lambda:CodeSigningConfigArn": {"Fn::GetAtt": [config_id, "CodeSigningConfigArn"]}}}
    assert by_sid["WithAReplicatorRole"]["Condition"] == {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}
    # No member role of the roles stack creates, changes or passes a role to a function: the remediation role only invokes
    # and deletes replicators (whoever makes a function chooses its environment, which can run code of its own).
    granted = [a for s in statements(members_roles) for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    for action in ("lambda:CreateFunction", "lambda:UpdateFunctionCode", "lambda:UpdateFunctionConfiguration"):
        assert not [a for a in granted if a == action or (a.endswith("*") and action.startswith(a[:-1]))], action
    passing = [s for s in statements(members_roles) if "iam:PassRole" in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    assert passing and all(s["Condition"] == {"StringEquals": {"iam:PassedToService": "rds.amazonaws.com"}} for s in passing)
    steps_policy = json.dumps([p for p in security.find_resources("AWS::IAM::Policy").values()
                               if "StepsRole" in json.dumps(p["Properties"]["Roles"]) or "NeptuneGuardWorkflow" in json.dumps(p)])
    assert f"role/{live_cutover.CREATOR_PREFIX}*" in steps_policy


def test_an_ended_execution_is_released_again_once_no_step_of_it_can_still_run(stacks):
    """Stopping an execution does not stop a step already running: the end is delivered a second time, through a queue
    whose delay outlasts the steps function's timeout, to the late release; what it cannot release reaches on-call."""
    _, _, security, _ = stacks
    functions = security.find_resources("AWS::Lambda::Function")
    steps = next(f["Properties"] for f in functions.values() if f["Properties"]["Handler"] == "neptune_guard.handlers.steps.handler")
    late_id = next(k for k, f in functions.items() if f["Properties"]["Handler"] == "neptune_guard.handlers.execution_ended.delivered_late")
    (rule,) = [r["Properties"] for r in security.find_resources("AWS::Events::Rule").values()
               if r["Properties"].get("EventPattern", {}).get("detail-type") == ["Step Functions Execution Status Change"]]
    queues = security.find_resources("AWS::SQS::Queue")
    (queue_id,) = [t["Arn"]["Fn::GetAtt"][0] for t in rule["Targets"] if t["Arn"]["Fn::GetAtt"][0] in queues]
    queue = queues[queue_id]["Properties"]
    assert queue["DelaySeconds"] > steps["Timeout"] and queue["RedrivePolicy"]["maxReceiveCount"] == 3
    security.has_resource_properties("AWS::Lambda::EventSourceMapping", {
        "BatchSize": 1, "EventSourceArn": {"Fn::GetAtt": [queue_id, "Arn"]}, "FunctionName": {"Ref": late_id}})
    dead_letters = queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    alarms = [a["Properties"] for a in security.find_resources("AWS::CloudWatch::Alarm").values()]
    assert any(dead_letters in json.dumps(a.get("Dimensions")) and a["AlarmActions"] for a in alarms)
