"""The ASL checks what an approval says before any destructive state, so that whatever else comes back
with a task token (a forged `{"approved": false}`, another stage's approval) is not an approval.
The endpoint already refuses such decisions (test_approvals.py); these prove the state machines do too
(test_state_machines.py checks the Choice itself)."""

import json
from pathlib import Path

import pytest

from neptune_guard.approve import approvals, workflow
from sandbox.demo import workflows
from tests.conftest import member_session

# The remediation workflows: the ones that change customer resources, hence the ones gated by approvals.
STATE_MACHINES = sorted((Path(__file__).resolve().parent.parent / "state_machines").glob("*_remediation.asl.json"))
ACCOUNT, REGION = "111111111111", "us-east-1"


def approval_tasks(definition: dict):
    for name, state in definition["States"].items():
        if state.get("Type") == "Task" and state.get("Resource", "").endswith(".waitForTaskToken"):
            yield name, state


def test_every_state_machine_has_approval_tasks():
    assert STATE_MACHINES and all(list(approval_tasks(json.loads(path.read_text()))) for path in STATE_MACHINES)


SCENARIO = {"accounts": {ACCOUNT: {REGION: {
    "keys": {"neptune-cmk": {"state": "Enabled"}},
    "clusters": {"orders": {"encryption": "none", "instances": {"orders-1": "db.r6g.large"}}},
}}}}


@pytest.mark.parametrize("forged", [{"approved": False, "stage": "snapshot"}, {"approved": True, "stage": "cutover"},
                                    {"approved": "true", "stage": "snapshot"}, {}])
def test_a_forged_decision_sent_with_the_task_token_changes_nothing(deploy_workflows, forged):
    """As someone holding states:SendTaskSuccess would send it, bypassing the endpoint."""
    session, sfn, arns = deploy_workflows(SCENARIO)
    execution = workflow.start(sfn, arns["cluster"], {"account_id": ACCOUNT, "region": REGION, "cluster_id": "orders",
                                                      "target_key": "alias/neptune-cmk", "requested_by": "someone"})

    def waiting_for(stage):
        def until(description, history):
            try:
                return approvals.pending_approval(sfn, execution)["stage"] == stage
            except approvals.NoPendingApproval:
                return False
        return until

    workflows.wait_for(sfn, execution, waiting_for("snapshot"))
    sfn.send_task_success(taskToken=approvals.pending_approval(sfn, execution)["token"], output=json.dumps(forged))
    result = workflows.wait_for(sfn, execution, waiting_for("cutover"))

    assert (result["status"], result.get("error")) == ("FAILED", "NotApproved")
    neptune = member_session(session, ACCOUNT).client("neptune", region_name=REGION)
    assert neptune.describe_db_cluster_snapshots(SnapshotType="manual")["DBClusterSnapshots"] == []
