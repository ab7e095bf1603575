"""Executed IAM: the roles the CDK app synthesizes, deployed into the local AWS, and every request made with
their credentials authorized as IAM authorizes it, by sandbox/aws/iam_policy.py.

moto's own enforcement evaluates most services against `*` and ignores most conditions, so it cannot tell a
tag-scoped grant from an open one. This stand-in, built from the AWS references below, takes moto's hook
(`_authenticate_and_authorize_normal_action`, which every in-process request but Lambda's Invoke passes) and,
for a request signed with temporary credentials of a deployed role:

1. names the action `<service prefix>:<operation>` (the signing name, as the Service Authorization Reference
   prefixes it: `monitoring` is `cloudwatch`);
2. names the resources the request acts on, from its parameters, keeping only the resource types the
   Service Authorization Reference lists for that action (the copy cfn-lint ships,
   `cfnlint/data/AdditionalSpecs/Policies.json`); an action with no resource type is evaluated on `*`, and a
   list call with no identifier on `<type>:*`. Every resource must be allowed, as IAM requires;
3. builds the request context: `aws:ResourceTag/*` and the service's own `<prefix>:<type>-tag/*` keys from the
   resource's current tags, `aws:RequestTag/*` and `aws:TagKeys` from the request, `aws:PrincipalOrgID`,
   `aws:PrincipalArn`, `iam:PassedToService`, and for Lambda function URLs `lambda:FunctionUrlAuthType` and
   `lambda:InvokedViaFunctionUrl`;
4. evaluates the role's identity policies; for `sts:AssumeRole` also the target role's trust policy (the
   principal is the calling role; its organization's id is `aws:PrincipalOrgID`), and both must allow;
5. refuses with AccessDenied what is not allowed, and records every decision.

Services authorize more than the request's own action, and so does this stand-in (`ExecutedIAM._implied`): RDS
checks `iam:PassRole` (with `iam:PassedToService`) when a role is added to a cluster, Lambda when a function is
created (and `lambda:TagResource` for its tags, the EC2 reads for its VPC configuration), EC2 `ec2:CreateTags` (with
`ec2:CreateAction`) and RDS `rds:AddTagsToResource` when a resource is tagged on creation, IAM `iam:TagRole` for a
role created with tags.
`iam:PermissionsBoundary` is the boundary a CreateRole sets or the role holds. A role a deployed role made at run
time (the replicator's) is trusted as its own trust policy says.
Lambda's Invoke bypasses moto's hook: a state machine's role is evaluated on the function its definition names
when it is deployed, and a function's own role on each invocation's requests (the Lambda service assumes it,
if its trust policy lets lambda.amazonaws.com). What moto does not emulate is not evaluated: KMS calls RDS
makes with the caller's grants (`kms:ViaService`),
the Lambda runtime's and Step Functions' own log and trace delivery, and CloudFormation's deployment-time
calls. `unexercised()` lists those grants, and docs/iam.md says which documentation requires each.

Requests signed with any other credentials (the tests' and the demo's own set-up of the local AWS) are not
evaluated. Code under test runs as a role: `acting_as()` gives a thread (and the pool threads it starts) the
credentials that sessions without explicit ones resolve, as the Lambda runtime gives a function its role's.

https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html
https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html
https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html
https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from unittest import mock
from urllib.parse import unquote

import boto3
import botocore.session
from botocore.credentials import Credentials, ReadOnlyCredentials

from neptune_guard.remediate import live_cutover
from sandbox.aws import function_urls
from sandbox.aws.iam_policy import evaluate, resolve

PREFIXES = {"monitoring": "cloudwatch"}  # signing name -> the Service Authorization Reference's prefix
# API operations whose IAM action is named otherwise (Service Authorization Reference, AWS Lambda).
ACTIONS = {"lambda:Invoke": "lambda:InvokeFunction"}
_identity = threading.local()


def _authorization_data() -> dict:
    return json.loads(resources.files("cfnlint").joinpath("data/AdditionalSpecs/Policies.json").read_text())


class Denied(PermissionError):
    pass


@dataclass
class Role:
    arn: str
    trust: dict
    policies: list[dict]

    @property
    def account(self) -> str:
        return self.arn.split(":")[4]


@dataclass(frozen=True)
class Decision:
    role: str
    action: str
    resource: str
    allowed: bool
    reason: str


# Resolving the synthesized templates.


def managed_policy_arns(template: dict, account: str) -> dict[str, str]:
    """{logical id: ARN} of the template's named managed policies in `account` (a managed policy's Ref is its ARN)."""
    return {k: f"arn:aws:iam::{account}:policy{r['Properties'].get('Path', '/')}{r['Properties']['ManagedPolicyName']}"
            for k, r in template["Resources"].items() if r["Type"] == "AWS::IAM::ManagedPolicy" and "ManagedPolicyName" in r["Properties"]}


def template_roles(template: dict, account: str, region: str, parameters: dict[str, str],
                   physical: dict[str, str]) -> dict[str, Role]:
    """{logical id: Role} for a template deployed in `account`: each role's ARN (its RoleName, or its logical id when
    CloudFormation would name it), trust policy, and inline, attached and managed policies of the same template.
    `physical` maps logical ids to what the local deployment created (function, state machine and topic ARNs);
    any other resource's ARN is a stand-in naming its logical id."""
    items = template["Resources"]
    role_arns = {k: f"arn:aws:iam::{account}:role/{r['Properties'].get('RoleName', k)}"
                 for k, r in items.items() if r["Type"] == "AWS::IAM::Role"}
    references = {"AWS::Partition": "aws", "AWS::AccountId": account, "AWS::Region": region, **parameters,
                  **{k: k for k in items}, **physical, **{k: arn.rsplit("/", 1)[1] for k, arn in role_arns.items()},
                  **managed_policy_arns(template, account)}
    attributes = {}
    for logical, item in items.items():
        service = item["Type"].split("::")[1].lower()
        attributes[(logical, "Arn")] = role_arns.get(logical) or physical.get(logical) or f"arn:aws:{service}:{region}:{account}:{logical}"
        if item["Type"] == "AWS::S3::Bucket" and logical in physical:  # physical: the bucket's name, which its ARN holds alone
            attributes[(logical, "Arn")] = f"arn:aws:s3:::{physical[logical]}"
        if item["Type"] == "AWS::Lambda::CodeSigningConfig" and logical in physical:
            attributes[(logical, "CodeSigningConfigArn")] = physical[logical]
    roles = {logical: Role(arn, resolve(items[logical]["Properties"]["AssumeRolePolicyDocument"], references, attributes),
                           [resolve(p["PolicyDocument"], references, attributes) for p in items[logical]["Properties"].get("Policies", [])])
             for logical, arn in role_arns.items()}
    for item in items.values():
        if item["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for reference in item["Properties"].get("Roles", []):
                roles[reference["Ref"]].policies.append(resolve(item["Properties"]["PolicyDocument"], references, attributes))
    return roles


def deployed(value, account: str, region: str, physical: dict[str, str]):
    """A security-stack value (a policy document, a function's environment) as deployed: pseudo parameters, and Ref
    and Fn::GetAtt of the resources the local deployment created."""
    return resolve(value, {"AWS::Partition": "aws", "AWS::AccountId": account, "AWS::Region": region, **physical},
                   {(k, "Arn"): v for k, v in physical.items()})


def managed_policy(template: dict, name: str, account: str, region: str, physical: dict[str, str]) -> dict:
    """The resolved document of the customer-managed policy `name` (e.g. the approver policy people are given)."""
    item = next(r for r in template["Resources"].values()
                if r["Type"] == "AWS::IAM::ManagedPolicy" and r["Properties"].get("ManagedPolicyName") == name)
    return deployed(item["Properties"]["PolicyDocument"], account, region, physical)


# Credentials of a role, for the code that runs as it.


class _ThreadCredentials(Credentials):
    """The credentials of whatever identity the current thread acts as (see acting_as), else the environment's."""

    def __init__(self, fallback: ReadOnlyCredentials):
        self._fallback = fallback
        self.method = "sandbox-thread-identity"

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        return getattr(_identity, "credentials", None) or self._fallback

    access_key = property(lambda self: self.get_frozen_credentials().access_key)
    secret_key = property(lambda self: self.get_frozen_credentials().secret_key)
    token = property(lambda self: self.get_frozen_credentials().token)


@contextlib.contextmanager
def acting_as(credentials: ReadOnlyCredentials | None):
    previous = getattr(_identity, "credentials", None)
    _identity.credentials = credentials
    try:
        yield
    finally:
        _identity.credentials = previous


def role_credentials(session: boto3.Session, role_arn: str, session_name: str) -> ReadOnlyCredentials:
    """Temporary credentials of `role_arn`, issued by the local STS (as a service or a person obtains them)."""
    issued = session.client("sts").assume_role(RoleArn=role_arn, RoleSessionName=session_name)["Credentials"]
    return ReadOnlyCredentials(issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"])


# The authorizer.


@dataclass
class ExecutedIAM:
    roles: dict[str, Role]  # by ARN
    organization_id: str
    organization_accounts: set[str]
    decisions: list[Decision] = field(default_factory=list)
    _keys: dict[str, str | None] = field(default_factory=dict)  # access key id -> role ARN, None: not a deployed role's
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self._reference = _authorization_data()

    # Who asks.

    def _role_of_key(self, access_key: str) -> str | None:
        """The deployed role whose temporary credentials these are (keys are issued before they are used, and never
        reissued: an unknown key stays unknown)."""
        if access_key not in self._keys:
            from moto.sts.models import sts_backends

            issued = (a.role_arn for account in {r.account for r in self.roles.values()}
                      for a in sts_backends[account]["aws"].assumed_roles if a.access_key_id == access_key)
            self._keys[access_key] = next(issued, None)
        return self._keys[access_key]

    # Deciding.

    def decide(self, role_arn: str, action: str, resource: str, context: dict) -> Decision:
        role = self.roles[role_arn]
        resource_account = re.match(r"^arn:[\w-]+:[\w-]+:[\w-]*:(\d{12}):", resource)
        context = {"aws:PrincipalArn": role_arn, **({"aws:PrincipalOrgID": self.organization_id}
                                                    if role.account in self.organization_accounts else {}),
                   # IAM sets aws:ResourceOrgID to the Organization of the account that owns the resource.
                   **({"aws:ResourceOrgID": self.organization_id}
                      if resource_account and resource_account.group(1) in self.organization_accounts else {}), **context}
        decision = evaluate(role.policies, action, resource, context)
        allowed, reason = decision.allowed, decision.reason
        if allowed and action.lower() == "sts:assumerole":
            trusted = self.trusts(resource, {"AWS": role_arn}, context)
            allowed, reason = trusted.allowed, f"{reason}; trust policy of {resource}: {trusted.reason}"
        result = Decision(role_arn, action, resource, allowed, reason)
        with self._lock:
            self.decisions.append(result)
        return result

    def trusts(self, target_role_arn: str, principal: dict[str, str], context: dict):
        """Whether the trust policy of `target_role_arn` lets `principal` ({"AWS": role ARN} or {"Service": name}) assume it."""
        target = self.roles.get(target_role_arn)
        trust = target.trust if target is not None else _runtime_trust(target_role_arn)
        if trust is None:
            return _Verdict(False, "not a deployed role, nor one a deployed role made")
        statements = [s for s in trust["Statement"] if _principal_matches(s.get("Principal", {}), principal)]
        return evaluate([{"Statement": [{k: v for k, v in s.items() if k != "Principal"} | {"Resource": "*"} for s in statements]}],
                        "sts:AssumeRole", target_role_arn, context)

    def require(self, role_arn: str, action: str, resource: str, context: dict) -> None:
        decision = self.decide(role_arn, action, resource, context)
        if not decision.allowed:
            raise Denied(f"{role_arn} may not {action} on {resource}: {decision.reason}")

    # What was granted and what ran.

    def granted(self) -> set[tuple[str, str]]:
        """(role name, action) for every action a deployed role's Allow statements grant, wildcards expanded over the
        actions the Service Authorization Reference lists. A member role is one role in every account: by name."""
        granted = set()
        for role in self.roles.values():
            for policy in role.policies:
                for statement in _as_list(policy.get("Statement", [])):
                    if statement["Effect"] == "Allow":
                        for pattern in _as_list(statement.get("Action", [])):
                            granted |= {(_name(role.arn), action) for action in self._expand(pattern)}
        return granted

    def exercised(self) -> set[tuple[str, str]]:
        spelled = {action.lower(): action for _, action in self.granted()}
        return {(_name(d.role), spelled.get(d.action.lower(), d.action)) for d in self.decisions if d.allowed}

    def denied(self) -> list[Decision]:
        return [d for d in self.decisions if not d.allowed]

    def unexercised(self) -> set[tuple[str, str]]:
        return self.granted() - self.exercised()

    def _expand(self, pattern: str) -> list[str]:
        prefix, _, name = pattern.partition(":")
        actions = self._reference.get(prefix, {}).get("Actions", {})
        if "*" not in name and "?" not in name:
            return [pattern]
        regex = re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in name.lower()))
        return [f"{prefix}:{_canonical(prefix, a)}" for a in actions if regex.fullmatch(a)] or [pattern]

    # moto's hook.

    def authorize_moto_request(self, response) -> None:
        authorization = response.headers.get("Authorization", "")
        scope = re.search(r"Credential=([^/]+)/\d+/([^/]+)/([^/]+)/", authorization)
        if not scope:
            return
        access_key, region, signing_name = scope.groups()
        prefix = PREFIXES.get(signing_name, signing_name)
        action = ACTIONS.get(f"{prefix}:{response._get_action()}", f"{prefix}:{response._get_action()}")
        operation = action.split(":", 1)[1]
        role_arn = self._role_of_key(access_key)
        if role_arn is None or role_arn not in self.roles:
            return  # the local AWS's own set-up, not a deployed role
        if action.lower() == "sts:getcalleridentity":
            return  # needs no permission: https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html
        self._authorize(role_arn, action, prefix, operation, response, region)

    def authorize_s3_request(self, response, bucket: str | None, key: str | None) -> None:
        """S3 names its resources in the path, not the parameters: moto passes them, as it does to its own S3 check."""
        from moto.core.exceptions import AccessDeniedError

        scope = re.search(r"Credential=([^/]+)/", response.headers.get("Authorization", ""))
        role_arn = self._role_of_key(scope.group(1)) if scope else None
        if role_arn is None or role_arn not in self.roles:
            return
        action = f"s3:{response._get_action()}"
        resource = f"arn:aws:s3:::{bucket or '*'}" + (f"/{key}" if key else "")
        if not self.decide(role_arn, action, resource, {}).allowed:
            raise AccessDeniedError(user_arn=role_arn, action=action)

    def _authorize(self, role_arn: str, action: str, prefix: str, operation: str, response, region: str) -> None:
        account = response.current_account
        parameters = _parameters(response)
        for resource in self._resources(prefix, operation, parameters, region, account):
            context = {**_request_tags(parameters), **_resource_tags(prefix, resource, region, account),
                       **_boundary(action, parameters, account), **_code_signing(action, parameters)}
            decision = self.decide(role_arn, action, resource, context)
            if not decision.allowed:
                raise _denied(prefix, role_arn, action)
        for implied, resource, context in self._implied(role_arn, action, prefix, parameters, region, account):
            if not self.decide(role_arn, implied, resource, context).allowed:
                raise _denied(prefix, role_arn, implied)

    def _resources(self, prefix: str, operation: str, parameters: dict, region: str, account: str) -> list[str]:
        types = self._reference.get(prefix, {}).get("Actions", {}).get(operation.lower(), {}).get("Resources", [])
        if not types:
            return ["*"]
        named = [(t, a) for t, a in _named_resources(prefix, operation, parameters, region, account) if t in types]
        made = _EC2_MADE.get(operation) if prefix == "ec2" else None
        if made is not None and made not in {t for t, _ in named}:
            named.append((made, _wildcard(prefix, made, region, account)))  # the resource made: no id yet
        return [a for _, a in named] or [_wildcard(prefix, types[0], region, account)]

    def _implied(self, role_arn: str, action: str, prefix: str, parameters: dict, region: str, account: str) -> list[tuple[str, str, dict]]:
        """(action, resource, context) that the service authorizes besides the request's own action:
        - RDS adding a role to a cluster: `iam:PassRole` to rds.amazonaws.com;
          https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html
        - EC2 tagging on create: `ec2:CreateTags` on the new resource, with `ec2:CreateAction`;
          https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html
        - RDS (and Neptune) tagging on create: `rds:AddTagsToResource` on the new resource, with the request's tags;
          https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/security_iam_id-based-policy-examples-grant-permissions-tags-on-create.html
        - IAM creating a tagged role: `iam:TagRole`; https://docs.aws.amazon.com/IAM/latest/UserGuide/id_tags_roles.html
        - Lambda creating a function: `iam:PassRole` of its role to lambda.amazonaws.com, `lambda:TagResource` for its
          tags, and for a VPC configuration the three EC2 reads.
          https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html
          https://docs.aws.amazon.com/lambda/latest/dg/configuration-tags.html
          https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html ("User permissions")"""
        implied, tags = [], _request_tags(parameters)
        if action.lower() == "rds:addroletodbcluster":
            implied.append(("iam:PassRole", parameters["RoleArn"], {"iam:PassedToService": "rds.amazonaws.com"}))
        made = _EC2_MADE.get(action.split(":", 1)[1]) if prefix == "ec2" else None
        if made is not None and "aws:TagKeys" in tags:
            implied.append(("ec2:CreateTags", _wildcard(prefix, made, region, account), {**tags, "ec2:CreateAction": action.split(":", 1)[1]}))
        made = _RDS_MADE.get(action.split(":", 1)[1]) if prefix == "rds" else None
        if made is not None and "aws:TagKeys" in tags and isinstance(parameters.get(made[0]), str):
            implied.append(("rds:AddTagsToResource", f"arn:aws:rds:{region}:{account}:{made[1]}:{parameters[made[0]]}", tags))
        if action.lower() == "iam:createrole" and "aws:TagKeys" in tags:
            implied += [("iam:TagRole", r, tags) for r in self._resources(prefix, "CreateRole", parameters, region, account)]
        if action.lower() == "lambda:createfunction":
            function = self._resources(prefix, "CreateFunction", parameters, region, account)[0]
            implied.append(("iam:PassRole", parameters.get("Role", ""), {"iam:PassedToService": "lambda.amazonaws.com"}))
            if "aws:TagKeys" in tags:
                implied.append(("lambda:TagResource", function, tags))
            if parameters.get("VpcConfig"):
                implied += [(read, "*", {}) for read in ("ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs")]
        return implied

    # Function URLs (sandbox/aws/function_urls.py): the caller needs both permissions the Lambda reference names.

    def authorize_function_url(self, access_key: str, function_arn: str) -> None:
        role_arn = self._role_of_key(access_key)
        if role_arn is None or role_arn not in self.roles:
            return
        self.require(role_arn, "lambda:InvokeFunctionUrl", function_arn, {"lambda:FunctionUrlAuthType": "AWS_IAM"})
        self.require(role_arn, "lambda:InvokeFunction", function_arn, {"lambda:InvokedViaFunctionUrl": "true"})


@dataclass
class _Verdict:
    allowed: bool
    reason: str


def _name(role_arn: str) -> str:
    return role_arn.rsplit("/", 1)[1]


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


@functools.cache
def _operation_names(prefix: str) -> dict[str, str]:
    service = {"states": "stepfunctions", "monitoring": "cloudwatch"}.get(prefix, prefix)
    try:
        model = botocore.session.get_session().get_service_model(service)
    except Exception:
        return {}
    return {name.lower(): name for name in model.operation_names}


def _canonical(prefix: str, action: str) -> str:
    return _operation_names(prefix).get(action, action)


def _principal_matches(principal, wanted: dict[str, str]) -> bool:
    if principal == "*":
        return True
    for kind, value in wanted.items():
        names = _as_list(principal.get(kind, []))
        if value in names:
            return True
        if kind == "AWS" and f"arn:aws:iam::{value.split(':')[4]}:root" in names:
            return True  # the account: its identity policies decide, and they were evaluated
    return False


def _parameters(response) -> dict:
    """The request's parameters, flat: query and form parameters, a JSON body's top-level members, and URI labels."""
    parameters = {k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in (response.querystring or {}).items()}
    body = response.body
    if body and isinstance(body, (str, bytes)) and body.strip()[:1] in ("{", b"{"):
        try:
            parameters.update(json.loads(body))
        except ValueError:
            pass
    parameters.update({k: unquote(v) for k, v in (getattr(response, "uri_match", None) or {}).items()})
    return parameters


_RDS_IDENTIFIERS = {  # request parameter -> the resource type it names (the Amazon RDS / Neptune API references)
    "DBClusterIdentifier": "cluster", "DBInstanceIdentifier": "db", "DBClusterSnapshotIdentifier": "cluster-snapshot",
    "SourceDBClusterSnapshotIdentifier": "cluster-snapshot", "TargetDBClusterSnapshotIdentifier": "cluster-snapshot",
    "SnapshotIdentifier": "cluster-snapshot", "FinalDBSnapshotIdentifier": "cluster-snapshot",
    "DBClusterEndpointIdentifier": "cluster-endpoint", "OptionGroupName": "og",
    "DBSubnetGroupName": "subgrp", "DBClusterParameterGroupName": "cluster-pg", "DBParameterGroupName": "pg",
}


def _named_resources(prefix: str, operation: str, parameters: dict, region: str, account: str) -> list[tuple[str, str]]:
    """(resource type, ARN) of each resource the request names."""
    named = []
    if prefix == "rds":
        for parameter, kind in _RDS_IDENTIFIERS.items():
            value = parameters.get(parameter)
            if isinstance(value, str) and value:
                named.append((kind, value if value.startswith("arn:") else f"arn:aws:rds:{region}:{account}:{kind}:{value}"))
        if isinstance(parameters.get("ResourceName"), str):
            arn = parameters["ResourceName"]
            named.append((arn.split(":")[5], arn))
    elif prefix == "states":
        for parameter, kind in (("stateMachineArn", "statemachine"), ("executionArn", "execution")):
            if parameters.get(parameter):
                named.append((kind, parameters[parameter]))
    elif prefix == "kms" and parameters.get("KeyId"):
        named.append(("key", _key_arn(parameters["KeyId"], region, account)))
    elif prefix == "securityhub":
        named.append(("product", f"arn:aws:securityhub:{region}:{account}:product/{account}/default"))
        named.append(("hub", f"arn:aws:securityhub:{region}:{account}:hub/default"))
    elif prefix == "sts" and parameters.get("RoleArn"):
        named.append(("role", parameters["RoleArn"]))
    elif prefix == "lambda" and parameters.get("FunctionName"):
        name = parameters["FunctionName"]
        named.append(("function", name if name.startswith("arn:") else f"arn:aws:lambda:{region}:{account}:function:{name}"))
    elif prefix == "neptune-graph" and isinstance(parameters.get("resourceArn"), str):
        arn = parameters["resourceArn"]
        named.append((arn.split(":")[5].split("/")[0], arn))
    elif prefix == "sns" and parameters.get("TopicArn"):
        named.append(("topic", parameters["TopicArn"]))
    elif prefix == "ec2":
        if parameters.get("GroupId"):
            named.append(("security-group", f"arn:aws:ec2:{region}:{account}:security-group/{parameters['GroupId']}"))
        if parameters.get("VpcId"):
            named.append(("vpc", f"arn:aws:ec2:{region}:{account}:vpc/{parameters['VpcId']}"))
        for name, value in parameters.items():
            if re.fullmatch(r"ResourceId\.\d+", name) and isinstance(value, str) and value.startswith("sg-"):
                named.append(("security-group", f"arn:aws:ec2:{region}:{account}:security-group/{value}"))
    elif prefix == "iam" and parameters.get("RoleName"):
        named.append(("role", _role_arn(parameters["RoleName"], parameters.get("Path"), account)))
    return named


# What an RDS create makes: the parameter naming it, and its resource type (the Amazon RDS / Neptune API references).
_RDS_MADE = {"CreateDBCluster": ("DBClusterIdentifier", "cluster"), "RestoreDBClusterFromSnapshot": ("DBClusterIdentifier", "cluster"),
             "CreateDBInstance": ("DBInstanceIdentifier", "db"),
             "CreateDBClusterSnapshot": ("DBClusterSnapshotIdentifier", "cluster-snapshot"),
             "CopyDBClusterSnapshot": ("TargetDBClusterSnapshotIdentifier", "cluster-snapshot"),
             "CreateDBClusterEndpoint": ("DBClusterEndpointIdentifier", "cluster-endpoint")}
# The resource type an EC2 create makes (the Service Authorization Reference lists every type the action touches,
# alphabetically: it does not say which is made).
_EC2_MADE = {"CreateSecurityGroup": "security-group"}
_BOTOCORE_NAMES = {"states": "stepfunctions", "cloudwatch": "cloudwatch"}


@functools.cache
def _json_protocol(prefix: str) -> bool:
    try:
        model = botocore.session.get_session().get_service_model(_BOTOCORE_NAMES.get(prefix, prefix))
    except Exception:
        return False
    return model.metadata.get("protocol") in ("json", "rest-json")


def _denied(prefix: str, role_arn: str, action: str) -> Exception:
    """A denial in the service's protocol: EC2 answers `UnauthorizedOperation`, a JSON service 403
    `AccessDeniedException`, another query service (RDS, IAM, STS) the XML `AccessDenied`. https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html"""
    from moto.core.exceptions import AccessDeniedError, JsonRESTError, _RESTError

    if prefix == "ec2":  # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
        error = _RESTError("UnauthorizedOperation", f"You are not authorized to perform this operation. User: {role_arn} is not "
                                                    f"authorized to perform: {action}")
        error.code = 403
        return error
    if not _json_protocol(prefix):
        return AccessDeniedError(user_arn=role_arn, action=action)
    error = JsonRESTError("AccessDeniedException", f"User: {role_arn} is not authorized to perform: {action}")
    error.code = 403
    return error


def _runtime_trust(role_arn: str) -> dict | None:
    """The trust policy of a role a deployed role made while running (the streams path's replicator role). Its own
    requests go to Neptune's data plane, which this stand-in does not authorize."""
    match = re.fullmatch(r"arn:aws:iam::(\d{12}):role/(?:[\w+=,.@/-]*/)?([\w+=,.@-]+)", role_arn)
    role = _iam_role(match.group(2), match.group(1)) if match else None
    if role is None or role.arn != role_arn:
        return None
    document = role.assume_role_policy_document
    return json.loads(unquote(document)) if isinstance(document, str) else document


def _wildcard(prefix: str, kind: str, region: str, account: str) -> str:
    """Every resource of a type, in the ARN format of its service (IAM's have no region; EC2's and Neptune
    Analytics' end `<type>/<id>`)."""
    if prefix == "iam":
        return f"arn:aws:iam::{account}:{kind}/*"
    return f"arn:aws:{prefix}:{region}:{account}:{kind}{'/' if prefix in ('ec2', 'neptune-graph') else ':'}*"


def _iam_role(name: str, account: str):
    from moto.iam.models import iam_backends

    return next((r for r in iam_backends[account]["aws"].roles.values() if r.name == name), None)


def _role_arn(name: str, path: str | None, account: str) -> str:
    """A role's ARN holds its path: from the request that creates it, else from the role. A role that does not exist
    has no path to read: the stand-in evaluates `role/<name>`, so code must not count on reading a role before it
    has made it."""
    role = _iam_role(name, account)
    if role is not None:
        return role.arn
    return f"arn:aws:iam::{account}:role{path or '/'}{name}"


def _boundary(action: str, parameters: dict, account: str) -> dict:
    """iam:PermissionsBoundary: the boundary a CreateRole sets, or the one the role holds when its policy changes.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_iam-condition-keys.html#ck_PermissionsBoundary"""
    if action.lower() == "iam:createrole" and parameters.get("PermissionsBoundary"):
        return {"iam:PermissionsBoundary": parameters["PermissionsBoundary"]}
    if action.lower() in ("iam:putrolepolicy", "iam:deleterolepolicy", "iam:attachrolepolicy", "iam:detachrolepolicy") and parameters.get("RoleName"):
        role = _iam_role(parameters["RoleName"], account)
        boundary = getattr(role, "permissions_boundary_arn", None) if role is not None else None
        return {"iam:PermissionsBoundary": boundary} if boundary else {}
    return {}


def _code_signing(action: str, parameters: dict) -> dict:
    """lambda:CodeSigningConfigArn: the configuration a CreateFunction request names (absent when it names none).
    https://docs.aws.amazon.com/lambda/latest/dg/config-codesigning-policies.html"""
    if action.lower() == "lambda:createfunction" and parameters.get("CodeSigningConfigArn"):
        return {"lambda:CodeSigningConfigArn": parameters["CodeSigningConfigArn"]}
    return {}


def _key_arn(key_id: str, region: str, account: str) -> str:
    if key_id.startswith("arn:") and ":key/" in key_id:
        return key_id
    from moto.kms.models import kms_backends

    key_region = key_id.split(":")[3] if key_id.startswith("arn:") else region
    key_account = key_id.split(":")[4] if key_id.startswith("arn:") else account
    try:
        return kms_backends[key_account][key_region].describe_key(key_id).arn
    except Exception:
        return f"arn:aws:kms:{key_region}:{key_account}:key/{key_id}"


def _request_tags(parameters: dict) -> dict:
    """aws:RequestTag/<key> and aws:TagKeys from a request's tags (RDS form `Tags.Tag.N.Key`, or a JSON list)."""
    tags, keys = {}, []
    if isinstance(parameters.get("Tags"), dict):  # Lambda: a JSON map
        tags |= {str(k): str(v) for k, v in parameters["Tags"].items()}
    for name, value in parameters.items():
        match = re.fullmatch(r"(?:Tags\.(?:Tag|member)|TagSpecification\.\d+\.Tag|Tag)\.(\d+)\.Key", name)
        if match:
            tags[value] = parameters.get(f"{name[:-3]}Value", "")
        if re.fullmatch(r"TagKeys\.(?:member\.)?\d+", name):
            keys.append(value)
    keys += list(tags)
    context = {f"aws:RequestTag/{k}": v for k, v in tags.items()}
    if keys:
        context["aws:TagKeys"] = keys
    return context


_RDS_TAG_KEYS = {"cluster": "cluster-tag", "db": "db-tag", "cluster-snapshot": "cluster-snapshot-tag"}


def _resource_tags(prefix: str, arn: str, region: str, account: str) -> dict:
    """aws:ResourceTag/<key> (and RDS's own per-type tag keys) from the resource's tags in the local AWS."""
    if not arn.startswith("arn:") or arn.endswith("*"):
        return {}
    if prefix in ("ec2", "iam", "lambda"):
        return {f"aws:ResourceTag/{k}": v for k, v in _other_tags(prefix, arn, region, account).items()}
    if prefix != "rds":
        return {}
    from moto.rds.models import rds_backends

    try:
        tags = rds_backends[arn.split(":")[4]][arn.split(":")[3]].list_tags_for_resource(arn)
    except Exception:
        return {}  # a resource that does not exist (yet) has no tags
    kind = arn.split(":")[5]
    context = {f"aws:ResourceTag/{t['Key']}": t["Value"] for t in tags}
    if kind in _RDS_TAG_KEYS:
        context |= {f"rds:{_RDS_TAG_KEYS[kind]}/{t['Key']}": t["Value"] for t in tags}
    return context


def _other_tags(prefix: str, arn: str, region: str, account: str) -> dict:
    """The current tags of an EC2 security group, an IAM role or a Lambda function in the local AWS."""
    try:
        if prefix == "ec2" and ":security-group/" in arn:
            from moto.ec2.models import ec2_backends

            return dict(ec2_backends[account][region].tags.get(arn.rsplit("/", 1)[1], {}))
        if prefix == "iam" and ":role/" in arn:
            role = _iam_role(arn.rsplit("/", 1)[1], account)
            return {t["Key"]: t["Value"] for t in role.tags} if role is not None else {}
        if prefix == "lambda" and ":function:" in arn:
            from moto.awslambda.models import lambda_backends

            return dict(lambda_backends[account][region].get_function(arn.split(":")[6]).tags or {})
    except Exception:
        return {}  # a resource that does not exist (yet) has no tags
    return {}


# Deploying the synthesized roles and functions into the local AWS.

FUNCTIONS = {"neptune_guard.handlers.detector.handler": "neptune-guard-detector", "neptune_guard.handlers.scheduled_scan.handler": "neptune-guard-detector",
             "neptune_guard.handlers.steps.handler": "neptune-guard-steps",
             "neptune_guard.handlers.trigger.handler": "neptune-guard-trigger", "neptune_guard.handlers.approval.handler": "neptune-guard-approval",
             "neptune_guard.handlers.execution_ended.handler": "neptune-guard-execution-ended"}


def regional_roles(events_template: dict, account: str, region: str, parameters: dict[str, str], session: boto3.Session) -> dict[str, Role]:
    """{ARN: Role} of the replicator creator role the regional member stack makes in `account` and `region`, its
    policy resolved with the code-signing configuration made there (sandbox/demo/organization.py made both)."""
    lam = session.client("lambda", region_name=region)
    made = {c["Description"]: c["CodeSigningConfigArn"] for page in lam.get_paginator("list_code_signing_configs").paginate()
            for c in page["CodeSigningConfigs"]}
    physical = {k: made[i["Properties"]["Description"]] for k, i in events_template["Resources"].items()
                if i["Type"] == "AWS::Lambda::CodeSigningConfig"}
    roles = template_roles(events_template, account, region, parameters, physical).values()
    return {role.arn: role for role in roles if f":role/{live_cutover.CREATOR_PREFIX}" in role.arn}


def deploy(session: boto3.Session, security_template: dict, member_template: dict, region: str = "us-east-1",
           member_regions: tuple[str, ...] = ("us-east-1",)) -> tuple[ExecutedIAM, dict]:
    """The security stack's roles and functions in this (the security) account and the member stack's roles in every
    account of the Organization, as the app and its StackSets deploy them (the regional member stack's grants in
    `member_regions`); the workflows and the approval endpoint as sandbox/demo/workflows.py deploys them, on the
    synthesized roles. Returns the harness and the deployed ARNs (those of workflows.deploy, plus the "detector",
    "trigger" and "execution-ended" function names)."""
    from sandbox.demo import on_call, workflows
    from sandbox.demo.organization import account_session

    account = session.client("sts").get_caller_identity()["Account"]
    organizations = session.client("organizations", region_name="us-east-1")
    organization_id = organizations.describe_organization()["Organization"]["Id"]
    accounts = [a["Id"] for page in organizations.get_paginator("list_accounts").paginate() for a in page["Accounts"]]
    # The security stack as synthesized for this Organization: the tests synthesize it for an example organizationId.
    configured = member_template["Parameters"]["OrganizationId"]["Default"]
    security_template = json.loads(json.dumps(security_template).replace(configured, organization_id))
    items = security_template["Resources"]

    def function(name: str) -> str:
        return f"arn:aws:lambda:{region}:{account}:function:{name}"

    def machine(name: str) -> str:
        return f"arn:aws:states:{region}:{account}:stateMachine:{name}"

    physical = {}
    for logical, item in items.items():
        properties = item["Properties"]
        if item["Type"] == "AWS::Lambda::Function" and properties.get("Handler") in FUNCTIONS:
            physical[logical] = function(FUNCTIONS[properties["Handler"]])
        elif item["Type"] == "AWS::StepFunctions::StateMachine":
            physical[logical] = machine(properties["StateMachineName"])
        elif item["Type"] == "AWS::SNS::Topic":
            physical[logical] = f"arn:aws:sns:{region}:{account}:neptune-guard-on-call"
        elif item["Type"] == "AWS::S3::Bucket":
            physical[logical] = (workflows.replicator_bucket if logical.startswith("ReplicatorPackage") else workflows.runs_bucket)(account)
    security_roles = template_roles(security_template, account, region, {}, physical)

    def role_of(logical: str, attribute: str) -> str:
        return security_roles[items[logical]["Properties"][attribute]["Fn::GetAtt"][0]].arn

    function_roles = {FUNCTIONS[i["Properties"]["Handler"]]: role_of(k, "Role") for k, i in items.items()
                      if i["Type"] == "AWS::Lambda::Function" and i["Properties"].get("Handler") in FUNCTIONS}
    machine_roles = {physical[k]: role_of(k, "RoleArn") for k, i in items.items() if i["Type"] == "AWS::StepFunctions::StateMachine"}
    iam = session.client("iam")
    for role in security_roles.values():
        iam.create_role(RoleName=role.arn.rsplit("/", 1)[1], AssumeRolePolicyDocument=json.dumps(role.trust))
    roles = {role.arn: role for role in security_roles.values()}
    member_parameters = {"SecurityAccountId": account, "OrganizationId": organization_id}
    for member in accounts:
        member_iam = account_session(session, member).client("iam")
        for role in template_roles(member_template, member, region, member_parameters, {}).values():
            roles[role.arn] = role
            with contextlib.suppress(member_iam.exceptions.EntityAlreadyExistsException):
                member_iam.create_role(RoleName=role.arn.rsplit("/", 1)[1], AssumeRolePolicyDocument=json.dumps(role.trust))
        # The stack's named managed policies exist in the account as CloudFormation makes them: the replicator's
        # permissions boundary is one, and the local Neptune evaluates a replicator's requests against it.
        policies = managed_policy_arns(member_template, member)
        for logical in policies:
            properties = member_template["Resources"][logical]["Properties"]
            document = managed_policy(member_template, properties["ManagedPolicyName"], member, region, {**member_parameters, **policies})
            with contextlib.suppress(member_iam.exceptions.EntityAlreadyExistsException):
                member_iam.create_policy(PolicyName=properties["ManagedPolicyName"], Path=properties.get("Path", "/"),
                                         PolicyDocument=json.dumps(document))
    harness = ExecutedIAM(roles, organization_id, set(accounts))
    machine_functions = {physical[k]: physical[next(v["Fn::GetAtt"][0] for v in i["Properties"]["DefinitionSubstitutions"].values()
                                                    if isinstance(v, dict) and "Fn::GetAtt" in v)]
                         for k, i in items.items() if i["Type"] == "AWS::StepFunctions::StateMachine"}
    for machine_arn, role_arn in machine_roles.items():
        trusted = harness.trusts(role_arn, {"Service": "states.amazonaws.com"}, {"aws:SourceArn": machine_arn, "aws:SourceAccount": account})
        if not trusted.allowed:
            raise Denied(f"Step Functions may not assume {role_arn} for {machine_arn}: {trusted.reason}")
        # moto routes Lambda's Invoke past its authorization hook: each state machine's role is evaluated here, once,
        # on the function its definition's tasks name (by the substitution the stack makes).
        harness.require(role_arn, "lambda:InvokeFunction", machine_functions[machine_arn], {})

    arns = workflows.deploy(session, region, roles={
        "steps": function_roles["neptune-guard-steps"], "approval": function_roles["neptune-guard-approval"],
        "cluster": machine_roles[machine("NeptuneGuardClusterRemediation")], "snapshot": machine_roles[machine("NeptuneGuardSnapshotRemediation")]},
        member_regions=member_regions)
    events_template = json.loads(next(i["Properties"]["TemplateBody"] for i in items.values() if i["Type"] == "AWS::CloudFormation::StackSet"
                                      and i["Properties"]["StackSetName"] == "NeptuneGuardMemberEvents"))
    for member in accounts:
        for member_region in member_regions:
            member_session = session if member == account else account_session(session, member)
            roles.update(regional_roles(events_template, member, member_region, {**member_parameters, "SecurityRegion": region},
                                        member_session))
    on_call_role = f"arn:aws:iam::{account}:role/{on_call.ON_CALL_ROLE}"
    roles[on_call_role] = Role(on_call_role, iam.get_role(RoleName=on_call.ON_CALL_ROLE)["Role"]["AssumeRolePolicyDocument"],
                               [managed_policy(security_template, "NeptuneGuardApprover", account, region, physical)])
    lambda_client = session.client("lambda", region_name=region)
    for logical, item in items.items():
        name = FUNCTIONS.get(item["Properties"].get("Handler"))
        if item["Properties"].get("Handler") == "neptune_guard.handlers.scheduled_scan.handler":
            arns["scheduled_scan"] = workflows.deploy_scheduled_scan(
                session, region, deployed(item["Properties"]["Environment"]["Variables"], account, region, physical),
                function_roles[name], machine_roles[machine("NeptuneGuardScheduledScan")])["state_machine"]
            arns["detector"] = name
        elif name in ("neptune-guard-detector", "neptune-guard-trigger", "neptune-guard-execution-ended"):
            environment = deployed(item["Properties"]["Environment"]["Variables"], account, region, physical)
            lambda_client.create_function(FunctionName=name, Runtime="python3.13", Role=function_roles[name],
                                          Handler=item["Properties"]["Handler"], Code={"ZipFile": workflows.code_zip()},
                                          Timeout=int(item["Properties"]["Timeout"]), Environment={"Variables": environment})
            arns[name.removeprefix("neptune-guard-")] = name
    return harness, arns


# Turning it on.

@contextlib.contextmanager
def enforced(harness: ExecutedIAM):
    """While active: moto authorizes deployed roles' requests through `harness`; sessions without explicit credentials
    sign as the thread's identity; pool threads inherit their submitter's identity."""
    from moto.core.authorization import ActionAuthenticatorMixin

    original_credentials = botocore.session.Session.get_credentials
    original_submit = ThreadPoolExecutor.submit
    fallback = boto3.Session().get_credentials().get_frozen_credentials()
    thread_credentials = _ThreadCredentials(fallback)

    from moto.awslambda.models import LambdaFunction

    original_invoke = LambdaFunction._invoke_lambda
    function_credentials = {}

    def authorize(self, resource: str = "*") -> None:
        harness.authorize_moto_request(self)

    def authorize_s3(self, bucket_name: str | None = None, key_name: str | None = None) -> None:
        harness.authorize_s3_request(self, bucket_name, key_name)

    def invoke_as_its_role(self, event=None):
        """The Lambda service assumes the function's role (its trust policy must let lambda.amazonaws.com) and the
        handler's AWS calls carry those credentials."""
        if self.role not in function_credentials:
            trusted = harness.trusts(self.role, {"Service": "lambda.amazonaws.com"}, {})
            if not trusted.allowed:
                raise Denied(f"Lambda may not assume {self.role}: {trusted.reason}")
            administrator = boto3.Session(aws_access_key_id=fallback.access_key, aws_secret_access_key=fallback.secret_key,
                                          region_name="us-east-1")
            function_credentials[self.role] = role_credentials(administrator, self.role, self.function_name)
        with acting_as(function_credentials[self.role]):
            return original_invoke(self, event)

    def get_credentials(self):
        # A session that found its credentials in the environment (a handler's module-level session, warm from an
        # earlier test) signs as the thread's identity too: in Lambda the environment holds the function role's.
        if self._credentials is None or getattr(self._credentials, "method", None) == "env":
            return thread_credentials
        return original_credentials(self)

    def submit(self, fn, /, *args, **kwargs):
        credentials = getattr(_identity, "credentials", None)

        def as_submitter(*a, **k):
            with acting_as(credentials):
                return fn(*a, **k)

        return original_submit(self, as_submitter, *args, **kwargs)

    replacements = ((ActionAuthenticatorMixin, "_authenticate_and_authorize_normal_action", authorize),
                    (ActionAuthenticatorMixin, "_authenticate_and_authorize_s3_action", authorize_s3),
                    (LambdaFunction, "_invoke_lambda", invoke_as_its_role),
                    (botocore.session.Session, "get_credentials", get_credentials),
                    (ThreadPoolExecutor, "submit", submit),
                    (function_urls, "identity_authorization", harness.authorize_function_url))
    with contextlib.ExitStack() as patches:
        for owner, name, replacement in replacements:
            patches.enter_context(mock.patch.object(owner, name, replacement))
        boto3.DEFAULT_SESSION = None
        try:
            yield harness
        finally:
            boto3.DEFAULT_SESSION = None
