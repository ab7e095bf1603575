"""The streams path: a live cluster re-encrypted while the application keeps writing, the cutover proven by stream
position. The real ASL in moto's interpreter, the data plane of sandbox/aws/neptune_data.py, an application writing."""

import json
import time

import pytest

from sandbox.demo.application import Writer
from tests.conftest import awaiting, decide, final_state, finish, member_session

ACCOUNT, REGION = "111111111111", "us-east-1"
SCENARIO = {"accounts": {ACCOUNT: {REGION: {
    "keys": {"neptune-cmk": {"state": "Enabled"}},
    "clusters": {
        "graph": {"encryption": "none", "instances": {"graph-1": "db.r6g.large"}, "streams": True},
        "triples": {"encryption": "aws-managed", "instances": {"triples-1": "db.r6g.large"}, "streams": True, "iam_auth": True},
        "frozen": {"encryption": "none", "instances": {"frozen-1": "db.r6g.large"}},
    }}}}}
FAST = {"approval_timeout_seconds": 600, "soak_seconds": 0, "metrics_settle_seconds": 0}


@pytest.fixture
def deployed(deploy_workflows):
    return deploy_workflows(SCENARIO)


def request(cluster_id):
    return {"account_id": ACCOUNT, "region": REGION, "cluster_id": cluster_id, "target_key": "alias/neptune-cmk", **FAST}


def run_live(sfn, arns, cluster_id, model):
    writer = Writer(ACCOUNT, REGION, cluster_id, model).start()
    from neptune_guard.approve import workflow
    execution = workflow.start(sfn, arns["cluster"], request(cluster_id))
    try:
        awaiting(sfn, execution, "snapshot")
        decide(sfn, execution, "snapshot", approved=True, approver="bob")
        awaiting(sfn, execution, "cutover", timeout=120)
        writer.pause()
        decide(sfn, execution, "cutover", approved=True, approver="bob")
        awaiting(sfn, execution, "decommission", timeout=120)
        writer.resume()
        time.sleep(0.3)
        decide(sfn, execution, "decommission", approved=True, approver="bob")
        description = finish(sfn, execution)
    finally:
        writer.stop()
    return writer, description, final_state(sfn, execution)


@pytest.mark.parametrize("cluster_id, model", [("graph", "property-graph"), ("triples", "rdf")])
def test_a_live_cluster_is_re_encrypted_with_writes_flowing_and_no_acknowledged_write_lost(deployed, cluster_id, model):
    session, sfn, arns = deployed
    writer, description, state = run_live(sfn, arns, cluster_id, model)
    assert description["status"] == "SUCCEEDED", state.get("error")
    assert state["plan"]["path"] == "streams"
    assert state["proof"]["proven"] and state["final_proof"]["proven"]
    assert len(writer.acknowledged) > 20
    assert writer.missing() == []
    assert max(writer.pauses) < 60
    cluster = member_session(session, ACCOUNT).client("neptune", region_name=REGION).describe_db_clusters(DBClusterIdentifier=cluster_id)["DBClusters"][0]
    assert cluster["StorageEncrypted"] and cluster["KmsKeyId"].endswith(state["plan"]["target_key_arn"].split("/")[-1])
    assert state["replicator_removed"]["removed"]
    ec2 = member_session(session, ACCOUNT).client("ec2", region_name=REGION)
    assert not [g for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"].startswith("neptune-guard-replicator-")]
    assert not [i for i in ec2.describe_network_interfaces()["NetworkInterfaces"] if "neptune-guard-replicator-" in i.get("Description", "")]
    assert [g["VpcSecurityGroupId"] for g in cluster["VpcSecurityGroups"]] == state["plan"]["streams"]["network"]["security_groups"]
    assert state["cutover"]["path"] == "streams" and 0 < state["cutover"]["write_pause_seconds"] < 60
    assert 0 < state["cutover"]["nameless_seconds"] < 60


def test_a_page_of_changes_is_applied_whole_as_neptune_runs_a_script(local_aws):
    """Neptune runs a script's earlier statements only when iterated: every record of a page must reach the copy."""
    from neptune_guard.remediate import replication
    from sandbox.aws import neptune_data
    from sandbox.demo import organization

    neptune = local_aws.client("neptune", region_name=REGION)
    organization.seed_region(local_aws, REGION, {"clusters": {"live": {"encryption": "none", "instances": {"live-1": "db.r6g.large"}, "streams": True}}}, "123456789012")
    source_cluster = neptune.describe_db_clusters(DBClusterIdentifier="live")["DBClusters"][0]
    neptune.create_db_cluster_snapshot(DBClusterSnapshotIdentifier="empty", DBClusterIdentifier="live")
    copy = neptune.restore_db_cluster_from_snapshot(DBClusterIdentifier="copy", SnapshotIdentifier="empty", Engine="neptune",
                                                    DBClusterParameterGroupName=source_cluster["DBClusterParameterGroup"])["DBCluster"]
    neptune.create_db_instance(DBInstanceIdentifier="copy-1", DBClusterIdentifier="copy", Engine="neptune", DBInstanceClass="db.r6g.large")
    source = replication.Neptune(source_cluster["Endpoint"], REGION, False)
    source.call("POST", "/gremlin", body=b'{"gremlin": "g.addV(\'A\').property(T.id, \'a\'); g.addV(\'B\').property(T.id, \'b\')"}')
    assert set(neptune_data.volume(source_cluster["DbClusterResourceId"]).vertices) == {"b"}  # the first was never iterated
    for n in range(25):
        source.call("POST", "/gremlin", body=('{"gremlin": "g.addV(\'W\').property(T.id, \'w%d\').property(\'n\', %d)"}' % (n, n)).encode())
    replication.replicate(source, replication.Neptune(copy["Endpoint"], REGION, False), {}, 30)
    assert neptune_data.volume(copy["DbClusterResourceId"]).vertices == neptune_data.volume(source_cluster["DbClusterResourceId"]).vertices


def on_the_swap(monkeypatch, execution: str, action) -> None:
    """`action()` the moment the execution's new cluster takes the production name "graph"."""
    from moto.rds import models as rds_models

    from neptune_guard.remediate import naming

    new, rename = naming.derived("graph", "cmk", naming.execution_token(execution)), rds_models.RDSBackend.modify_db_cluster

    def modify(self, kwargs):
        swap = ((kwargs.get("db_cluster_identifier") or "").lower(), (kwargs.get("new_db_cluster_identifier") or "").lower())
        result = rename(self, kwargs)  # (it takes the identifiers out of kwargs)
        if swap == (new, "graph"):
            action()
        return result

    monkeypatch.setattr(rds_models.RDSBackend, "modify_db_cluster", modify)


def test_a_write_the_retired_original_takes_after_the_proof_is_never_replayed_and_keeps_it(deployed, monkeypatch):
    """An open connection writes to the original while the new cluster takes its name: that write was made on the old
    state, so it is not merged into the serving cluster; decommission keeps the original and names the commit."""
    from neptune_guard.approve import workflow
    from neptune_guard.remediate import naming
    from sandbox.aws import neptune_data
    from sandbox.demo import workflows

    session, sfn, arns = deployed
    neptune = member_session(session, ACCOUNT).client("neptune", region_name=REGION)
    original_id = neptune.describe_db_clusters(DBClusterIdentifier="graph")["DBClusters"][0]["DbClusterResourceId"]
    execution = workflow.start(sfn, arns["cluster"], request("graph"))
    on_the_swap(monkeypatch, execution, lambda: neptune_data.run_gremlin(neptune_data.volume(original_id), True,
                                                                         "g.addV('Stale').property(T.id, 'stale')"))
    decide(sfn, execution, "snapshot", approved=True, approver="bob")
    awaiting(sfn, execution, "cutover", timeout=120)
    decide(sfn, execution, "cutover", approved=True, approver="bob")
    awaiting(sfn, execution, "decommission", timeout=120)
    decide(sfn, execution, "decommission", approved=True, approver="bob")
    workflows.wait_for(sfn, execution, lambda d, h: any(e.get("stateEnteredEventDetails", {}).get("name") == "NotifyNeedsAttention" for e in h))
    decide(sfn, execution, "decommission", approved=False, approver="bob")  # parked, asked again: kept
    assert finish(sfn, execution)["status"] == "SUCCEEDED"
    state = final_state(sfn, execution)
    assert state["retired"]["quiet_at_retire"]["proven"] is False  # seen when it was stopped, not a week on
    error = state["decommission_error"]
    assert error["Error"] == "WritesAfterCutover" and "first: {'pg'" in error["Cause"], error
    retired = naming.derived("graph", "retired", naming.execution_token(execution))
    kept = neptune.describe_db_clusters(DBClusterIdentifier=retired)["DBClusters"][0]
    assert kept["DbClusterResourceId"] == original_id and kept["Status"] in ("stopping", "stopped")
    assert [g["VpcSecurityGroupId"] for g in kept["VpcSecurityGroups"]] == state["plan"]["streams"]["network"]["security_groups"]
    ec2 = member_session(session, ACCOUNT).client("ec2", region_name=REGION)
    assert not [g for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"].startswith("neptune-guard-replicator-")]
    serving = neptune.describe_db_clusters(DBClusterIdentifier="graph")["DBClusters"][0]["DbClusterResourceId"]
    assert serving != original_id and "stale" not in neptune_data.volume(serving).vertices


def test_vertices_misread_between_the_position_and_the_snapshot_are_reconciled_before_the_swap(deployed, monkeypatch):
    """Label changes made after the position is read and before the snapshot is taken are in the copy already when
    they are replayed; read one transaction at a time, one is taken for a drop and the vertex loses what was given
    back after it. That vertex is reconciled with the original before the cutover question (and what was replayed
    meanwhile at the drain, the original still): the serving cluster ends equal to the original."""
    from moto.rds import models as rds_models

    from neptune_guard.approve import workflow
    from neptune_guard.remediate import replication
    from sandbox.aws import neptune_data

    monkeypatch.setattr(replication, "PAGE", 1)
    monkeypatch.setattr(replication, "MAX_PAGE", 1)
    session, sfn, arns = deployed
    neptune = member_session(session, ACCOUNT).client("neptune", region_name=REGION)
    original = neptune_data.volume(neptune.describe_db_clusters(DBClusterIdentifier="graph")["DBClusters"][0]["DbClusterResourceId"])
    neptune_data.run_gremlin(original, True, "g.addV('w').property(T.id, 'u').iterate(); g.addV('a::x').property(T.id, 'v')"
                                             ".property('p', 1).iterate(); g.V('v').addE('knows').to(__.V('u')).property(T.id, 'e1')")
    snapshot = rds_models.RDSBackend.create_db_cluster_snapshot

    def dance_then_snapshot(self, db_cluster_identifier, *args, **kwargs):
        if db_cluster_identifier == "graph":
            neptune_data.run_gremlin(original, True, "g.V('v').properties().drop().iterate(); g.E('e1').drop()")
            neptune_data.run_opencypher(original, True, "MATCH (n) WHERE id(n) = $vid REMOVE n:a", {"vid": "v"})
            neptune_data.run_gremlin(original, True, "g.V('v').property('p', 1).iterate(); "
                                                     "g.V('v').addE('knows').to(__.V('u')).property(T.id, 'e1')")
            neptune_data.run_opencypher(original, True, "MATCH (n) WHERE id(n) = $vid SET n:a", {"vid": "v"})
            neptune_data.run_opencypher(original, True, "MATCH (n) WHERE id(n) = $vid REMOVE n:x", {"vid": "v"})
        return snapshot(self, db_cluster_identifier, *args, **kwargs)

    monkeypatch.setattr(rds_models.RDSBackend, "create_db_cluster_snapshot", dance_then_snapshot)
    execution = workflow.start(sfn, arns["cluster"], request("graph"))
    decide(sfn, execution, "snapshot", approved=True, approver="bob")
    awaiting(sfn, execution, "cutover", timeout=120)
    decide(sfn, execution, "cutover", approved=True, approver="bob")
    awaiting(sfn, execution, "decommission", timeout=120)
    decide(sfn, execution, "decommission", approved=True, approver="bob")
    assert finish(sfn, execution)["status"] == "SUCCEEDED"
    state = final_state(sfn, execution)
    assert state["snapshot_bound"]["positions"]["pg"] != state["stream_position"]["positions"]["pg"]
    serving = neptune_data.volume(neptune.describe_db_clusters(DBClusterIdentifier="graph")["DBClusters"][0]["DbClusterResourceId"])
    assert serving is not original  # (the original is deleted now, its volume kept by the local Neptune)
    assert serving.vertices["v"] == original.vertices["v"] == {"labels": {"a"}, "props": {"p": {(1, "Integer")}}}
    assert serving.edges == original.edges and "e1" in serving.edges
    assert [o for o in state["replication"]["overlaps"] if not o.get("settled")] == [] and state["replication"]["settling"] is None
    assert state["proof"]["overlaps"] == []  # settled before the question: the drain had only what was replayed meanwhile


def test_the_pause_beside_the_cutover_question_keeps_the_history_bounded_however_long_on_call_takes():
    from neptune_guard.remediate import live_cutover

    for timeout in (600, 24 * 3600, 7 * 24 * 3600):
        waited, runs, pauses = 0.0, 0, []
        while waited < timeout:
            pauses.append(live_cutover.pause_between_runs(waited, timeout))
            waited += pauses[-1] + 1  # a run that finds nothing new returns within a second
            runs += 1
        assert pauses[0] == 5 and runs <= live_cutover.ANSWER_RUNS, (timeout, runs)
        assert max(pauses) <= max(60, timeout / live_cutover.ANSWER_RUNS * 1.2)


def test_a_vpc_functions_interfaces_outlive_it_until_lambda_releases_them_with_its_role(local_aws):
    """The local Lambda as documented: the interfaces of a deleted function go only while its role exists, and a
    security group in use by one cannot be deleted. Deleting the role before they go leaves the group stuck."""
    import json

    from botocore.exceptions import ClientError

    ec2, iam, lam = (local_aws.client(name, region_name=REGION) for name in ("ec2", "iam", "lambda"))
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]["SubnetId"]
    group = ec2.create_security_group(GroupName="fn", Description="fn", VpcId=vpc)["GroupId"]
    role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))["Role"]["Arn"]
    lam.create_function(FunctionName="fn", Runtime="python3.13", Role=role, Handler="x.y", Code={"ZipFile": b"PK"},
                        VpcConfig={"SubnetIds": [subnet], "SecurityGroupIds": [group]})
    in_group = [{"Name": "group-id", "Values": [group]}]
    assert len(ec2.describe_network_interfaces(Filters=in_group)["NetworkInterfaces"]) == 1
    lam.delete_function(FunctionName="fn")
    iam.delete_role(RoleName="fn")
    time.sleep(1.5)
    assert len(ec2.describe_network_interfaces(Filters=in_group)["NetworkInterfaces"]) == 1
    with pytest.raises(ClientError, match="DependencyViolation"):
        ec2.delete_security_group(GroupId=group)


def test_a_rollback_after_the_new_cluster_served_brings_its_writes_back_to_the_original(deployed, monkeypatch, fail):
    """The application writes on through a fault after the swap: what the new cluster acknowledged while it held the
    name is replicated back, proven, before the original serves again; no acknowledged write is missing. The first
    run back applies its changes and never returns (a crash): the retry finds the original's stream moved by it,
    not by the application, and goes on."""
    from neptune_guard.approve import workflow
    from neptune_guard.remediate import replication

    session, sfn, arns = deployed
    replicate, crashed = replication.replicate, []

    def crash_once_on_the_way_back(source, target, *args, **kwargs):
        result = replicate(source, target, *args, **kwargs)
        if "-retired-" in target.base and not crashed and sum(result["applied"].values()):
            crashed.append(result)
            raise ConnectionResetError("the replicator's run ended before it returned")
        return result

    monkeypatch.setattr(replication, "replicate", crash_once_on_the_way_back)
    writer = Writer(ACCOUNT, REGION, "graph", "property-graph").start()
    execution = workflow.start(sfn, arns["cluster"], request("graph"))
    on_the_swap(monkeypatch, execution, writer.resume)  # the application writes to the new cluster under the name
    fail("modify_db_instance", lambda identifier, changes: changes.get("new_db_instance_identifier") == "graph-1", times=1)
    try:
        decide(sfn, execution, "snapshot", approved=True, approver="bob")
        awaiting(sfn, execution, "cutover", timeout=120)
        writer.pause()
        decide(sfn, execution, "cutover", approved=True, approver="bob")
        result = finish(sfn, execution)
        time.sleep(0.3)
    finally:
        writer.stop()
    state = final_state(sfn, execution)
    assert (result["status"], result["error"]) == ("FAILED", "RolledBack"), state.get("rollback_error")
    served = state["rollback"]["served_writes"]
    assert served["replicated_back"] > 0 and state["replicated_back"]["proven"], served
    assert crashed and state["quiet_before_return"]["proven"]
    assert writer.missing() == [] and len(writer.acknowledged) > 20
    original = member_session(session, ACCOUNT).client("neptune", region_name=REGION).describe_db_clusters(DBClusterIdentifier="graph")["DBClusters"][0]
    assert not original["StorageEncrypted"]  # the original serves again


def test_a_stream_that_would_expire_before_the_cutover_is_refused_at_plan_time(deployed):
    """Replication reads the stream from the snapshot to the cutover: a cutover question that may wait 7 days, on a
    stream kept 7 days (the default), could find its records gone, and the plan says what to change. The soak does
    not count: the decommission proof keeps the original whenever the records it needs are gone."""
    from neptune_guard.approve import workflow

    _, sfn, arns = deployed
    result = finish(sfn, workflow.start(sfn, arns["cluster"], {**request("graph"), "approval_timeout_seconds": 7 * 86400}))
    assert (result["status"], result["error"]) == ("FAILED", "Refused")
    assert "raise neptune_streams_expiry_days" in final_state(sfn, result["executionArn"])["error"]["Cause"]
    soaked = workflow.start(sfn, arns["cluster"], {**request("triples"), "soak_seconds": 7 * 86400})
    assert awaiting(sfn, soaked, "snapshot")["status"] == "RUNNING"


def _group(group_id, vpc="vpc-1", ingress=(), egress=({"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},)):
    return {"GroupId": group_id, "VpcId": vpc, "IpPermissions": list(ingress), "IpPermissionsEgress": list(egress)}


def _from_group(source, port=8182):
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "UserIdGroupPairs": [{"GroupId": source}]}


def _from_range(cidr, port=8182):
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": [{"CidrIp": cidr}]}


SUBNETS = [{"SubnetId": "subnet-a", "CidrBlock": "10.0.1.0/24"}, {"SubnetId": "subnet-b", "CidrBlock": "10.0.2.0/24"}]


def test_the_replicator_joins_what_the_cluster_already_admits_and_nothing_else():
    """Security groups as DescribeSecurityGroups returns them: the replicator's interfaces go where the application's
    would, in a group the cluster's groups admit (with egress back to them) or in subnets an admitted range holds."""
    from neptune_guard.remediate.network import replicator_reach

    def reach(cluster_groups, other_groups=(), subnets=SUBNETS):
        return replicator_reach(8182, "vpc-1", list(cluster_groups), list(other_groups), subnets)

    assert reach([_group("sg-db", ingress=[_from_group("sg-db")])]) == {"via": "security group", "group_id": "sg-db", "subnets": ["subnet-a", "subnet-b"]}
    application = _group("sg-app")
    assert reach([_group("sg-db", ingress=[_from_group("sg-app")])], [application])["group_id"] == "sg-app"
    # The clusters' own group is preferred: the application's may be admitted by more than these clusters.
    assert reach([_group("sg-db", ingress=[_from_group("sg-app"), _from_group("sg-db")])], [application])["group_id"] == "sg-db"
    # A group admitted on another port, in another VPC, or unknown (another account's) is no way in. Its egress does
    # not matter: the replicator's own group, beside it, keeps a new group's outbound rule.
    assert reach([_group("sg-db", ingress=[_from_group("sg-app", port=5432)])], [application]) is None
    assert reach([_group("sg-db", ingress=[_from_group("sg-app")])], [_group("sg-app", vpc="vpc-2")]) is None
    assert reach([_group("sg-db", ingress=[_from_group("sg-app")])], []) is None
    closed = _group("sg-app", egress=[{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    assert reach([_group("sg-db", ingress=[_from_group("sg-app")])], [closed])["group_id"] == "sg-app"
    # Lambda takes 16 subnets at most; a subnet without an IPv4 range is none an address range holds.
    many = [{"SubnetId": f"subnet-{n:02}", "CidrBlock": f"10.0.{n}.0/24"} for n in range(20)] + [{"SubnetId": "subnet-v6"}]
    assert reach([_group("sg-db", ingress=[_from_range("10.0.0.0/16")])], subnets=many)["subnets"] == [f"subnet-{n:02}" for n in range(16)]
    assert len(reach([_group("sg-db", ingress=[_from_group("sg-db")])], subnets=many)["subnets"]) == 16
    # An address range: only the subnets it holds.
    assert reach([_group("sg-db", ingress=[_from_range("10.0.2.0/23")])]) == {"via": "address range", "ranges": ["10.0.2.0/23"], "subnets": ["subnet-b"]}
    assert reach([_group("sg-db", ingress=[_from_range("10.0.0.0/16")])])["subnets"] == ["subnet-a", "subnet-b"]
    assert reach([_group("sg-db", ingress=[_from_range("192.168.0.0/16"), {"IpProtocol": "tcp", "FromPort": 8182, "ToPort": 8182,
                                                                           "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])]) is None
    assert reach([_group("sg-db", ingress=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.0.1.0/24"}]}])])["subnets"] == ["subnet-a"]


def _reaches(session, cluster, subnets, group) -> bool:
    """Whether a function with interfaces in the subnets and the group gets an answer from the cluster's endpoint."""
    from botocore.exceptions import EndpointConnectionError
    from moto.awslambda.models import lambda_backends

    from sandbox.aws import neptune_data

    from neptune_guard.remediate.live_cutover import LAMBDA_TRUST

    name, account, iam = f"probe-{group}", session.client("sts").get_caller_identity()["Account"], session.client("iam")
    if not iam.list_roles(PathPrefix="/probe/")["Roles"]:
        iam.create_role(RoleName="probe", Path="/probe/", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))
    session.client("lambda", region_name=REGION).create_function(
        FunctionName=name, Runtime="python3.13", Role=f"arn:aws:iam::{account}:role/probe/probe", Handler="x.handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18}, VpcConfig={"SubnetIds": subnets, "SecurityGroupIds": [group]})
    function = lambda_backends[account][REGION].get_function(name)
    calling = neptune_data.calling_function.set(function)
    try:
        neptune_data.handle("GET", f"https://{cluster['Endpoint']}:8182/propertygraph/stream?iteratorType=LATEST", {}, b"")
        return True
    except neptune_data.DataPlaneError:  # an answer, if not records: the empty stream's
        return True
    except EndpointConnectionError:
        return False
    finally:
        neptune_data.calling_function.reset(calling)
        session.client("lambda", region_name=REGION).delete_function(FunctionName=name)


def test_a_streams_cluster_its_groups_do_not_admit_from_inside_takes_the_freeze_path_and_no_group_changes(local_aws):
    """The plan reads the cluster's rules; the data plane (sandbox/aws/neptune_data.py) holds a function whose interfaces
    are not admitted outside, as a VPC would."""
    from neptune_guard.remediate.plan import streams_path
    from sandbox.demo import organization

    organization.seed_region(local_aws, REGION, {"clusters": {"ledger": {"encryption": "none", "instances": {"ledger-1": "db.r6g.large"},
                                                                         "streams": True}}}, "123456789012")
    neptune, ec2 = local_aws.client("neptune", region_name=REGION), local_aws.client("ec2", region_name=REGION)
    ledger = neptune.describe_db_clusters(DBClusterIdentifier="ledger")["DBClusters"][0]
    (group,) = [g["VpcSecurityGroupId"] for g in ledger["VpcSecurityGroups"]]
    path = streams_path(neptune, ec2, local_aws.client("lambda", region_name=REGION), ledger, 3600)
    assert path["path"] == "streams" and path["network"]["reach"]["via"] == "address range"
    rules_before = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group]}])["SecurityGroupRules"]
    ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=[_from_range("172.31.0.0/16")])
    path = streams_path(neptune, ec2, local_aws.client("lambda", region_name=REGION), ledger, 3600)
    assert path["path"] == "freeze" and "neither a security group nor an IPv4 range" in path["why"]
    subnets = [s["SubnetIdentifier"] for s in neptune.describe_db_subnet_groups(DBSubnetGroupName=ledger["DBSubnetGroup"])["DBSubnetGroups"][0]["Subnets"]]
    assert not _reaches(local_aws, ledger, subnets, group)  # even inside the cluster's own group: it admits no one now
    vpc = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["VpcId"]
    application = ec2.create_security_group(GroupName="application", Description="the application", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[_from_group(application)])
    path = streams_path(neptune, ec2, local_aws.client("lambda", region_name=REGION), ledger, 3600)
    assert path["network"]["reach"] == {"via": "security group", "group_id": application, "subnets": path["network"]["subnets"]}
    assert _reaches(local_aws, ledger, subnets, application)
    ec2.revoke_security_group_egress(GroupId=application, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    assert not _reaches(local_aws, ledger, subnets, application)  # admitted, but nothing lets it out
    assert neptune.describe_db_clusters(DBClusterIdentifier="ledger")["DBClusters"][0]["VpcSecurityGroups"] == ledger["VpcSecurityGroups"]
    assert len(ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group]}])["SecurityGroupRules"]) == len(rules_before)


def test_the_replicator_reads_and_writes_only_the_clusters_it_was_made_for(monkeypatch):
    """Its network reaches whatever admits the application, and the remediation role may invoke it: the hosts it may
    read and write are fixed in its configuration when it is made, and the production name is never a target."""
    from types import SimpleNamespace

    from neptune_guard.remediate import live_cutover, replication

    plan = {"cluster_id": "Ledger", "new_cluster_id": "ledger-cmk-ng1a2b3c4d", "retired_cluster_id": "ledger-retired-ng1a2b3c4d"}
    for name, hosts in live_cutover.replicator_hosts(plan, "ledger.cluster-c0ffee.us-east-1.neptune.amazonaws.com").items():
        monkeypatch.setenv(name, hosts)

    def cluster(name):
        return {"endpoint": f"{name}.cluster-c0ffee.us-east-1.neptune.amazonaws.com", "region": REGION}

    context = SimpleNamespace(get_remaining_time_in_millis=lambda: 900_000, function_name="neptune-guard-replicator-1a2b3c4d")
    refused = [{"action": "replicate", "source": cluster("ledger-retired-ng1a2b3c4d"), "target": cluster("ledger")},  # production
               {"action": "replicate", "source": cluster("ledger"), "target": cluster("orders")},
               {"action": "position", "source": cluster("orders")},
               {"action": "prove", "source": cluster("ledger.cluster-c0ffee.us-east-1.neptune.amazonaws.com.attacker.example")},
               {"action": "replicate", "source": cluster("orders"), "target": cluster("ledger-cmk-ng1a2b3c4d")}]
    for event in refused:
        with pytest.raises(replication.NotItsCluster):
            replication.handler(event, context)
    # The code is signed, but whoever makes a function of it chooses its environment: one told it may write a customer's
    # cluster, or another execution's copy, still never writes either.
    monkeypatch.setenv(replication.WRITE_HOSTS, ",".join(cluster(n)["endpoint"] for n in ("orders", "orders-cmk-ng99999999")))
    monkeypatch.setenv(replication.READ_HOSTS, cluster("ledger")["endpoint"])
    for target in ("orders", "orders-cmk-ng99999999"):
        with pytest.raises(replication.NotItsCluster, match="never written"):
            replication.handler({"action": "replicate", "source": cluster("ledger"), "target": cluster(target)}, context)


def test_a_replicator_deleted_under_the_workflow_is_refused_by_name_not_as_a_fault(local_aws):
    """Deleted between two calls (or before a forged one is made under its name): the step says the function it made
    is gone, the same refusal as a replaced one, not a bare not-found error."""
    from neptune_guard.remediate import live_cutover
    from neptune_guard.remediate.resources import NotOurs, Step

    execution = f"arn:aws:states:{REGION}:123456789012:execution:NeptuneGuardClusterRemediation:gone"
    step = Step(request={"account_id": "123456789012", "region": REGION}, execution=execution,
                state={"replicator": {"made": {"code_sha256": "x", "role": "r", "hosts": {}, "last_modified": "t"}}},
                _session=local_aws)
    with pytest.raises(NotOurs, match="not the function this execution made: it was deleted"):
        live_cutover._invoke(step, {"action": "position"})


def test_a_replicator_replaced_under_its_name_is_not_believed(deployed):
    """A holder of the remediation role may delete the execution's replicator and make another under its name, with
    its tag, role and hosts, answering a forged proof: the workflow checks it is the function it made, before and
    after each call, and the original keeps serving with every acknowledged write."""
    import io
    import zipfile

    from neptune_guard.approve import workflow
    from neptune_guard.approve.approvals import NoPendingApproval

    session, sfn, arns = deployed
    writer = Writer(ACCOUNT, REGION, "graph", "property-graph").start()
    execution = workflow.start(sfn, arns["cluster"], request("graph"))
    try:
        decide(sfn, execution, "snapshot", approved=True, approver="bob")
        awaiting(sfn, execution, "cutover", timeout=120)
        lam = member_session(session, ACCOUNT).client("lambda", region_name=REGION)
        name = next(f["FunctionName"] for f in lam.list_functions()["Functions"] if f["FunctionName"].startswith("neptune-guard-replicator-"))
        real = lam.get_function(FunctionName=name)
        forged = io.BytesIO()
        with zipfile.ZipFile(forged, "w") as archive:
            archive.writestr("neptune_guard/remediate/replication.py", "def handler(event, context):\n    return {'caught_up': True, "
                             "'proven': True, 'positions': event.get('positions'), 'applied': {}, 'lag_records': 0, 'lag_counted': True, "
                             "'lag_seconds': 0, 'latest': {}, 'source_latest': {}, 'past_position': {}}\n")
        lam.delete_function(FunctionName=name)
        configuration = real["Configuration"]
        lam.create_function(FunctionName=name, Runtime="python3.13", Role=configuration["Role"], Handler=configuration["Handler"],
                            Code={"ZipFile": forged.getvalue()}, Environment=configuration["Environment"], Tags=real["Tags"],
                            VpcConfig={"SubnetIds": configuration["VpcConfig"]["SubnetIds"],
                                       "SecurityGroupIds": configuration["VpcConfig"]["SecurityGroupIds"]})
        writer.pause()
        try:
            decide(sfn, execution, "cutover", approved=True, approver="bob")
        except NoPendingApproval:  # the replicating branch beside the question found it first: the question is withdrawn
            pass
        description = finish(sfn, execution)
    finally:
        writer.stop()
    state = final_state(sfn, execution)
    assert description["status"] == "FAILED" and "not the function this execution made" in json.dumps(state), state.get("error")
    assert "cutover" not in state or not state["cutover"].get("resource_id")
    assert writer.missing() == []


def test_a_replicator_left_by_an_execution_stopped_by_hand_is_removed_when_it_ends(deployed):
    """Stopped while replicating, the execution never reaches its removal: the function that reaches both clusters, its
    role and its group would stay. Step Functions announces the end; the function goes at once, the role and group once
    Lambda has released the interfaces (until then the invocation fails, and Lambda retries the same event). A step
    still running when it was stopped can make it again: the end, delivered again later, removes that too."""
    from neptune_guard.approve import workflow
    from neptune_guard.handlers import execution_ended
    from neptune_guard.remediate import guard, live_cutover
    from neptune_guard.remediate.ended import ReplicatorStillReleasing
    from neptune_guard.remediate.resources import ResourceNotReady, Step
    from tests.conftest import LambdaContext, status_change

    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["cluster"], request("graph"))
    decide(sfn, execution, "snapshot", approved=True, approver="bob")
    awaiting(sfn, execution, "cutover", timeout=120)
    sfn.stop_execution(executionArn=execution, cause="stopped by hand while replicating")
    member = member_session(session, ACCOUNT)
    lam, iam, ec2 = (member.client(name, region_name=REGION) for name in ("lambda", "iam", "ec2"))

    def replicator() -> dict:
        return {"functions": [f["FunctionName"] for f in lam.list_functions()["Functions"] if f["FunctionName"].startswith("neptune-guard-replicator-")],
                "roles": [r["RoleName"] for r in iam.list_roles(PathPrefix="/neptune-guard/")["Roles"]],
                "groups": [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"].startswith("neptune-guard-replicator-")]}

    assert all(replicator().values()), replicator()
    attempts = []
    for _ in range(20):  # Lambda's retries of the same event
        try:
            attempts.append(execution_ended.handler(status_change(execution, "ABORTED"), LambdaContext()))
            break
        except ReplicatorStillReleasing as waiting:
            attempts.append(str(waiting))
            assert not replicator()["functions"], "the function goes first, at once"
            time.sleep(0.5)
    assert replicator() == {"functions": [], "roles": [], "groups": []}, attempts
    assert len(attempts[-1]["replicator_removed"]) >= 2, attempts  # the role and the group, at least, on the last run
    assert execution_ended.handler(status_change(execution, "ABORTED"), LambdaContext())["replicator_removed"] == []  # once more: nothing

    # A step already running when the execution was stopped is not stopped: one making the replicator lands after the
    # release. The end, delivered again once no step can still run, removes what it made.
    record = guard.read_execution(sfn, execution, session.client("sts").get_caller_identity()["Account"], ended=True)
    with pytest.raises(ResourceNotReady, match="creating"):
        live_cutover.provision_replicator(Step(request=record.started_with, execution=execution, plan=record.plan))
    assert replicator()["functions"], "the late step made the replicator again"
    late = {"Records": [{"messageId": "1", "body": json.dumps(status_change(execution, "ABORTED"))}]}
    for _ in range(20):  # SQS delivers the message again until it succeeds
        try:
            execution_ended.delivered_late(late, LambdaContext())
            break
        except ReplicatorStillReleasing:
            time.sleep(0.5)
    assert replicator() == {"functions": [], "roles": [], "groups": []}
