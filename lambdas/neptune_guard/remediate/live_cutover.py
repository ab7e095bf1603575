"""The streams path of the cluster workflow: the application keeps writing until the cutover, and the cutover is
proven by Neptune Streams positions (replication.py says what the proof rests on), not inferred from metrics.

The replicator runs where both clusters can be reached: a Lambda function this execution creates in the member
account, its network interfaces where the application's would be (network.py): in a security group the clusters'
groups admit on their port, or in the subnets an admitted address range holds, with a group of its own that admits
nothing. No security group, rule or cluster setting of the customer's is changed (IAM cannot limit what a rule would
open, so the role may add none), and the new cluster, restored with the original's groups, admits it the same way.
Its role, also the execution's, may call only the `neptune-db` actions replication needs, on the two clusters'
resource ids; and the function itself reads and writes only the hosts fixed in its environment when it is made
(`replicator_hosts`), since its network reaches whatever else admits the application. All of it carries the execution's `created-by` tag and is removed on every path (`remove_replicator`),
in the order Lambda needs: the function, then (once Lambda has released the function's network interfaces, which it
does with the function's role) the role and the group. Its
position is durable: each replication step returns the applied position into the execution's state, and the next
one resumes from there.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time

from botocore.config import Config
from botocore.exceptions import ClientError

from neptune_guard import aws
from neptune_guard.remediate import naming, network, replication, replicator_package
from neptune_guard.remediate.resources import NotOurs, ResourceNotReady, Step, describe_cluster
from neptune_guard.tags import CREATED_BY

REPLICATOR_HANDLER = "neptune_guard.remediate.replication.handler"
REPLICATION_ACTIONS = ["neptune-db:GetStreamRecords", "neptune-db:ReadDataViaQuery", "neptune-db:WriteDataViaQuery",
                       "neptune-db:DeleteDataViaQuery", "neptune-db:Connect"]
# What Lambda needs of a VPC-attached function's role (the actions of AWSLambdaVPCAccessExecutionRole, inline so that
# the role holds nothing else). https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html
VPC_ACCESS_ACTIONS = ["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets", "ec2:DeleteNetworkInterface",
                      "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"]
LAMBDA_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
ROLE_PATH = "/neptune-guard/"
BOUNDARY = "NeptuneGuardReplicatorBoundary"  # the member stack's managed policy: no replicator role can hold more
FUNCTION_PREFIX, ROLE_PREFIX = "neptune-guard-replicator-", "NeptuneGuardReplicator-"
# The AWS actions this module's steps call with the member remediation role, beside the code that calls them: the member
# stack grants exactly these (stacks/member_roles.py), scoped to what the execution creates.
PERMISSIONS = {
    "plan": ["rds:DescribeDBClusterParameters", "rds:DescribeDBSubnetGroups", "cloudwatch:GetMetricStatistics",
             "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets"],  # network.py: what the cluster's groups admit
    # The workflow's plan and ProvisionReplicator: the region can run the signed replicator (a person's plan, which
    # has no package configured, does not ask).
    "find_code_signing": replicator_package.PERMISSIONS["find_configuration"],
    "network_read": ["ec2:DescribeNetworkInterfaces"],
    "security_group_create": ["ec2:CreateSecurityGroup", "ec2:CreateTags"],
    "security_group_delete": ["ec2:DeleteSecurityGroup"],
    "role": ["iam:CreateRole", "iam:TagRole", "iam:GetRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:ListRolePolicies",
             "iam:DeleteRole"],
    "function": ["lambda:GetFunction", "lambda:InvokeFunction", "lambda:DeleteFunction"],
    "read_retired_stream": ["rds:StartDBCluster"],
}
REPLICATE_SECONDS = 60
DRAIN_SECONDS = 180  # a drain's runs together: inside the steps function's 5 minutes with room for the proof
# A replicator call runs for up to its budget and a lag read: wait for it, and never send it twice (a retried invoke would
# replicate concurrently from the same position). The ASL retries the step instead.
REPLICATOR_CALL = Config(read_timeout=900, connect_timeout=10, retries={"mode": "standard", "max_attempts": 1},
                         user_agent_extra="neptune-guard")  # one replication step's budget: well inside the function's 15 minutes
CAUGHT_UP_RECORDS = 1000  # lag small enough to ask for the cutover
# History budget (25,000 events an execution): about 7 events a catch-up run, 9 a run beside the cutover question.
CATCH_UP_RUNS = 600  # 10 hours of catching up: past it, the write rate outpaces replication
ANSWER_RUNS = 1800
PERMANENT_REPLICATOR_ERRORS = ("UnsupportedChange", "StreamExpired", "NotItsCluster", "NotReconciled")  # replication.py's: the same call would fail again


class WritesStillFlowing(Exception):
    """New commits keep reaching the original after on-call confirmed writes stopped: no swap, it keeps serving."""


class WritesAfterCutover(Exception):
    """The retired original took commits after the proven cutover position: it is kept, never deleted."""


class ProofFailed(Exception):
    """No proof that the copy holds every change of the original: no swap."""


class CannotCatchUp(Exception):
    """Replication has not come close to the original in CATCH_UP_RUNS runs: the remediation rolls back."""


class ReplicationImpossible(Exception):
    """The stream holds a change that cannot be replayed exactly, or has expired past the position: no retry helps."""


def boundary_policy(partition: str, account: str) -> dict:
    """The most a replicator role may hold, whatever policy it is given (the member stack deploys it as BOUNDARY): the
    data actions replication needs, on the account's clusters; and the network interfaces only as Lambda itself
    manages them with the role, outside the function, where it adds no `lambda:SourceFunctionArn`, so that the
    function's code cannot unassign or delete any interface's addresses (EC2 requests made from the function carry
    the key). Neptune's data-access condition keys do not include that key, so it cannot bind the data actions to a
    function; the RCP guardrails/rcp/replicator-roles-only-for-lambda.json keeps the role's credentials inside Lambda.
    https://docs.aws.amazon.com/lambda/latest/dg/permissions-source-function-arn.html
    https://docs.aws.amazon.com/neptune/latest/userguide/iam-data-condition-keys.html"""
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "ReplicationOnTheAccountsGraphs", "Effect": "Allow", "Action": REPLICATION_ACTIONS,
         "Resource": f"arn:{partition}:neptune-db:*:{account}:*/*"},
        {"Sid": "NetworkInterfacesAsLambdaManagesThem", "Effect": "Allow", "Action": VPC_ACCESS_ACTIONS, "Resource": "*",
         "Condition": {"Null": {"lambda:SourceFunctionArn": "true"}}}]}


CREATOR_PREFIX = "NeptuneGuardReplicatorCreator-"  # + the region: the member regional stack's role (creator_policy)


def creator_policy(partition: str, region: str, account: str, code_signing_config_arn: str) -> dict:
    """The policy of the role that alone may create a replicator function in one region of a member account (the
    member regional stack deploys both beside the region's code-signing configuration, stacks/member_events.py; only
    the security account's workflow role may assume it): a function named for a replicator, only under that
    configuration (Lambda blocks a CreateFunction request whose CodeSigningConfigArn is missing or other, and the
    configuration accepts only the security stack's signed package), on a replicator role passed to Lambda only. The
    remediation role cannot create one at all: whoever makes a function chooses its environment, and a Python
    runtime's environment can make it run code of the maker's (PYTHONWARNINGS, for one), signed package or not. Beside
    CreateFunction, what Lambda authorizes with it: the function's tags (lambda:TagResource), its role (iam:PassRole),
    and for a VPC configuration three EC2 reads.
    https://docs.aws.amazon.com/lambda/latest/dg/config-codesigning-policies.html
    https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html ("User permissions")"""
    functions = f"arn:{partition}:lambda:{region}:{account}:function:{FUNCTION_PREFIX}*"
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "CreateTheReplicatorOnlyFromSignedCode", "Effect": "Allow", "Action": "lambda:CreateFunction", "Resource": functions,
         "Condition": {"StringEquals": {"lambda:CodeSigningConfigArn": code_signing_config_arn}}},
        {"Sid": "TagItOnCreation", "Effect": "Allow", "Action": "lambda:TagResource", "Resource": functions},
        {"Sid": "WithAReplicatorRole", "Effect": "Allow", "Action": "iam:PassRole",
         "Resource": f"arn:{partition}:iam::{account}:role{ROLE_PATH}{ROLE_PREFIX}*",
         "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}},
        {"Sid": "InTheClustersVpc", "Effect": "Allow", "Action": ["ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs"],
         "Resource": "*"}]}


def replicator_names(execution: str) -> dict:
    token = naming.execution_token(execution)
    return {"function": FUNCTION_PREFIX + token, "role": ROLE_PREFIX + token, "security_group": FUNCTION_PREFIX + token}


def replicator_hosts(plan: dict, endpoint: str) -> dict:
    """The hosts the replicator may read and write, fixed in its configuration when it is made: the original and the
    new cluster under each name the workflow gives them (a name's endpoint keeps the account-region suffix of
    `endpoint`, the original's). The production name is read only: before the cutover it is the original, after it
    the cluster the customer runs, which the replicator never writes."""
    suffix = endpoint.split(".", 1)[1]
    names = {key: f"{plan[key].lower()}.{suffix}" for key in ("cluster_id", "new_cluster_id", "retired_cluster_id")}
    return {replication.READ_HOSTS: ",".join(sorted(names.values())),
            replication.WRITE_HOSTS: ",".join(sorted([names["new_cluster_id"], names["retired_cluster_id"]]))}


def _tags(step: Step) -> list[dict]:
    return [{"Key": CREATED_BY, "Value": step.execution}]


def _our_group(ec2, name: str, execution: str) -> dict | None:
    groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])["SecurityGroups"]
    if not groups:
        return None
    if {t["Key"]: t["Value"] for t in groups[0].get("Tags", [])}.get(CREATED_BY) != execution:
        raise NotOurs(f"security group {name} exists but was not created for execution {execution}")
    return groups[0]


def _policy(step: Step, resource_ids: list[str]) -> str:
    partition, region, account = step.plan["cluster_arn"].split(":")[1], step.request["region"], step.request["account_id"]
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": REPLICATION_ACTIONS,
        "Resource": [f"arn:{partition}:neptune-db:{region}:{account}:{rid}/*" for rid in resource_ids]},
        {"Effect": "Allow", "Action": VPC_ACCESS_ACTIONS, "Resource": "*"}]})


def creator(step: Step):
    """Lambda in the member region, through the regional stack's creator role (creator_policy)."""
    region = step.request["region"]
    return aws.assume_role(step.base or aws.new_session(region), step.request["account_id"], CREATOR_PREFIX + region, region,
                           "neptune-guard-replicator").client("lambda", region_name=region, config=aws.CLIENT_CONFIG)


def replicator_code(lam) -> tuple[bytes, str]:
    """The signed package and the member region's code-signing configuration the replicator is made with
    (replicator_package.py says why); ReplicationImpossible, before anything is made, where either is missing."""
    configured = replicator_package.configured()
    if configured is None:
        raise ReplicationImpossible(f"the deployment configured no signed replicator package ({replicator_package.PACKAGE_ENVIRONMENT}, "
                                    f"{replicator_package.PROFILE_ENVIRONMENT})")
    location, profile = configured
    signing_config = replicator_package.code_signing_config(lam, profile)
    if signing_config is None:
        raise ReplicationImpossible(f"this account and region have no code-signing configuration that accepts {profile} alone: "
                                    "deploy the NeptuneGuardMemberEvents stack instance here")
    return replicator_package.package(location), signing_config


def provision_replicator(step: Step) -> dict:
    """The replicator's security group (it admits nothing), role and function, its interfaces where the clusters admit
    them (read again now: the customer may have changed a rule since the plan); ResourceNotReady until active."""
    plan, names = step.plan, replicator_names(step.execution)
    planned = plan["streams"]["network"]
    original = describe_cluster(step.neptune, plan["cluster_id"])
    if original is None or original["DbClusterResourceId"] != plan["cluster_resource_id"]:
        raise NotOurs(f"{plan['cluster_id']} is not the cluster this execution planned for")
    hosts = replicator_hosts(plan, original["Endpoint"])
    ec2, iam, lam = step.client("ec2"), step.client("iam"), step.client("lambda")
    code, signing_config = replicator_code(lam)
    reach = network.describe_reach(ec2, planned["port"], planned["vpc_id"], planned["security_groups"], planned["subnets"])
    if reach is None:
        raise ReplicationImpossible(f"the security groups of {plan['cluster_id']} ({', '.join(planned['security_groups'])}) no longer "
                                    f"admit a security group or address range on port {planned['port']} that the replicator could join")
    group = _our_group(ec2, names["security_group"], step.execution)
    if group is None:
        group_id = ec2.create_security_group(
            GroupName=names["security_group"], VpcId=planned["vpc_id"], Description="Neptune Guard replicator (one remediation)",
            TagSpecifications=[{"ResourceType": "security-group", "Tags": _tags(step)}])["GroupId"]
    else:
        group_id = group["GroupId"]
    # Made first, read only if it exists: the role's grants name its path, which a role not yet made has none of.
    try:
        partition = plan["cluster_arn"].split(":")[1]
        role_arn = iam.create_role(RoleName=names["role"], Path=ROLE_PATH, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST),
                                   PermissionsBoundary=f"arn:{partition}:iam::{step.request['account_id']}:policy/{BOUNDARY}",
                                   Description="Neptune Guard replicator (one remediation)", Tags=_tags(step))["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        role = iam.get_role(RoleName=names["role"])["Role"]
        if {t["Key"]: t["Value"] for t in role.get("Tags", [])}.get(CREATED_BY) != step.execution:
            raise NotOurs(f"role {names['role']} exists but was not created for execution {step.execution}") from None
        role_arn = role["Arn"]
    iam.put_role_policy(RoleName=names["role"], PolicyName="replication", PolicyDocument=_policy(step, [plan["cluster_resource_id"]]))
    try:
        function = lam.get_function(FunctionName=names["function"])
        if function.get("Tags", {}).get(CREATED_BY) != step.execution:
            raise NotOurs(f"function {names['function']} exists but was not created for execution {step.execution}")
    except lam.exceptions.ResourceNotFoundException:
        joined = [group_id] + ([reach["group_id"]] if reach.get("group_id") else [])
        try:
            creator(step).create_function(FunctionName=names["function"], Runtime="python3.13", Architectures=["arm64"], Role=role_arn,
                                Handler=REPLICATOR_HANDLER, Code={"ZipFile": code}, CodeSigningConfigArn=signing_config,
                                Timeout=900, MemorySize=1024, Environment={"Variables": hosts},
                                VpcConfig={"SubnetIds": reach["subnets"], "SecurityGroupIds": joined},
                                Description="Neptune Guard: replicates a cluster into its re-encrypted copy", Tags={CREATED_BY: step.execution})
        except ClientError as error:
            code_name = error.response["Error"]["Code"]
            if code_name == "InvalidParameterValueException":  # a new role takes seconds to be assumable by Lambda
                raise ResourceNotReady(f"the replicator's role is not usable yet: {error.response['Error']['Message']}") from error
            if code_name in ("CodeVerificationFailedException", "InvalidCodeSignatureException", "CodeSigningConfigNotFoundException"):
                raise ReplicationImpossible(f"Lambda refused the replicator's signed package under {signing_config} ({code_name}: "
                                            f"{error.response['Error']['Message']}): deploy the security stack again to sign it anew") from error
            raise
        raise ResourceNotReady(f"creating {names['function']}")
    configuration = function["Configuration"]
    if configuration.get("State", "Active") != "Active":
        raise ResourceNotReady(f"{names['function']} is {configuration.get('State')}")
    expected = {"code_sha256": base64.b64encode(hashlib.sha256(code).digest()).decode(), "role": role_arn, "hosts": hosts}
    made = _as_made(configuration)
    if {key: made[key] for key in expected} != expected:
        raise NotOurs(f"{names['function']} does not run the code, role and hosts this execution gives it")
    return {**names, "security_group_id": group_id, "reach": reach, "made": made}


def _as_made(configuration: dict) -> dict:
    """What says a replicator function is the one its execution made: its code, role and hosts, and when it was last
    changed (a function deleted and made again under its name, or changed, has another time)."""
    return {"code_sha256": configuration.get("CodeSha256"), "role": configuration.get("Role"),
            "hosts": (configuration.get("Environment") or {}).get("Variables"), "last_modified": configuration.get("LastModified")}


def _check_replicator(step: Step) -> None:
    """The remediation role may delete the function and make another under its name (with the execution's tag and
    code of its own that answers a forged proof): before and after each call, the function must be the one this
    execution made."""
    made = (step.state.get("replicator") or {}).get("made")
    name = replicator_names(step.execution)["function"]
    lam = step.client("lambda")
    try:
        configuration = lam.get_function(FunctionName=name)["Configuration"]
    except lam.exceptions.ResourceNotFoundException:
        raise NotOurs(f"{name} is not the function this execution made: it was deleted, so nothing answered under its "
                      "name is trusted") from None
    if made is None or _as_made(configuration) != made:
        raise NotOurs(f"{name} is not the function this execution made (its code, role, hosts or last change differ): "
                      "nothing it answers is trusted")


def _replicator_group(step: Step) -> dict | None:
    return _our_group(step.client("ec2"), replicator_names(step.execution)["security_group"], step.execution)


def _endpoint(step: Step, cluster_id: str) -> dict:
    cluster = describe_cluster(step.neptune, cluster_id)
    if cluster is None or cluster["Status"] != "available":
        raise ResourceNotReady(f"{cluster_id} is {cluster and cluster['Status']}")
    return {"endpoint": cluster["Endpoint"], "port": cluster["Port"], "region": step.request["region"],
            "iam_auth": bool(cluster.get("IAMDatabaseAuthenticationEnabled")), "resource_id": cluster["DbClusterResourceId"]}


def _invoke(step: Step, payload: dict) -> dict:
    _check_replicator(step)
    lam = step.client("lambda", REPLICATOR_CALL)
    try:
        response = lam.invoke(FunctionName=replicator_names(step.execution)["function"], Payload=json.dumps(payload).encode())
    except lam.exceptions.ResourceNotFoundException:
        _check_replicator(step)  # deleted between the check and the call: says so
        raise
    body = json.loads(response["Payload"].read() or b"null")
    _check_replicator(step)
    if response.get("FunctionError"):
        if body.get("errorType") in PERMANENT_REPLICATOR_ERRORS:
            raise ReplicationImpossible(f"{body['errorType']}: {body.get('errorMessage')}")
        raise ResourceNotReady(f"the replicator failed: {body.get('errorType')}: {body.get('errorMessage')}")
    return body


def _endpoints(step: Step, source: str, target: str) -> dict:
    """The two clusters a replicator call reads and writes, described once for the step's calls."""
    return {"source": _endpoint(step, source), "target": _endpoint(step, target)}


def _stream_position(step: Step, cluster_id: str) -> dict:
    return _invoke(step, {"action": "position", "source": _endpoint(step, cluster_id)})


def record_original_position(step: Step) -> dict:
    """The original's latest event, read twice around the snapshot. Before it is requested (`record_stream_position`):
    everything up to it is in the snapshot. Once it is available (`record_snapshot_bound`): the snapshot holds nothing
    after it. Where in between the snapshot was taken is not documented, so the records between the two are replayed
    over a copy that may hold them already (an overlap, reconciled before the swap)."""
    return _stream_position(step, step.plan["cluster_id"])


def admit_replicator_to_new_cluster(step: Step) -> dict:
    """The replicator's role reaches the new cluster's resource id (known once it exists); its network already does:
    the new cluster carries the original's security groups. Where the new cluster's own stream stands before anything
    is replicated into it: a later run that finds it moved knows a run before it applied changes and never returned."""
    new_id = step.state["verified"]["resource_id"]
    step.client("iam").put_role_policy(RoleName=replicator_names(step.execution)["role"], PolicyName="replication",
                                       PolicyDocument=_policy(step, [step.plan["cluster_resource_id"], new_id]))
    target = _stream_position(step, step.plan["new_cluster_id"])["positions"]
    return {"resource_ids": [step.plan["cluster_resource_id"], new_id], "target_position": {"pg": target["pg"]}}


def _progress(step: Step) -> dict:
    """Where replication from the original stands: its last durable position, the ranges of the stream replayed over a
    copy that may have held them (not yet reconciled), and where the copy's own stream stood then. Before the first
    run: the position read before the snapshot, the range up to the one read after it, the copy as restored."""
    for key in ("final_proof", "proof", "replication"):
        found = step.state.get(key)
        if isinstance(found, dict) and "positions" in found:
            return {"positions": found["positions"], "overlaps": found.get("overlaps", []), "target_position": found.get("target_position")}
    # An execution started before the snapshot bound and the copy's position were recorded has neither: the copy's
    # position unknown, the first run takes everything up to the source's latest as an overlap (replication.replicate).
    start, bound = step.state["stream_position"]["positions"], (step.state.get("snapshot_bound") or {}).get("positions")
    overlap = bound is not None and replication.position_key(bound["pg"]) > replication.position_key(start["pg"])
    return {"positions": start, "overlaps": [{"from": start["pg"], "to": bound["pg"]}] if overlap else [],
            "target_position": step.state["replicator_access"].get("target_position")}


def _replicate(step: Step, endpoints: dict, progress: dict) -> dict:
    return _invoke(step, {"action": "replicate", **endpoints, "positions": progress["positions"], "overlaps": progress["overlaps"],
                          "target_position": progress["target_position"], "seconds": REPLICATE_SECONDS})


def _reconcile(step: Step, endpoints: dict, overlaps: list, **budget) -> dict:
    """The vertices a label removal touched within `overlaps`, made on the target as they are on the source
    (replication.reconcile); `budget`: seconds and where the last budgeted call stopped."""
    return _invoke(step, {"action": "reconcile", **endpoints, "overlaps": overlaps, **budget})


def replicate(step: Step) -> dict:
    """One budget of replication from the original into the new cluster, resuming at the durable position; and how
    long to pause before the next one. An execution's history holds 25,000 events: the loops are bounded so that
    catching up, then waiting for the cutover answer however long it may take, stay well inside it."""
    plan, previous, now = step.plan, step.state.get("replication") or {}, time.time()
    endpoints = _endpoints(step, plan["cluster_id"], plan["new_cluster_id"])
    result = _replicate(step, endpoints, _progress(step))
    caught_up = ready = result["caught_up"] or (result.get("lag_counted", True) and result["lag_records"] <= CAUGHT_UP_RECORDS)
    settling = previous.get("settling")
    if caught_up and (settling or any(not o.get("settled") for o in result["overlaps"])):
        settling = _settle_overlaps(step, endpoints, result, settling)
        ready = settling is None
    asked_since = previous.get("asked_since") or (now if ready else None)
    catch_up_runs = previous.get("catch_up_runs", 0) + (asked_since is None)
    if asked_since is None and catch_up_runs >= CATCH_UP_RUNS:
        if caught_up and settling is not None:
            raise CannotCatchUp(f"{len(settling['overlaps'])} overlapping ranges of the stream are still being reconciled after "
                                f"{catch_up_runs} runs of {REPLICATE_SECONDS} s")
        raise CannotCatchUp(f"the new cluster is still {result['lag_records']} records ({result['lag_seconds']} s) behind after "
                            f"{catch_up_runs} runs of {REPLICATE_SECONDS} s: the application writes faster than replication applies")
    return {**result, "settling": settling, "measured_at": now, "ready_to_ask": ready, "asked_since": asked_since, "catch_up_runs": catch_up_runs,
            "pause_seconds": pause_between_runs(now - (asked_since or now), plan["approval_timeout_seconds"]),
            "approval_answered": "cutover" in step.answered}


def _settle_overlaps(step: Step, endpoints: dict, result: dict, settling: dict | None) -> dict | None:
    """Before the cutover question, while writes flow: the vertices of the overlaps not yet settled are reconciled a
    run's budget at a time, so that the drain, inside the write pause, has only the records replayed meanwhile to
    settle (one small overlap, marked settled) rather than the snapshot's range or a crashed run's. Updates `result`
    (its overlaps and where the copy's stream stands); what is left to do next run, or None."""
    settling = settling or {"overlaps": [o for o in result["overlaps"] if not o.get("settled")], "after": None,
                            "from": result["positions"]["pg"]}
    settled = _reconcile(step, endpoints, settling["overlaps"], seconds=REPLICATE_SECONDS, after=settling["after"])
    result["target_position"] = settled["target_position"]
    if not settled["done"]:
        return {**settling, "after": settled["after"]}
    replayed = {"from": settling["from"], "to": settled["source_latest"], "settled": True}
    result["overlaps"] = [o for o in result["overlaps"] if o not in settling["overlaps"]] + (
        [replayed] if replication.position_key(replayed["to"]) > replication.position_key(replayed["from"]) else [])
    return None


def pause_between_runs(waiting_seconds: float, approval_timeout_seconds: int) -> int:
    """5 s while on-call is likely at hand, then a tenth of the wait so far, capped so that the runs beside a question
    left open until its timeout stay under ANSWER_RUNS: the cutover starts at most that long after the answer."""
    longest = max(60, math.ceil(approval_timeout_seconds / (ANSWER_RUNS * 0.9)))  # a tenth of the runs for the ramp
    return int(min(longest, max(5, waiting_seconds / 10)))


def _drain_and_prove(step: Step, source: str, target: str, progress: dict) -> dict:
    """Replicate until caught up (a backlog may need several runs; each resumes where the last stopped), reconcile the
    vertices of any overlapping range with the source (still now), then prove. Writes that keep coming for
    DRAIN_SECONDS mean the application has not stopped: no swap."""
    started = time.time()
    endpoints = _endpoints(step, source, target)
    drained = _replicate(step, endpoints, progress)
    applied = sum(drained["applied"].values())
    while not drained["caught_up"] and time.time() - started < DRAIN_SECONDS:
        drained = _replicate(step, endpoints, drained)
        applied += sum(drained["applied"].values())
    if not drained["caught_up"]:
        raise WritesStillFlowing(f"{source} is still {drained['lag_records']} records ahead after {DRAIN_SECONDS} s of draining")
    reconciled = {"reconciled": 0, "changed": 0, "target_position": drained["target_position"]}
    if drained["overlaps"]:
        reconciled = _reconcile(step, endpoints, drained["overlaps"])
    proof = _invoke(step, {"action": "prove", "source": endpoints["source"], "positions": drained["positions"]})
    if not proof["proven"]:
        raise WritesStillFlowing(f"{source} committed past the drained position {proof['applied']}: {proof['past_position']}")
    return {"positions": drained["positions"], "source_latest": proof["source_latest"], "proven": True, "started_at": started,
            "overlaps": [], "target_position": reconciled["target_position"], "reconciled_vertices": reconciled["reconciled"],
            "drained_records": applied, "drain_seconds": round(time.time() - started, 3)}


def drain_and_prove(step: Step) -> dict:
    """With writes stopped (on-call confirmed it in the cutover approval): drain to the original's last event and
    prove the new cluster's applied position equals it. A record after it: no swap."""
    return _drain_and_prove(step, step.plan["cluster_id"], step.plan["new_cluster_id"], _progress(step))


def prove_after_rename(step: Step) -> dict:
    """The original, renamed aside: anything committed during the rename (open connections, instance endpoints) is
    replicated and the proof taken again, from its retired name, before the new cluster takes the name. The new
    cluster's own stream position is recorded too: anything after it is a write it took while serving, which a
    rollback replicates back."""
    proof = _drain_and_prove(step, step.plan["retired_cluster_id"], step.plan["new_cluster_id"], _progress(step))
    return {**proof, "target_positions": _stream_position(step, step.plan["new_cluster_id"])["positions"]}


def prove_original_quiet_for_return(step: Step) -> dict:
    """Before a rollback replicates what the new cluster took while serving back into the original: the original must
    have taken nothing since the cutover proof, else both took writes, and replaying one over the other would merge
    two histories (each keeps its own and the rollback names them). Checked once, in its own step: the replication
    after it writes the original's stream, so a retried replication would otherwise find its own writes there."""
    plan = step.plan
    quiet = check_retired_quiet(step)
    if not quiet["proven"]:
        raise WritesAfterCutover(f"{plan['cluster_id']}'s original committed after the cutover proof (first: {quiet['past_position']}) "
                                 f"while {plan['new_cluster_id']} served: both keep their writes, for a person to reconcile")
    return {**quiet, "checked_at": time.time()}


def replicate_back(step: Step) -> dict:
    """A rollback after the new cluster served: it is renamed aside (writes to it have stopped) and the original is
    not yet back under the name. What it took while serving (its stream after the position recorded before it took
    the name) is drained into the original and proven, so the original serves again with every acknowledged write."""
    plan, final_proof = step.plan, step.state.get("final_proof") or {}
    since = final_proof.get("target_positions")
    if since is None:
        raise ReplicationImpossible(f"no record of where {plan['new_cluster_id']}'s stream stood when it took the name")
    if not (step.state.get("quiet_before_return") or {}).get("proven"):
        raise ReplicationImpossible(f"no proof that {plan['cluster_id']}'s original took nothing since the cutover")
    # The original's stream ended at the proven position when that was checked: a run that moved it and never
    # returned makes its range an overlap, reconciled before the proof.
    back = {"positions": since, "overlaps": [], "target_position": {"pg": final_proof["positions"]["pg"]}}
    proof = _drain_and_prove(step, plan["new_cluster_id"], plan["retired_cluster_id"], back)
    return {**proof, "since": since}


def check_retired_quiet(step: Step) -> dict:
    """Whether the retired original, available now, committed nothing after the position proven at the cutover."""
    plan = step.plan
    return _invoke(step, {"action": "prove", "source": _endpoint(step, plan["retired_cluster_id"]),
                          "positions": step.state["final_proof"]["positions"]})


def prove_retired_quiet(step: Step) -> dict:
    """Before decommission: the retired original, started if stopped, shows no commit past the position proven at
    the cutover. A commit past it is a write the serving cluster does not hold, made on the old state while the new
    cluster took others: it is not replayed over them (that would merge two histories), the original is kept and
    on-call told which commits to reconcile."""
    plan, neptune = step.plan, step.neptune
    retired = describe_cluster(neptune, plan["retired_cluster_id"])
    if retired is None:
        raise NotOurs(f"{plan['retired_cluster_id']} is gone")
    if retired["Status"] == "stopped":
        neptune.start_db_cluster(DBClusterIdentifier=plan["retired_cluster_id"])
        raise ResourceNotReady(f"starting {plan['retired_cluster_id']} to read its stream")
    serving = describe_cluster(neptune, plan["cluster_id"])
    if serving is None or serving["DbClusterResourceId"] != step.state["cutover"]["resource_id"]:
        raise NotOurs(f"{plan['cluster_id']} is not served by the remediated cluster: the original is kept")
    proof = check_retired_quiet(step)
    if not proof["proven"]:
        raise WritesAfterCutover(f"{plan['retired_cluster_id']} committed after the position proven at the cutover {proof['applied']} "
                                 f"(first: {proof['past_position']}): {plan['cluster_id']} does not hold those changes; the original "
                                 "is kept for a person to reconcile them")
    return {**proof, "checked_at": time.time()}


def remove_replicator(step: Step) -> dict:
    """Every path ends here, each part only if ours: the function; then, once Lambda has released the function's
    network interfaces (it needs the function's role for that), the role and the group. ResourceNotReady until then."""
    if not step.plan or step.plan.get("path") != "streams":
        return {"removed": []}
    names = replicator_names(step.execution)
    ec2, iam, lam = step.client("ec2"), step.client("iam"), step.client("lambda")
    group, removed = _replicator_group(step), []
    try:
        if lam.get_function(FunctionName=names["function"]).get("Tags", {}).get(CREATED_BY) == step.execution:
            lam.delete_function(FunctionName=names["function"])
            removed.append(names["function"])
    except lam.exceptions.ResourceNotFoundException:
        pass
    if group is not None:
        interfaces = ec2.describe_network_interfaces(Filters=[{"Name": "group-id", "Values": [group["GroupId"]]}])["NetworkInterfaces"]
        if interfaces:
            raise ResourceNotReady(f"Lambda is releasing {len(interfaces)} network interfaces of {names['function']}: "
                                   "its role and group go after them")
    try:
        role = iam.get_role(RoleName=names["role"])["Role"]
        if {t["Key"]: t["Value"] for t in role.get("Tags", [])}.get(CREATED_BY) == step.execution:
            for policy in iam.list_role_policies(RoleName=names["role"])["PolicyNames"]:
                iam.delete_role_policy(RoleName=names["role"], PolicyName=policy)
            iam.delete_role(RoleName=names["role"])
            removed.append(names["role"])
    except iam.exceptions.NoSuchEntityException:
        pass
    if group is not None:
        try:
            ec2.delete_security_group(GroupId=group["GroupId"])
        except ClientError as error:
            if error.response["Error"]["Code"] == "DependencyViolation":
                raise ResourceNotReady(f"{names['security_group']} is still in use: {error.response['Error']['Message']}") from error
            raise
        removed.append(names["security_group"])
    return {"removed": removed}


STEPS = {
    "provision_replicator": (provision_replicator, "snapshot"),
    "record_stream_position": (record_original_position, "snapshot"),
    "record_snapshot_bound": (record_original_position, "snapshot"),
    "admit_replicator_to_new_cluster": (admit_replicator_to_new_cluster, "snapshot"),
    "replicate": (replicate, "snapshot"),
    "drain_and_prove": (drain_and_prove, "cutover"),
    "prove_after_rename": (prove_after_rename, "cutover"),
    "prove_retired_quiet": (prove_retired_quiet, "decommission"),
    "prove_original_quiet_for_return": (prove_original_quiet_for_return, None),
    "replicate_back": (replicate_back, None),
    "remove_replicator": (remove_replicator, None),
}
