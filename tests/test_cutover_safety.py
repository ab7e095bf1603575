"""The freeze path's windows, driven through the real ASL: a write in each gap the metrics proof used to leave is caught."""

import json

import pytest
from moto.rds import models as rds_models

from neptune_guard.approve import approvals, workflow
from neptune_guard.detect.inventory import retention_reason
from neptune_guard.remediate import naming, notify
from neptune_guard.remediate.resources import Step
from neptune_guard.tags import CUTOVER, DECOMMISSION_APPROVED_BY, RETIRED_BY
from sandbox.aws import write_activity
from sandbox.demo import workflows
from tests.conftest import decide, final_state, finish, member_session, status_change

ACCOUNT, REGION = "111111111111", "us-east-1"
SCENARIO = {"accounts": {ACCOUNT: {REGION: {
    "keys": {"neptune-cmk": {"state": "Enabled"}},
    "clusters": {name: {"encryption": "none", "instances": {f"{name}-1": "db.r6g.large"}}
                 for name in ("sales", "stock")},
}}}}
FAST = {"approval_timeout_seconds": 600, "soak_seconds": 0, "metrics_settle_seconds": 0}


@pytest.fixture
def deployed(deploy_workflows):
    return deploy_workflows(SCENARIO)


def request(cluster_id):
    return {"account_id": ACCOUNT, "region": REGION, "cluster_id": cluster_id, "target_key": "alias/neptune-cmk", **FAST}


def clusters(session):
    neptune = member_session(session, ACCOUNT).client("neptune", region_name=REGION)
    return {c["DBClusterIdentifier"]: c for c in neptune.describe_db_clusters()["DBClusters"]}


def write_when_renamed(monkeypatch, old: str, new: str, writes_to: str):
    """The application's open connection writes to `writes_to` the moment `old` is renamed to `new`."""
    original = rds_models.RDSBackend.modify_db_cluster

    def modify(self, kwargs):
        renaming = ((kwargs.get("db_cluster_identifier") or "").lower(), (kwargs.get("new_db_cluster_identifier") or "").lower())
        result = original(self, kwargs)  # (it takes the identifiers out of kwargs)
        if renaming == (old.lower(), new.lower()):
            write_activity.record_write(self.account_id, self.region_name, writes_to)
        return result

    monkeypatch.setattr(rds_models.RDSBackend, "modify_db_cluster", modify)


def assert_kept_through_decommission(session, sfn, execution, retired):
    """Approved all the way, the original is parked at decommission with the writes named, asked again, never deleted."""
    decide(sfn, execution, "snapshot")
    decide(sfn, execution, "cutover")
    first = decide(sfn, execution, "decommission")
    second = asked_again(sfn, execution, first["token"])
    assert retired in clusters(session)
    # The approval the parked run had is spent: until on-call approves again, the role may not delete the original.
    assert {key for tags in tags_on(session, retired).values() for key in tags} >= {CUTOVER, RETIRED_BY}
    assert all(DECOMMISSION_APPROVED_BY not in tags for tags in tags_on(session, retired).values())
    decide(sfn, execution, "decommission", approved=False)
    assert finish(sfn, execution)["status"] == "SUCCEEDED" and retired in clusters(session)
    assert final_state(sfn, execution)["decommission_error"]["Error"] == "WritesDetected"
    # Two questions of one stage: which was approved is told by its token (the endpoint takes back the marks of an
    # approval that reached neither).
    assert approvals.answered_with_an_approval(sfn, execution, first["token"])
    assert not approvals.answered_with_an_approval(sfn, execution, second)
    # Kept: the customer's again, with no mark or retirement tag of an execution that has ended (the scan reports it
    # as any unencrypted cluster, not as "decommission pending" for good).
    kept = tags_on(session, retired)
    assert kept and not [key for tags in kept.values() for key in tags if key.startswith("neptune-guard:")], kept
    assert all(retention_reason(tags) is None for tags in kept.values())


def asked_again(sfn, execution, answered_token):
    """The task token of the next question, once the execution waits on one other than the one answered (it records
    the answer asynchronously)."""
    def until(description, history):
        try:
            return approvals.pending_approval(sfn, execution)["token"] != answered_token
        except approvals.NoPendingApproval:
            return False
    workflows.wait_for(sfn, execution, until, 300.0)
    return approvals.pending_approval(sfn, execution)["token"]


def tags_on(session, cluster_id):
    """The tags of a cluster and of each of its instances, by ARN."""
    neptune = member_session(session, ACCOUNT).client("neptune", region_name=REGION)
    cluster = neptune.describe_db_clusters(DBClusterIdentifier=cluster_id)["DBClusters"][0]
    instances = neptune.describe_db_instances(Filters=[{"Name": "db-cluster-id", "Values": [cluster_id]}])["DBInstances"]
    return {arn: {t["Key"]: t["Value"] for t in neptune.list_tags_for_resource(ResourceName=arn)["TagList"]}
            for arn in [cluster["DBClusterArn"], *(i["DBInstanceArn"] for i in instances)]}


def names(execution, cluster_id):
    token = naming.execution_token(execution)
    return naming.derived(cluster_id, "retired", token), naming.derived(cluster_id, "cmk", token)


def test_a_write_reaching_the_original_just_after_its_rename_stops_the_cutover(deployed, monkeypatch):
    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["cluster"], request("sales"))
    retired, _ = names(execution, "sales")
    write_when_renamed(monkeypatch, "sales", retired, retired)
    before = clusters(session)["sales"]["DbClusterResourceId"]
    decide(sfn, execution, "snapshot")
    decide(sfn, execution, "cutover")
    result = finish(sfn, execution)
    assert (result["status"], result["error"]) == ("FAILED", "WritesDetected")
    assert clusters(session)["sales"]["DbClusterResourceId"] == before  # the original serves under its name again


def test_a_write_reaching_the_original_during_the_name_swap_keeps_it_from_decommission(deployed, monkeypatch):
    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["cluster"], request("stock"))
    retired, new = names(execution, "stock")
    write_when_renamed(monkeypatch, new, "stock", retired)
    assert_kept_through_decommission(session, sfn, execution, retired)


def test_a_write_reaching_the_original_while_it_is_archived_keeps_it_from_deletion(deployed, monkeypatch):
    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["cluster"], request("sales"))
    retired, _ = names(execution, "sales")
    original = rds_models.RDSBackend.restore_db_cluster_from_snapshot

    def restore_for_the_archive(self, from_snapshot_id, overrides):
        result = original(self, from_snapshot_id, overrides)
        if "-archive-" in (overrides.get("db_cluster_identifier") or ""):  # hours pass; an old connection writes
            write_activity.record_write(self.account_id, self.region_name, retired)
        return result

    monkeypatch.setattr(rds_models.RDSBackend, "restore_db_cluster_from_snapshot", restore_for_the_archive)
    assert_kept_through_decommission(session, sfn, execution, retired)


def test_a_retired_original_deleted_by_hand_during_its_soak_ends_the_execution_once(deployed, monkeypatch):
    """The owner deletes the retired original before decommission: the execution says so and ends, instead of parking
    and asking again every day for a cluster that is gone."""
    from neptune_guard.handlers import steps

    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["cluster"], request("stock"))
    retired, _ = names(execution, "stock")
    neptune = member_session(session, ACCOUNT).client("neptune", region_name=REGION)
    keep_stopped, step_needs = steps.STEPS["keep_retired_stopped"]

    def deleted_by_the_owner_first(step):
        for instance in neptune.describe_db_instances(Filters=[{"Name": "db-cluster-id", "Values": [retired]}])["DBInstances"]:
            neptune.delete_db_instance(DBInstanceIdentifier=instance["DBInstanceIdentifier"], SkipFinalSnapshot=True)
        neptune.delete_db_cluster(DBClusterIdentifier=retired, SkipFinalSnapshot=True)
        return keep_stopped(step)

    monkeypatch.setitem(steps.STEPS, "keep_retired_stopped", (deleted_by_the_owner_first, step_needs))
    decide(sfn, execution, "snapshot")
    decide(sfn, execution, "cutover")
    result = finish(sfn, execution)
    assert (result["status"], result["error"]) == ("FAILED", "RetiredOriginalGone")
    cause = final_state(sfn, execution)["error"]["Cause"]
    snapshot = naming.derived("stock", "pre-cmk", naming.execution_token(execution), naming.MAX_SNAPSHOT_IDENTIFIER)
    assert "deleted outside this execution" in cause and snapshot in cause
    # The workflow's snapshot is the customer's now: not the role's to delete, and reported by the scan as any other.
    arn = neptune.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=snapshot)["DBClusterSnapshots"][0]["DBClusterSnapshotArn"]
    tags = {t["Key"]: t["Value"] for t in neptune.list_tags_for_resource(ResourceName=arn)["TagList"]}
    assert tags == {"neptune-guard:remediated-by": execution} and retention_reason(tags) is None


def test_an_execution_stopped_by_hand_leaves_no_approval_mark_behind(deployed):
    """Its marks would go on letting the remediation role snapshot, stop, rename or delete the original with no execution
    to use them. The end is read from Step Functions: an event naming a running execution takes nothing off."""
    from neptune_guard.handlers import execution_ended
    from tests.conftest import LambdaContext

    session, sfn, arns = deployed
    stopped, running = (workflow.start(sfn, arns["cluster"], request(name)) for name in ("sales", "stock"))
    for execution in (stopped, running):
        decide(sfn, execution, "snapshot")
    sfn.stop_execution(executionArn=stopped, cause="stopped by hand")

    refused = execution_ended.handler(status_change(running, "ABORTED"), LambdaContext())  # forged: it still runs
    assert refused["released"] == [] and "RUNNING" in refused["refused"]
    assert all(tags.get(CUTOVER) == running for tags in tags_on(session, "stock").values())
    released = execution_ended.handler(status_change(stopped, "ABORTED"), LambdaContext())
    assert len(released["released"]) == 2  # the cluster and its instance
    assert all(CUTOVER not in tags for tags in tags_on(session, "sales").values())
    assert execution_ended.handler(status_change(stopped, "ABORTED"), LambdaContext())["released"] == []  # run twice: nothing left
    sfn.stop_execution(executionArn=running)


def test_a_new_cluster_that_served_is_the_customers_once_its_execution_ends_or_rolls_back(deployed, fail):
    """It holds writes nobody else has: with the execution's creation tag left on it, the remediation role could still
    stop, change or delete it. The workflow hands it over as soon as its endpoints moved, before retiring the original
    (a retirement that fails parks the execution). Stopped by hand after the name swap with that hand-over failing,
    the execution's end hands it over, without stopping what serves; so does a rollback that keeps one."""
    from neptune_guard.handlers import execution_ended
    from tests.conftest import LambdaContext

    session, sfn, arns = deployed
    execution = workflow.start(sfn, arns["cluster"], request("sales"))
    retired = naming.derived("sales", "retired", naming.execution_token(execution))
    fail("stop_db_cluster", lambda *args, **kwargs: str(kwargs.get("cluster_identifier", args[0] if args else "")).lower() == retired)
    hand_over_fails = [True]
    fail("remove_tags_from_resource", lambda arn, keys, *rest: hand_over_fails[0] and arn.endswith(":cluster:sales")
         and "neptune-guard:created-by" in keys)
    decide(sfn, execution, "snapshot")
    decide(sfn, execution, "cutover")
    workflows.wait_for(sfn, execution, lambda d, history: any(e.get("stateEnteredEventDetails", {}).get("name") == "NotifyNeedsAttention"
                                                             for e in history), timeout=120)
    history = sfn.get_execution_history(executionArn=execution, maxResults=1000, reverseOrder=True)["events"]
    asked = json.loads(next(e["stateEnteredEventDetails"]["input"] for e in history
                            if e.get("stateEnteredEventDetails", {}).get("name") == "NotifyNeedsAttention"))
    assert asked["hand_over_error"] and asked["bookkeeping_error"]  # two faults in a row: neither hides the other
    told = notify.hand_over_note(Step(request=asked["request"], execution=execution, plan=asked["plan"], state=asked))
    assert "sales, which serves now, could not be handed over" in told[0] and execution in told[0]
    sfn.stop_execution(executionArn=execution, cause="stopped by hand while handing over and retiring failed")
    hand_over_fails[0] = False
    serving = clusters(session)["sales"]
    assert tags_on(session, "sales")[serving["DBClusterArn"]].get("neptune-guard:created-by") == execution  # still held
    ended = execution_ended.handler(status_change(execution, "ABORTED"), LambdaContext())
    assert ended["handed_over"] == [serving["DBClusterArn"]]
    assert clusters(session)["sales"]["Status"] == "available"  # it serves the production name: never stopped (review)
    for tags in tags_on(session, "sales").values():
        assert "neptune-guard:created-by" not in tags and tags["neptune-guard:remediated-by"] == execution


def test_a_snapshot_made_since_under_the_originals_name_is_not_released_as_the_planned_one(local_aws):
    """The end-of-execution release of a snapshot plan reads what its names hold now: another snapshot under the
    original's name is skipped (it is not the one the approval marked), not a failure that keeps the copy's mark on."""
    from neptune_guard.remediate import ended

    rds = local_aws.client("rds", region_name=REGION)
    rds.create_db_cluster(DBClusterIdentifier="orig-cluster", Engine="neptune")
    made_since = rds.create_db_cluster_snapshot(DBClusterIdentifier="orig-cluster", DBClusterSnapshotIdentifier="orig")["DBClusterSnapshot"]
    plan = {"kind": "snapshot-plan", "snapshot_id": "orig", "new_snapshot_id": "orig-cmk-ng1a2b3c4d",
            "snapshot_identity": {"arn": made_since["DBClusterSnapshotArn"], "created": "2026-01-01T00:00:00+00:00"}}
    assert ended.marked_by_plan(rds, plan, {}) == []
