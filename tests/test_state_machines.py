"""The ASL files themselves: one retry policy everywhere, every approval checked before it is acted on."""

import json
from pathlib import Path

import pytest

STATE_MACHINES = Path(__file__).resolve().parent.parent / "state_machines"
POLICY = json.loads((STATE_MACHINES / "retry_policy.json").read_text())


@pytest.fixture(params=["cluster_remediation", "snapshot_remediation", "scheduled_scan"])
def states(request):
    return json.loads((STATE_MACHINES / f"{request.param}.asl.json").read_text())["States"]


def test_every_task_retries_lambda_service_errors_with_the_one_policy(states):
    for name, state in states.items():
        if state["Type"] == "Task":
            assert POLICY["LambdaErrors"] in state["Retry"], name
            waits = [r for r in state["Retry"] if r["ErrorEquals"] == ["ResourceNotReady"]]
            assert waits in ([], *([POLICY[k]] for k in POLICY if k.startswith("ResourceNotReady"))), name


def test_every_approval_is_checked_for_approved_true_and_its_stage_before_anything_destructive(states):
    for name, state in states.items():
        if state.get("Resource", "").endswith("waitForTaskToken"):
            stage = state["Parameters"]["Payload"]["stage"]
            check = states[state["Next"]]
            assert check["Type"] == "Choice", name
            text = json.dumps(check["Choices"])
            assert f"$.approvals.{stage}.approved" in text and f'"StringEquals": "{stage}"' in text, name
            assert '"BooleanEquals": true' in text and "IsBoolean" in text, name


def test_the_lambda_integration_is_partition_aware(states):
    for name, state in states.items():
        assert "arn:aws:" not in json.dumps(state), name


def _unreachable(machine: dict) -> set[str]:
    """States no transition leads to from StartAt (Next, Default, a choice's or a catcher's Next), nested ones too."""
    states, seen, todo = machine["States"], set(), [machine["StartAt"]]
    unreachable = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        state = states[name]
        todo += [state[k] for k in ("Next", "Default") if k in state]
        todo += [choice["Next"] for choice in state.get("Choices", []) if "Next" in choice]
        todo += [catcher["Next"] for catcher in state.get("Catch", [])]
        for nested in state.get("Branches", []) + [state[k] for k in ("ItemProcessor", "Iterator") if k in state]:
            unreachable |= _unreachable(nested)
    return unreachable | (set(states) - seen)


@pytest.mark.parametrize("name", ["cluster_remediation", "snapshot_remediation", "scheduled_scan"])
def test_every_state_can_be_reached(name):
    """A state nothing leads to is an outcome on-call is told to expect and never sees."""
    assert _unreachable(json.loads((STATE_MACHINES / f"{name}.asl.json").read_text())) == set()
