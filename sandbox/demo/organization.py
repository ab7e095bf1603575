"""Seeding the local AWS with an Organization described as data (the `demo --scenario` file format).

Everything is created through the public APIs, as the management account would: the Organization
and its accounts, then, through each account's OrganizationAccountAccessRole, the Neptune Guard
member roles (what the StackSet deploys), KMS keys, Neptune clusters, instances and snapshots.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from unittest import mock

import boto3
from moto.organizations import utils as organizations_utils

from neptune_guard import aws
from neptune_guard.remediate import live_cutover

from sandbox.aws import write_activity

MANAGEMENT_ACCOUNT = "123456789012"  # moto's default caller
AUDIT_ROLE = "NeptuneGuardAudit"
REMEDIATION_ROLE = "NeptuneGuardRemediation"
MARKS_ROLE = "NeptuneGuardApprovalMarks"
TRIGGER_ACCESS_ROLE = "NeptuneGuardTriggerAccess"
PLANNER_ROLE = "NeptuneGuardPlanner"

DEMO_SCENARIO = {
    "accounts": {
        "111111111111": {
            "us-east-1": {
                "keys": {"alias/neptune-cmk": {"state": "Enabled", "shared_with": ["333333333333"]}},
                "clusters": {
                    "orders-graph": {
                        "encryption": "none",
                        "instances": {"orders-graph-1": "db.r6g.large", "orders-graph-2": "db.r6g.large"},
                        "deletion_protection": True,
                        "backup_retention": 7,
                        "log_exports": ["audit"],
                        "tags": {"team": "orders", "env": "prod"},
                        "storage_type": "iopt1",
                        "instance_tags": {"orders-graph-1": {"role": "writer"}},
                        "custom_endpoints": {"orders-analytics": {"type": "READER", "members": ["orders-graph-2"]}},
                    },
                    "recs-graph": {"encryption": "aws-managed", "instances": {"recs-graph-1": "db.r6g.xlarge"}},
                    "payments-graph": {"encryption": "none", "instances": {"payments-graph-1": "db.r6g.large"}, "streams": True,
                                       "data_model": "property-graph", "writes_during_remediation": True},
                    "audit-triples": {"encryption": "aws-managed", "instances": {"audit-triples-1": "db.r6g.large"},
                                      "data_model": "rdf", "writes_during_remediation": True},
                    "fraud-graph": {"encryption": "alias/neptune-cmk", "instances": {"fraud-graph-1": "db.r6g.large"}},
                },
                "snapshots": {"orders-before-migration": "orders-graph",
                              "recs-weekly": {"cluster": "recs-graph", "shared_with": ["333333333333"]}},
                "other_engines": {"billing-aurora": "aurora-postgresql"},
                "graphs": {"recs-analytics": {"encryption": "aws-owned", "tags": {"team": "recs"}, "snapshots": ["recs-analytics-weekly"]},
                           "fraud-analytics": {"encryption": "alias/neptune-cmk"}},
            },
            "eu-west-1": {
                "keys": {"alias/neptune-cmk": {"state": "Enabled"}},
                "clusters": {"catalog-graph": {"encryption": "alias/neptune-cmk", "instances": {"catalog-1": "db.t4g.medium"}}},
                "snapshots": {"catalog-nightly": "catalog-graph"},
            },
        },
        "222222222222": {
            "us-east-1": {
                "keys": {"alias/retired-key": {"state": "Disabled"}, "alias/neptune-cmk": {"state": "Enabled"}},
                "clusters": {
                    "kyc-graph": {"encryption": "alias/retired-key", "instances": {"kyc-graph-1": "db.r6g.large"}},
                    "search-graph": {"encryption": "aws-managed", "instances": {"search-graph-1": "db.r6g.large"}, "port": 8183},
                },
                "snapshots": {},
            },
            "eu-west-1": {
                "keys": {"alias/leaving-key": {"state": "PendingDeletion"}, "alias/neptune-cmk": {"state": "Enabled"}},
                "clusters": {"audit-graph": {"encryption": "alias/leaving-key", "instances": {"audit-graph-1": "db.r6g.large"}}},
                "snapshots": {"audit-archive": "audit-graph"},
            },
        },
        "333333333333": {
            "us-east-1": {
                "keys": {"alias/neptune-cmk": {"state": "Enabled"}},
                "clusters": {
                    "iot-graph": {"encryption": "none", "instances": {"iot-graph-1": "db.r6g.large"}},
                    "shared-key-graph": {"encryption": "arn:aws:kms:us-east-1:111111111111:alias/neptune-cmk", "instances": {}},
                },
                "snapshots": {"iot-export": "iot-graph"},
            },
            "eu-west-1": {"keys": {"alias/neptune-cmk": {"state": "Enabled"}}, "clusters": {}, "snapshots": {}},
        },
    },
    "target_key": "alias/neptune-cmk",
}


def alias_name(name: str) -> str:
    return name if name.startswith("alias/") else f"alias/{name}"


def member_trust_policy() -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": f"arn:aws:iam::{MANAGEMENT_ACCOUNT}:root"}}
            ],
        }
    )


@contextmanager
def _account_id_for_next_create(account_id: str):
    # CreateAccount picks a random id; a scenario names its accounts, so hand moto the id it should pick.
    with mock.patch.object(organizations_utils, "make_random_account_id", return_value=account_id):
        yield


def create_organization(session: boto3.Session, account_ids: list[str]) -> dict[str, str]:
    """The Organization and its accounts: {scenario id: id AWS gave}. In-process the ids are the
    scenario's; a server in another process picks its own, and the scenario follows them."""
    organizations = session.client("organizations", region_name="us-east-1")
    organizations.create_organization(FeatureSet="ALL")
    created = {MANAGEMENT_ACCOUNT: MANAGEMENT_ACCOUNT}
    for account_id in account_ids:
        if account_id == MANAGEMENT_ACCOUNT:
            continue
        with _account_id_for_next_create(account_id):
            status = organizations.create_account(Email=f"aws+{account_id}@example.com", AccountName=f"member-{account_id}")
        created[account_id] = status["CreateAccountStatus"]["AccountId"]
    return created


def account_session(session: boto3.Session, account_id: str) -> boto3.Session:
    if account_id == MANAGEMENT_ACCOUNT:
        return session
    return aws.assume_role(session, account_id, "OrganizationAccountAccessRole", "us-east-1", "sandbox-seeder")


def create_member_roles(session: boto3.Session) -> None:
    """The member stack's roles, and the replicator's permissions boundary, which the local Neptune evaluates."""
    iam = session.client("iam", region_name="us-east-1")
    for role in (AUDIT_ROLE, REMEDIATION_ROLE, TRIGGER_ACCESS_ROLE, PLANNER_ROLE, MARKS_ROLE):
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=member_trust_policy())
    account = session.client("sts").get_caller_identity()["Account"]
    iam.create_policy(PolicyName=live_cutover.BOUNDARY, PolicyDocument=json.dumps(live_cutover.boundary_policy("aws", account)))


def scenario_regions(scenario: dict) -> tuple[str, ...]:
    return tuple(sorted({region for regions in scenario["accounts"].values() for region in regions}))


def deploy_member_code_signing(session: boto3.Session, profile_version_arn: str, regions: tuple[str, ...]) -> None:
    """The regional member stack's replicator code signing (stacks/member_events.py), in each region of every account
    of the Organization that holds the member roles: a configuration that accepts only the security stack's signing
    profile and enforces it, and the role that alone may create a replicator under it."""
    accounts = [a["Id"] for page in session.client("organizations").get_paginator("list_accounts").paginate() for a in page["Accounts"]]
    for account in accounts:
        member = session if account == MANAGEMENT_ACCOUNT else account_session(session, account)
        iam = member.client("iam")
        try:
            iam.get_role(RoleName=REMEDIATION_ROLE)
        except iam.exceptions.NoSuchEntityException:
            continue
        for region in regions:
            config = member.client("lambda", region_name=region).create_code_signing_config(
                Description="Neptune Guard replicator: only code Neptune Guard signed",
                AllowedPublishers={"SigningProfileVersionArns": [profile_version_arn]},
                CodeSigningPolicies={"UntrustedArtifactOnDeployment": "Enforce"})["CodeSigningConfig"]["CodeSigningConfigArn"]
            creator = live_cutover.CREATOR_PREFIX + region
            iam.create_role(RoleName=creator, AssumeRolePolicyDocument=member_trust_policy())
            iam.put_role_policy(RoleName=creator, PolicyName="CreateReplicators",
                                PolicyDocument=json.dumps(live_cutover.creator_policy("aws", region, account, config)))


def _key_policy(account_id: str, shared_with: list[str]) -> str:
    """The default key policy (the account's root may do everything), plus, for a key that snapshots shared with
    other accounts are re-encrypted under, what those accounts need to restore them.
    https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html"""
    statements = [{"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                   "Action": "kms:*", "Resource": "*"}]
    if shared_with:
        statements.append({"Sid": "SharedSnapshotRestore", "Effect": "Allow",
                           "Principal": {"AWS": [f"arn:aws:iam::{a}:root" for a in shared_with]},
                           "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:CreateGrant"], "Resource": "*"})
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def _create_key(kms, alias: str, state: str, account_id: str, shared_with: list[str]) -> str:
    key_id = kms.create_key(Description=f"Neptune Guard sandbox key {alias}", Policy=_key_policy(account_id, shared_with))["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    if state == "Disabled":
        kms.disable_key(KeyId=key_id)
    elif state == "PendingDeletion":
        kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    return key_id


def _encryption_arguments(encryption: str) -> dict:
    if encryption == "none":
        return {"StorageEncrypted": False}
    if encryption == "aws-managed":
        return {"StorageEncrypted": True}
    key = encryption if encryption.startswith("arn:") else alias_name(encryption)
    return {"StorageEncrypted": True, "KmsKeyId": key}


def _streams_network(session: boto3.Session, neptune, region: str, cluster_id: str) -> dict:
    """A cluster with Neptune Streams on, in the region's default VPC: its own parameter group (neptune_streams 1), a
    subnet group over the default subnets, and a security group that admits the application's subnet."""
    ec2 = session.client("ec2", region_name=region)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]]
    group = ec2.create_security_group(GroupName=f"{cluster_id}-db", Description="the application's database", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 8182, "ToPort": 8182, "IpRanges": [{"CidrIp": "172.31.0.0/16"}]}])
    neptune.create_db_subnet_group(DBSubnetGroupName=f"{cluster_id}-subnets", DBSubnetGroupDescription="default VPC", SubnetIds=subnets)
    neptune.create_db_cluster_parameter_group(DBClusterParameterGroupName=f"{cluster_id}-streams", DBParameterGroupFamily="neptune1.3",
                                              Description="Neptune Streams on")
    neptune.modify_db_cluster_parameter_group(DBClusterParameterGroupName=f"{cluster_id}-streams", Parameters=[
        {"ParameterName": "neptune_streams", "ParameterValue": "1", "ApplyMethod": "pending-reboot"}])
    return {"VpcSecurityGroupIds": [group], "DBSubnetGroupName": f"{cluster_id}-subnets",
            "DBClusterParameterGroupName": f"{cluster_id}-streams"}


def seed_region(session: boto3.Session, region: str, spec: dict, account_id: str | None = None) -> None:
    if spec.get("security_hub", True):
        session.client("securityhub", region_name=region).enable_security_hub(EnableDefaultStandards=False)
    kms = session.client("kms", region_name=region)
    neptune = session.client("neptune", region_name=region)
    account = account_id or aws.caller_account(session)
    for alias, key in spec.get("keys", {}).items():
        _create_key(kms, alias_name(alias), key.get("state", "Enabled"), account, list(key.get("shared_with", [])))
    for cluster_id, cluster in spec.get("clusters", {}).items():
        arguments = {
            "DBClusterIdentifier": cluster_id,
            "Engine": "neptune",
            "DeletionProtection": bool(cluster.get("deletion_protection", False)),
            "BackupRetentionPeriod": int(cluster.get("backup_retention", 1)),
            "Tags": [{"Key": k, "Value": v} for k, v in cluster.get("tags", {}).items()],
            **_encryption_arguments(cluster.get("encryption", "none")),
        }
        if cluster.get("port"):
            arguments["Port"] = int(cluster["port"])
        if cluster.get("log_exports"):
            arguments["EnableCloudwatchLogsExports"] = list(cluster["log_exports"])
        if cluster.get("iam_auth"):
            arguments["EnableIAMDatabaseAuthentication"] = True
        if cluster.get("storage_type"):
            arguments["StorageType"] = cluster["storage_type"]
        if cluster.get("streams"):
            arguments.update(_streams_network(session, neptune, region, cluster_id))
        if cluster.get("global_cluster"):
            # The global database first, then the cluster as its primary (both are AWS's ways): moto looks a source
            # cluster up in us-east-1 only, so creating the global database from an existing cluster fails elsewhere.
            neptune.create_global_cluster(GlobalClusterIdentifier=cluster["global_cluster"], Engine="neptune",
                                          StorageEncrypted=arguments["StorageEncrypted"])
            arguments["GlobalClusterIdentifier"] = cluster["global_cluster"]
        neptune.create_db_cluster(**arguments)
        instance_tags = cluster.get("instance_tags", {})
        for tier, (instance_id, instance_class) in enumerate(cluster.get("instances", {}).items()):
            neptune.create_db_instance(
                DBInstanceIdentifier=instance_id,
                DBInstanceClass=instance_class,
                Engine="neptune",
                DBClusterIdentifier=cluster_id,
                PromotionTier=tier,
                Tags=[{"Key": k, "Value": v} for k, v in instance_tags.get(instance_id, {}).items()],
            )
        for endpoint_id, endpoint in cluster.get("custom_endpoints", {}).items():
            neptune.create_db_cluster_endpoint(DBClusterIdentifier=cluster_id, DBClusterEndpointIdentifier=endpoint_id,
                                               EndpointType=endpoint["type"], StaticMembers=list(endpoint.get("members", [])))
        if cluster.get("writes_during_remediation"):
            write_activity.keep_writing(account_id or aws.caller_account(session), region, cluster_id)
    for snapshot_id, source in spec.get("snapshots", {}).items():
        source = source if isinstance(source, dict) else {"cluster": source}
        neptune.create_db_cluster_snapshot(DBClusterSnapshotIdentifier=snapshot_id, DBClusterIdentifier=source["cluster"])
        if source.get("shared_with"):
            neptune.modify_db_cluster_snapshot_attribute(DBClusterSnapshotIdentifier=snapshot_id, AttributeName="restore",
                                                         ValuesToAdd=list(source["shared_with"]))
    if spec.get("graphs"):
        seed_graphs(session, region, spec["graphs"])
    rds = session.client("rds", region_name=region)
    for cluster_id, engine in spec.get("other_engines", {}).items():
        rds.create_db_cluster(DBClusterIdentifier=cluster_id, Engine=engine, MasterUsername="admin", MasterUserPassword="sandbox-pw-1")


def seed_graphs(session: boto3.Session, region: str, graphs: dict) -> None:
    """Neptune Analytics graphs, each with its snapshots. "aws-owned" creates a graph without kmsKeyIdentifier; a key
    alias is given to CreateGraph as its key's ARN, the only form the API takes."""
    client = session.client("neptune-graph", region_name=region)
    kms = session.client("kms", region_name=region)
    for name, graph in graphs.items():
        arguments = {"graphName": name, "provisionedMemory": 16, "deletionProtection": False, "tags": graph.get("tags", {})}
        encryption = graph.get("encryption", "aws-owned")
        if encryption != "aws-owned":
            arguments["kmsKeyIdentifier"] = kms.describe_key(KeyId=encryption if encryption.startswith("arn:")
                                                             else alias_name(encryption))["KeyMetadata"]["Arn"]
        graph_id = client.create_graph(**arguments)["id"]
        for snapshot_name in graph.get("snapshots", []):
            client.create_graph_snapshot(graphIdentifier=graph_id, snapshotName=snapshot_name)


def seed(scenario: dict, session: boto3.Session | None = None) -> None:
    """Create the scenario's Organization and resources in the (mocked) AWS."""
    session = session or boto3.Session(region_name="us-east-1")
    write_activity.stop_all()
    accounts = scenario["accounts"]
    actual = create_organization(session, list(accounts))
    if MANAGEMENT_ACCOUNT not in accounts:
        # Service-managed StackSets skip the management account; the team deploys the member stack there
        # by hand when it wants that account scanned, as this local Organization does.
        create_member_roles(session)
    for account_id, regions in accounts.items():
        member = account_session(session, actual[account_id])
        create_member_roles(member)
        for region, spec in regions.items():
            seed_region(member, region, spec, actual[account_id])
