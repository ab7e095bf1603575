"""The security account: detector on a schedule, the remediation workflows, the Security Hub custom
action and its trigger, on-call notifications, and the StackSet that puts the member roles in every
account of the Organization."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from aws_cdk import Aws, CfnOutput, CustomResource, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_cloudformation as cloudformation
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as lambda_events
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_signer as signer
from aws_cdk import aws_sns as sns
from aws_cdk import aws_ssm as ssm
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import custom_resources as cr
from cdk_nag import NagSuppressions
from constructs import Construct

from neptune_guard.approve import approval_marks
from neptune_guard.detect.changes import CLOUDTRAIL, WATCHED
from neptune_guard.options import METRICS_NAMESPACE
from neptune_guard.remediate import live_cutover, replicator_package

from . import lambda_code
from .config import (APPROVAL_ROLE, CHANGE_BUS, CLUSTER_STATE_MACHINE, DETECTOR_ROLE, PLANNER_ROLE, SCAN_STATE_MACHINE, SNAPSHOT_STATE_MACHINE,
                     TRIGGER_ROLE, WORKFLOW_ROLE, Config)

ROOT = Path(__file__).resolve().parent.parent
RETENTION = {30: logs.RetentionDays.ONE_MONTH, 90: logs.RetentionDays.THREE_MONTHS, 180: logs.RetentionDays.SIX_MONTHS,
             365: logs.RetentionDays.ONE_YEAR, 400: logs.RetentionDays.THIRTEEN_MONTHS, 731: logs.RetentionDays.TWO_YEARS}
CUSTOM_ACTION_NAME = "Remediate with CMK"  # Security Hub: at most 20 characters
CUSTOM_ACTION_ID = "RemediateWithCMK"
ARCHITECTURE, ARCHITECTURE_NAME = lambda_.Architecture.ARM_64, "arm64"  # the layer's SSM path names it so


PARTIAL_PARTITION = re.compile(r'"([^"]*\$\{Partition\}[^"]*)"')


def whole_value_partitions(definition: str) -> tuple[str, dict[str, str]]:
    """The ASL's `arn:${Partition}:states:::...` values, each made a placeholder of its own whose substitution is the
    whole ARN (Fn::Sub with AWS::Partition): CloudFormation substitutes whole values and partial ones alike, but a
    partial placeholder leaves the template's definition an invalid ARN to every linter (cfn-lint E3601). The ASL
    files stay as they are (the sandbox substitutes ${Partition} itself)."""
    values = sorted(set(PARTIAL_PARTITION.findall(definition)))
    names = {}
    for value in values:
        name = "Arn" + "".join(word[:1].upper() + word[1:] for word in re.split(r"[^A-Za-z0-9]+", value.split("${Partition}", 1)[1]) if word)
        names[value] = name
        definition = definition.replace(f'"{value}"', f'"${{{name}}}"')
    return definition, {name: Fn.sub(value.replace("${Partition}", "${AWS::Partition}")) for value, name in names.items()}


class SecurityStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: Config, member_template: dict, member_events_template: dict,
                 **kwargs) -> None:
        super().__init__(scope, construct_id, description="Neptune Guard: detector, remediation workflows, triggers", **kwargs)
        self.config = config
        # The layer of exactly the Powertools release the tests run (requirements.txt), as Powertools publishes it:
        # an SSM parameter per architecture, Python version and release, resolved at deployment. The functions are
        # pure Python, so they run on arm64 (Graviton), which AWS recommends for price-performance.
        self.powertools = lambda_.LayerVersion.from_layer_version_arn(self, "Powertools", ssm.StringParameter.value_for_string_parameter(
            self, f"/aws/service/powertools/python/{ARCHITECTURE_NAME}/python3.13/{config.powertools_version}"))

        key = kms.Key(self, "NotificationKey", enable_key_rotation=True, description="Neptune Guard on-call notifications",
                      removal_policy=RemovalPolicy.RETAIN)
        key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        self.topic = sns.Topic(self, "OnCall", display_name="Neptune Guard on-call", master_key=key, enforce_ssl=True)
        if config.notification_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.notification_email))

        # CloudWatch Logs encrypts the functions' and state machines' log groups with this key; its key policy lets
        # only the Logs service of this region use it, for this account's log groups.
        self.logs_key = kms.Key(self, "LogsKey", enable_key_rotation=True, description="Neptune Guard log groups",
                                removal_policy=RemovalPolicy.RETAIN)
        self.logs_key.add_to_resource_policy(iam.PolicyStatement(
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")], resources=["*"],
            conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:*"}}))
        self.detector, self.scan_workflow = self._detector()
        self.steps = self._function("Steps", "neptune_guard.handlers.steps.handler", WORKFLOW_ROLE, Duration.minutes(5), 512,
                                    {"NOTIFICATION_TOPIC_ARN": self.topic.topic_arn, "AUDIT_ROLE_NAME": config.audit_role_name})
        self._may_assume(self.steps.role, config.remediation_role_name)
        self._may_assume(self.steps.role, config.audit_role_name)  # notes the finding it remediated (finding_notes.py)
        self._may_assume(self.steps.role, f"{live_cutover.CREATOR_PREFIX}*")  # creates a region's replicator
        # Every step reads the execution it acts for (running, ours, approved) before it does anything.
        self.steps.add_to_role_policy(iam.PolicyStatement(
            sid="ConfirmTheExecution", actions=["states:DescribeExecution", "states:GetExecutionHistory"],
            resources=[f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:execution:{name}:*"
                       for name in (CLUSTER_STATE_MACHINE, SNAPSHOT_STATE_MACHINE)]))
        self.topic.grant_publish(self.steps)
        key.grant(self.steps, "kms:Decrypt", "kms:GenerateDataKey*")
        self.signing_profile = self._replicator_signing()
        steps = {"StepsFunctionArn": self.steps.function_arn}
        self.cluster_workflow = self._state_machine("ClusterRemediation", CLUSTER_STATE_MACHINE, "cluster_remediation", self.steps, steps)
        self.snapshot_workflow = self._state_machine("SnapshotRemediation", SNAPSHOT_STATE_MACHINE, "snapshot_remediation", self.steps,
                                                     steps)
        self.execution_ended = self._execution_ended()
        self.trigger = self._trigger()
        self.approval = self._approval_endpoint()
        self.approver_policy = self._approver_policy()
        self.change_scan = self._change_scan()
        self.stack_set = self._member_stack_set(member_template)
        self.events_stack_set = self._member_events_stack_set(member_events_template)
        self._suppressions()

    def _function(self, name: str, handler: str, role_name: str | None, timeout: Duration, memory: int, environment: dict,
                  role: iam.IRole | None = None, function_name: str | None = None) -> lambda_.Function:
        log_group = logs.LogGroup(self, f"{name}Logs", retention=RETENTION[self.config.log_retention_days], encryption_key=self.logs_key,
                                  removal_policy=RemovalPolicy.RETAIN)
        role = role or iam.Role(self, f"{name}Role", role_name=role_name, assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                                description=f"Neptune Guard {name} function")
        log_group.grant_write(role)
        return lambda_.Function(
            self, name, function_name=function_name, runtime=lambda_.Runtime.PYTHON_3_13, architecture=ARCHITECTURE, handler=handler,
            # Each function ships only what its handler imports.
            code=lambda_.Code.from_asset(str(lambda_code.LAMBDAS), exclude=lambda_code.excluded(handler.rsplit(".", 1)[0])),
            layers=[self.powertools], role=role, timeout=timeout, memory_size=memory,
            tracing=lambda_.Tracing.ACTIVE, log_group=log_group,
            environment={"POWERTOOLS_SERVICE_NAME": f"neptune-guard-{name.lower()}", "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                         **environment},
        )

    def _replicator_signing(self) -> signer.SigningProfile:
        """The replicator's code, signed when the stack is deployed (remediate/replicator_package.py): a versioned bucket
        (Signer reads a version), the one signing profile the member accounts' code-signing configurations accept, and
        the custom resource that signs the code and tells the steps function where the signed package is."""
        bucket = s3.Bucket(self, "ReplicatorPackage", encryption=s3.BucketEncryption.S3_MANAGED, enforce_ssl=True, versioned=True,
                           block_public_access=s3.BlockPublicAccess.BLOCK_ALL, removal_policy=RemovalPolicy.RETAIN,
                           object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED)
        NagSuppressions.add_resource_suppressions(bucket, [{"id": "AwsSolutions-S1", "reason": (
            "Written only by the stack's signing custom resource and AWS Signer, read only by the steps function: each "
            "write is a signing job Signer records. A second bucket for its access logs would need the same exemption.")}])
        profile = signer.SigningProfile(self, "ReplicatorSigning", platform=signer.Platform.AWS_LAMBDA_SHA384_ECDSA,
                                        signature_validity=Duration.days(3650))
        sign = self._function("SignReplicator", "neptune_guard.handlers.sign_replicator.handler", None, Duration.minutes(3), 256,
                              {"PACKAGE_BUCKET": bucket.bucket_name, "SIGNING_PROFILE_NAME": profile.signing_profile_name})
        # Signer reads the source and writes the signed package with the caller's permissions.
        # https://docs.aws.amazon.com/signer/latest/developerguide/signing-jobs-lambda.html
        unsigned, signed_packages = (bucket.arn_for_objects(f"{prefix}*") for prefix in (replicator_package.UNSIGNED_PREFIX,
                                                                                          replicator_package.SIGNED_PREFIX))
        for sid, actions, resources in (
                ("PutTheCodeToSign", ["s3:PutObject"], [unsigned]),
                ("SignerReadsItAsTheCaller", ["s3:GetObject", "s3:GetObjectVersion"], [unsigned]),
                ("SignerWritesTheSignedPackageAsTheCaller", ["s3:PutObject"], [signed_packages]),
                ("SignWithTheReplicatorProfile", ["signer:StartSigningJob"], [profile.signing_profile_arn]),
                ("ReadTheJob", ["signer:DescribeSigningJob"], ["*"])):  # DescribeSigningJob has no resource type
            sign.add_to_role_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources))
        provider_logs = logs.LogGroup(self, "SignReplicatorProviderLogs", retention=RETENTION[self.config.log_retention_days],
                                      encryption_key=self.logs_key, removal_policy=RemovalPolicy.RETAIN)
        provider = cr.Provider(self, "SignReplicatorProvider", on_event_handler=sign, log_group=provider_logs)
        signed = CustomResource(self, "SignedReplicator", service_token=provider.service_token,
                                properties={"CodeSha256": hashlib.sha256(replicator_package.code_zip()).hexdigest()})
        self.steps.add_to_role_policy(iam.PolicyStatement(sid="ReadTheSignedReplicator", actions=replicator_package.PERMISSIONS["read_package"],
                                                          resources=[signed_packages]))
        self.steps.add_environment(replicator_package.PACKAGE_ENVIRONMENT, signed.get_att_string("Package"))
        self.steps.add_environment(replicator_package.PROFILE_ENVIRONMENT, profile.signing_profile_version_arn)
        return profile

    def _may_assume(self, role: iam.IRole, member_role_name: str) -> None:
        """The member role by name in any account, of the Organization only: a configured account outside it, or a role
        of that name someone else made, is refused by IAM before its trust policy is asked."""
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="Assume" + re.sub(r"[^A-Za-z0-9]", "", member_role_name), actions=["sts:AssumeRole"],
            resources=[f"arn:{Aws.PARTITION}:iam::*:role/{member_role_name}"],
            conditions={"StringEquals": {"aws:ResourceOrgID": self.config.organization_id}}))

    def _detector(self) -> tuple[lambda_.Function, sfn.StateMachine | None]:
        """The scheduled scan: a Distributed Map over the accounts whose items run in the detector function, or (scanMode
        single, for a small Organization) the detector function alone. Either way the function is the detector role,
        the one the member audit roles trust."""
        config = self.config
        distributed = config.scan_mode == "distributed"
        runs = self._runs_bucket() if distributed else None
        environment = {"ACCOUNTS": config.accounts, "AUDIT_ROLE_NAME": config.audit_role_name, "REGIONS": config.regions,
                       "CONCURRENCY": str(config.concurrency), "PUBLISH": "true", "POWERTOOLS_SERVICE_NAME": "detector",
                       "READ_NEPTUNE_ANALYTICS": str(config.read_neptune_analytics).lower()}
        if runs:
            environment |= {"RUNS_BUCKET": runs.bucket_name, "MAP_CONCURRENCY": str(config.map_concurrency),
                            "MINIMUM_COVERAGE": str(config.minimum_coverage)}
        handler = "neptune_guard.handlers.scheduled_scan.handler" if distributed else "neptune_guard.handlers.detector.handler"
        detector = self._function("Detector", handler, DETECTOR_ROLE, Duration.minutes(15), 1024, environment)
        self._may_assume(detector.role, config.audit_role_name)
        detector.add_to_role_policy(iam.PolicyStatement(sid="ListOrganizationAccounts", actions=["organizations:ListAccounts"],
                                                        resources=["*"]))
        alarm_action = cloudwatch_actions.SnsAction(self.topic)
        errors = cloudwatch.Alarm(
            self, "DetectorErrors", metric=detector.metric_errors(period=Duration.hours(1)), threshold=1, evaluation_periods=1,
            alarm_description="The Neptune Guard detector failed", treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)
        alarms = [errors]
        workflow = None
        if runs:
            detector.add_to_role_policy(iam.PolicyStatement(sid="WriteTheAccountList", actions=["s3:PutObject"],
                                                            resources=[runs.arn_for_objects("runs/*/accounts.json")]))
            detector.add_to_role_policy(iam.PolicyStatement(sid="ReadTheRunsResults", actions=["s3:GetObject"],
                                                            resources=[runs.arn_for_objects("runs/*")]))
            workflow = self._state_machine("ScheduledScan", SCAN_STATE_MACHINE, "scheduled_scan", detector,
                                           {"ScanFunctionArn": detector.function_arn, "RunsBucket": runs.bucket_name})
            self._may_run_its_distributed_map(workflow, SCAN_STATE_MACHINE, runs)
            events.Rule(self, "DailyScan", description="Neptune Guard scheduled scan",
                        schedule=events.Schedule.expression(config.schedule), targets=[targets.SfnStateMachine(workflow)])
            alarms.append(cloudwatch.Alarm(
                self, "ScheduledScanFailed", metric=workflow.metric_failed(period=Duration.hours(1)), threshold=1,
                evaluation_periods=1, treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description="The scheduled scan failed: its coverage fell below minimumCoverage, or it could not list the accounts"))
        else:
            events.Rule(self, "DailyScan", description="Neptune Guard scheduled scan",
                        schedule=events.Schedule.expression(config.schedule), targets=[targets.LambdaFunction(detector)])
        # Each gap its own alarm, whatever the run's coverage: one account dropping out is worth a look.
        gaps = {"account_regions_failed": "Some account-regions could not be scanned (access denied, region not enabled)",
                "account_regions_unpublished": "Some account-regions were scanned but their findings not published (the audit "
                                               "role may not import, or Security Hub refused them)"}
        gaps["account_regions_partly_read"] = ("Some account-regions were read but not every resource type (Neptune Analytics "
                                               "denied, say): what was not read is neither found nor archived")
        if distributed:
            gaps["accounts_unreached"] = "Some accounts were not scanned at all (audit role missing or refused, item failed)"
        else:
            gaps["accounts_failed"] = "Some accounts were not scanned at all (audit role missing or refused)"
        for metric_name, description in gaps.items():
            alarms.append(cloudwatch.Alarm(
                self, "".join(part.title() for part in metric_name.split("_")), threshold=1, evaluation_periods=1,
                metric=cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name=metric_name, dimensions_map={"service": "detector"},
                                         statistic="Maximum", period=Duration.hours(1)),
                alarm_description=description, treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING))
        for alarm in alarms:
            alarm.add_alarm_action(alarm_action)
        return detector, workflow

    def _runs_bucket(self) -> s3.Bucket:
        """The scheduled scan's account lists and Map results: run bookkeeping, kept as long as the logs."""
        bucket = s3.Bucket(self, "ScanRuns", encryption=s3.BucketEncryption.S3_MANAGED, enforce_ssl=True,
                           block_public_access=s3.BlockPublicAccess.BLOCK_ALL, removal_policy=RemovalPolicy.RETAIN,
                           object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
                           lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(self.config.log_retention_days))])
        NagSuppressions.add_resource_suppressions(bucket, [{"id": "AwsSolutions-S1", "reason": (
            "Only the detector function and the scheduled scan's state machine read or write it, both logged (function logs, "
            "execution history); it holds account ids and item counts, no customer data. A second bucket for its access logs "
            "would need the same exemption.")}])
        return bucket

    def _may_run_its_distributed_map(self, workflow: sfn.StateMachine, name: str, runs: s3.Bucket) -> None:
        """What a Distributed Map needs of its state machine's role: start its child executions, and read its items
        from and write its results to S3. The ARNs are built from the name, not the construct: a policy of the role
        that named the state machine would depend on itself.
        https://docs.aws.amazon.com/step-functions/latest/dg/iam-policies-eg-dist-map.html"""
        machine = f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:stateMachine:{name}"
        workflow.add_to_role_policy(iam.PolicyStatement(sid="StartItsChildExecutions", actions=["states:StartExecution"],
                                                        resources=[machine]))
        workflow.add_to_role_policy(iam.PolicyStatement(
            sid="ManageItsChildExecutions", actions=["states:DescribeExecution", "states:StopExecution"],
            resources=[f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:execution:{name}/*"]))
        workflow.add_to_role_policy(iam.PolicyStatement(
            sid="ReadItsItemsWriteItsResults",
            actions=["s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"],
            resources=[runs.arn_for_objects("runs/*")]))

    def _state_machine(self, construct_id: str, name: str, asl_file: str, function: lambda_.Function,
                       substitutions: dict[str, str]) -> sfn.StateMachine:
        definition, partitioned = whole_value_partitions((ROOT / "state_machines" / f"{asl_file}.asl.json").read_text())
        log_group = logs.LogGroup(self, f"{construct_id}Logs", retention=RETENTION[self.config.log_retention_days],
                                  encryption_key=self.logs_key,
                                  removal_policy=RemovalPolicy.RETAIN)
        machine = sfn.StateMachine(
            self, construct_id, state_machine_name=name,
            # Inline, so that the template shows the definition that runs (with the substitution below).
            definition_body=sfn.DefinitionBody.from_string(definition),
            definition_substitutions={**substitutions, **partitioned},
            # Every event, without execution data: the state carries plans and task tokens, which stay in the execution
            # history (readable with states:GetExecutionHistory only), never in a log group.
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            tracing_enabled=True,
        )
        function.grant_invoke(machine)
        return machine

    def _execution_ended(self) -> lambda_.Function:
        """However a remediation execution ended (stopped by hand included), the approval marks it still holds come off,
        a new cluster that served is handed over and a replicator left behind is removed (remediate/ended.py). It runs as
        the workflow's role, which reads the executions and acts as the remediation role. Lambda retries a failed event
        (twice, asynchronously); one that still fails alarms on-call."""
        ended = self._function("ExecutionEnded", "neptune_guard.handlers.execution_ended.handler", None, Duration.minutes(2), 256, {},
                               role=self.steps.role)
        not_released = cloudwatch.Alarm(
            self, "ExecutionEndedErrors", metric=ended.metric_errors(period=Duration.minutes(15)), threshold=1, evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="An ended remediation could not be released (marks, a served cluster or its replicator): "
                              "see the ExecutionEnded log; Lambda retried it twice")
        not_released.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
        # Stopping an execution does not stop a step already running: the same event again, once no step can still run
        # (the steps function's timeout), releases what such a step did after the first release.
        late = self._function("ExecutionEndedLate", "neptune_guard.handlers.execution_ended.delivered_late", None, Duration.minutes(2),
                              256, {}, role=self.steps.role)
        not_released_late = sqs.Queue(self, "ExecutionsNotReleased", encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
                                      retention_period=Duration.days(14))
        delayed = sqs.Queue(self, "ExecutionsEndedLate", encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
                            delivery_delay=Duration.seconds(self.steps.timeout.to_seconds() + 120),
                            visibility_timeout=Duration.minutes(12),  # six times the function's timeout, as Lambda advises
                            dead_letter_queue=sqs.DeadLetterQueue(queue=not_released_late, max_receive_count=3))
        late.add_event_source(lambda_events.SqsEventSource(delayed, batch_size=1))
        cloudwatch.Alarm(
            self, "ExecutionsNotReleasedLate", metric=not_released_late.metric_approximate_number_of_messages_visible(period=Duration.minutes(15)),
            threshold=1, evaluation_periods=1, treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="An ended remediation's second release failed three times (see the ExecutionEndedLate log)",
        ).add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
        events.Rule(self, "ExecutionEndedRule", description="A Neptune Guard remediation execution ended: take its approval marks off",
                    event_pattern=events.EventPattern(
                        source=["aws.states"], detail_type=["Step Functions Execution Status Change"],
                        detail={"status": ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"],
                                "stateMachineArn": [self.cluster_workflow.state_machine_arn, self.snapshot_workflow.state_machine_arn]}),
                    targets=[targets.LambdaFunction(ended), targets.SqsQueue(delayed)])
        return ended

    def _trigger(self) -> lambda_.Function:
        config = self.config
        trigger = self._function("Trigger", "neptune_guard.handlers.trigger.handler", TRIGGER_ROLE, Duration.minutes(1), 256, {
            "CLUSTER_STATE_MACHINE_ARN": self.cluster_workflow.state_machine_arn,
            "SNAPSHOT_STATE_MACHINE_ARN": self.snapshot_workflow.state_machine_arn,
            "TARGET_KEY": config.target_key, "REMEDIATION_ROLE_NAME": config.remediation_role_name,
            "TRIGGER_ACCESS_ROLE_NAME": config.trigger_access_role_name, "AUDIT_ROLE_NAME": config.audit_role_name,
            "APPROVAL_TIMEOUT_SECONDS": str(config.approval_timeout_seconds),
            "SOAK_SECONDS": str(config.soak_seconds), "METRICS_SETTLE_SECONDS": str(config.metrics_settle_seconds),
        })
        self.cluster_workflow.grant_start_execution(trigger)
        self.snapshot_workflow.grant_start_execution(trigger)
        self._may_assume(trigger.role, config.trigger_access_role_name)
        self._may_assume(trigger.role, config.audit_role_name)  # notes the finding it started a remediation for
        # A second finding of a resource already being remediated finds the running execution by its name.
        trigger.add_to_role_policy(iam.PolicyStatement(
            sid="FindTheRunningExecution", actions=["states:DescribeExecution"],
            resources=[f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:execution:{name}:*"
                       for name in (CLUSTER_STATE_MACHINE, SNAPSHOT_STATE_MACHINE)]))
        # CloudFormation has no resource type for Security Hub custom actions: create it through the API.
        action_arn = f"arn:{Aws.PARTITION}:securityhub:{Aws.REGION}:{Aws.ACCOUNT_ID}:action/custom/{CUSTOM_ACTION_ID}"
        hub_arn = f"arn:{Aws.PARTITION}:securityhub:{Aws.REGION}:{Aws.ACCOUNT_ID}:hub/default"
        cr.AwsCustomResource(
            self, "RemediateAction", install_latest_aws_sdk=False,
            log_group=logs.LogGroup(self, "RemediateActionLogs", retention=RETENTION[self.config.log_retention_days],
                                    encryption_key=self.logs_key, removal_policy=RemovalPolicy.RETAIN),
            on_create=cr.AwsSdkCall(service="SecurityHub", action="createActionTarget", parameters={
                "Name": CUSTOM_ACTION_NAME, "Id": CUSTOM_ACTION_ID,
                "Description": "Re-encrypt under the customer-managed key, with on-call approval"},
                physical_resource_id=cr.PhysicalResourceId.of(action_arn)),
            on_delete=cr.AwsSdkCall(service="SecurityHub", action="deleteActionTarget", parameters={"ActionTargetArn": action_arn}),
            policy=cr.AwsCustomResourcePolicy.from_statements([iam.PolicyStatement(
                actions=["securityhub:CreateActionTarget", "securityhub:DeleteActionTarget"], resources=[action_arn, hub_arn])]),
        )
        events.Rule(self, "RemediateActionRule", description="Security Hub custom action: Remediate with CMK",
                    event_pattern=events.EventPattern(source=["aws.securityhub"],
                                                      detail_type=["Security Hub Findings - Custom Action"],
                                                      resources=[action_arn]),
                    targets=[targets.LambdaFunction(trigger)])
        return trigger

    def _executions(self) -> list[str]:
        return [f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:execution:{name}:*"
                for name in (CLUSTER_STATE_MACHINE, SNAPSHOT_STATE_MACHINE)]

    def _approval_endpoint(self) -> lambda_.Function:
        """The only way a person starts, approves or rejects: a function URL with IAM auth, whose role alone answers
        the workflows' task tokens, as the caller AWS verified."""
        machines = [self.cluster_workflow, self.snapshot_workflow]
        approval = self._function("Approval", "neptune_guard.handlers.approval.handler", APPROVAL_ROLE, Duration.seconds(30), 256, {
            # CloudFormation substitutes ${AWS::AccountId} and ${AWS::Partition} in the patterns.
            "APPROVER_PRINCIPALS": Fn.sub(",".join(self.config.approver_principals)),
            # The deployment's, not the requester's: the member role and the shortest safety durations.
            "REMEDIATION_ROLE_NAME": self.config.remediation_role_name,
            "APPROVAL_TIMEOUT_SECONDS": str(self.config.approval_timeout_seconds),
            "SOAK_SECONDS": str(self.config.soak_seconds), "METRICS_SETTLE_SECONDS": str(self.config.metrics_settle_seconds),
        }, function_name=APPROVAL_ROLE)  # named, so that guardrails/scp/protect-approvals.json can name it
        approval.add_to_role_policy(iam.PolicyStatement(
            sid="StartTheWorkflows", resources=[m.state_machine_arn for m in machines], actions=["states:StartExecution"]))
        # SendTaskSuccess and SendTaskFailure have no resource type (Service Authorization Reference, Step Functions):
        # IAM evaluates them on "*", and the task token is the capability. This role reads tokens only from the
        # histories of our two state machines (below), and the endpoint answers only their executions.
        approval.add_to_role_policy(iam.PolicyStatement(
            sid="AnswerTheirTaskTokens", resources=["*"], actions=["states:SendTaskSuccess", "states:SendTaskFailure"]))
        approval.add_to_role_policy(iam.PolicyStatement(
            sid="ReadTheirExecutions", actions=["states:DescribeExecution", "states:GetExecutionHistory"],
            resources=self._executions()))
        # An execution no person started is stopped at its first approval and started again as the approver's.
        approval.add_to_role_policy(iam.PolicyStatement(
            sid="AdoptExecutionsNoPersonStarted", actions=["states:StopExecution"], resources=self._executions()))
        # The marks that let the member role act on what a verified approval covers (approval_marks.py).
        self._may_assume(approval.role, approval_marks.MARKS_ROLE)
        url = approval.add_function_url(auth_type=lambda_.FunctionUrlAuthType.AWS_IAM)
        CfnOutput(self, "ApprovalUrl", value=url.url, description="The approval endpoint: NEPTUNE_GUARD_APPROVAL_URL for on-call")
        return approval

    def _approver_policy(self) -> iam.ManagedPolicy:
        """For on-call engineers: call the approval endpoint (by its URL only, signed), and read the executions they
        answer. No states:SendTask* and no StartExecution: the endpoint does that, as them."""
        machines = [self.cluster_workflow, self.snapshot_workflow]
        endpoint = self.approval.function_arn
        return iam.ManagedPolicy(self, "ApproverPolicy", managed_policy_name="NeptuneGuardApprover", statements=[
            iam.PolicyStatement(sid="CallTheApprovalEndpoint", actions=["lambda:InvokeFunctionUrl"], resources=[endpoint],
                                conditions={"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}),
            # Function URLs created since October 2025 also need lambda:InvokeFunction; only through the URL, so that
            # nobody can invoke the endpoint directly with a request context of their own making.
            iam.PolicyStatement(sid="InvokeItOnlyThroughItsUrl", actions=["lambda:InvokeFunction"], resources=[endpoint],
                                conditions={"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}),
            iam.PolicyStatement(sid="ReadExecutions", actions=["states:DescribeExecution", "states:GetExecutionHistory"],
                                resources=self._executions()),
            iam.PolicyStatement(sid="ListExecutions", actions=["states:ListExecutions"], resources=[m.state_machine_arn for m in machines]),
            # `plan`: read a member account's cluster or snapshot through its read-only planner role.
            iam.PolicyStatement(sid="PlanInMemberAccounts", actions=["sts:AssumeRole"],
                                resources=[f"arn:{Aws.PARTITION}:iam::*:role/{PLANNER_ROLE}"],
                                conditions={"StringEquals": {"aws:ResourceOrgID": self.config.organization_id}}),
        ])

    def _change_scan(self) -> lambda_.Function:
        """Findings within minutes: the members forward their changes (stacks/member_events.py) to a bus that only the
        Organization may put events on; a queue collects them, and the targeted scan takes them in batches (the
        batching window is the debounce) and scans each account-region they name once, as the detector's role."""
        config = self.config
        bus = events.EventBus(self, "ChangeBus", event_bus_name=CHANGE_BUS)
        bus.add_to_resource_policy(iam.PolicyStatement(
            sid="OrganizationMembersForwardChanges", principals=[iam.AnyPrincipal()], actions=["events:PutEvents"],
            resources=[bus.event_bus_arn], conditions={"StringEquals": {"aws:PrincipalOrgID": config.organization_id}}))
        dead_letters = sqs.Queue(self, "ChangeScansFailed", encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
                                 retention_period=Duration.days(14))
        queue = sqs.Queue(self, "ChangeScans", encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
                          visibility_timeout=Duration.minutes(30),  # six times the function's timeout, as Lambda advises
                          dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letters, max_receive_count=3))
        events.Rule(self, "ScanOnChange", event_bus=bus, description="Neptune Guard: rescan an account-region after a change",
                    event_pattern=events.EventPattern(source=sorted(WATCHED), detail_type=[CLOUDTRAIL]),
                    targets=[targets.SqsQueue(queue)])
        function = self._function("ChangeScan", "neptune_guard.handlers.change_scan.handler", None, Duration.minutes(5), 1024, {
            # The scheduled scan's scope: events of accounts and regions outside it are set aside.
            "ACCOUNTS": config.accounts, "REGIONS": config.regions, "CONCURRENCY": str(config.concurrency),
            "READ_NEPTUNE_ANALYTICS": str(config.read_neptune_analytics).lower(),
            "AUDIT_ROLE_NAME": config.audit_role_name, "PUBLISH": "true", "POWERTOOLS_SERVICE_NAME": "change-scan",
        }, role=self.detector.role)
        # At most five batches at once: a member flooding the bus with changes cannot take the account's Lambda concurrency
        # from the approval and remediation functions. Only the messages of what was not scanned in full come back.
        function.add_event_source(lambda_events.SqsEventSource(
            queue, batch_size=100, max_batching_window=Duration.seconds(config.change_batching_seconds), max_concurrency=5,
            report_batch_item_failures=True))
        alarm_action = cloudwatch_actions.SnsAction(self.topic)
        for alarm in (
            cloudwatch.Alarm(self, "ChangeScanErrors", metric=function.metric_errors(period=Duration.minutes(15)), threshold=1,
                             evaluation_periods=1, treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                             alarm_description="The targeted scan after a change failed"),
            cloudwatch.Alarm(self, "ChangesNotScanned", metric=dead_letters.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(15)), threshold=1, evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description="Changes whose account-region could not be rescanned after three tries (see the change-scan log)"),
        ):
            alarm.add_alarm_action(alarm_action)
        return function

    def _stack_set(self, construct_id: str, name: str, template: dict, capability: str, parameters: dict[str, str],
                   regions: list[str]) -> cloudformation.CfnStackSet:
        """A service-managed StackSet of a member template, in every account of the configured OUs (and those that join
        them), given the security account's id and `parameters`."""
        config = self.config
        return cloudformation.CfnStackSet(
            self, construct_id, stack_set_name=name, permission_model="SERVICE_MANAGED",
            call_as=config.stack_set_call_as, capabilities=[capability],
            auto_deployment=cloudformation.CfnStackSet.AutoDeploymentProperty(enabled=True, retain_stacks_on_account_removal=False),
            template_body=json.dumps(template),
            parameters=[cloudformation.CfnStackSet.ParameterProperty(parameter_key=key, parameter_value=value)
                        for key, value in {"SecurityAccountId": Aws.ACCOUNT_ID, **parameters}.items()],
            stack_instances_group=[cloudformation.CfnStackSet.StackInstancesProperty(
                deployment_targets=cloudformation.CfnStackSet.DeploymentTargetsProperty(
                    organizational_unit_ids=list(config.organizational_unit_ids)),
                regions=regions,
            )],
            operation_preferences=cloudformation.CfnStackSet.OperationPreferencesProperty(
                failure_tolerance_percentage=10, max_concurrent_percentage=25, region_concurrency_type="PARALLEL"),
        )

    def _member_events_stack_set(self, template: dict) -> cloudformation.CfnStackSet:
        stack_set = self._stack_set(
            "MemberEvents", "NeptuneGuardMemberEvents", template, "CAPABILITY_IAM",
            {"SecurityRegion": Aws.REGION, "OrganizationId": self.config.organization_id,
             "ReplicatorSigningProfileVersionArn": self.signing_profile.signing_profile_version_arn},
            list(self.config.change_regions))  # regional: every region changes are forwarded from and replicators run in
        stack_set.node.add_dependency(self.steps.role)  # its replicator creator role trusts the workflow role
        return stack_set

    def _member_stack_set(self, member_template: dict) -> cloudformation.CfnStackSet:
        stack_set = self._stack_set("MemberRoles", "NeptuneGuardMemberRoles", member_template, "CAPABILITY_NAMED_IAM",
                                    {"OrganizationId": self.config.organization_id},
                                    [self.config.stack_set_region])  # IAM roles are global: one region is enough
        for function in (self.detector, self.steps, self.trigger):  # member trust policies name these roles
            stack_set.node.add_dependency(function.role)
        return stack_set

    def _suppressions(self) -> None:
        NagSuppressions.add_stack_suppressions(self, [
            {"id": "AwsSolutions-IAM5", "reason": (
                "Wildcards are limited to: sts:AssumeRole on a member role name in any account of the Organization (the "
                "member trust policies also require aws:PrincipalOrgID), for the functions and, for on-call's plan, the read-only "
                "planner role; X-Ray and CloudWatch Logs delivery, which have no "
                "resource-level permissions; organizations:ListAccounts, which has none either; Lambda invoke of the step "
                "function's versions; log streams of the function's own log group; reading the executions of the two "
                "remediation state machines (execution:<state machine name>:*, whose names are not known in advance), for "
                "the approval endpoint and the approver policy; states:SendTaskSuccess/SendTaskFailure for the approval endpoint, "
                "which have no resource type (the task token is the capability, and the endpoint reads tokens only from "
                "our state machines' executions); the scheduled scan's run files in its own bucket (runs/*, written per run "
                "under a name not known in advance) and its Distributed Map's child executions (execution:"
                "NeptuneGuardScheduledScan/*, named by Step Functions).")},
            {"id": "AwsSolutions-L1", "reason": (
                "python3.13 is the runtime the code and the Powertools v3 public layer are built and tested for.")},
            {"id": "AwsSolutions-IAM4", "reason": (
                "Only the CDK-managed custom resource provider (which creates the Security Hub custom action) uses "
                "AWSLambdaBasicExecutionRole, for its own logs; Neptune Guard's functions have inline least-privilege roles.")},
        ])
