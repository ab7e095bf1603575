"""Re-encrypting a Neptune cluster under a customer-managed key: the steps the state machine calls, by name.

The state machine (state_machines/cluster_remediation.asl.json) calls one step at a time through the steps function,
each a function of a `Step` (the request, the plan, the state so far). Every step is idempotent and convergent: it
looks at what is there, does the next thing, and raises ResourceNotReady while AWS is still working, so that the
waiting and the back-off live in the ASL. A step touches only what carries this execution's tag (tags.py); all AWS
calls go through the member account's remediation role.

Each stage is a module, in the order an execution meets them: plan; rebuild (mark, snapshot, restore, instances,
verify); the write proof, by stream position on the streams path (live_cutover, replication) or by CloudWatch metrics
on the freeze path (writes); cutover (the name swap) and endpoints; decommission; rollback; notify.
"""

from __future__ import annotations

from neptune_guard.remediate import (
    cutover,
    decommission,
    endpoints,
    guard,
    live_cutover,
    notify,
    plan,
    rebuild,
    rollback,
    writes,
)

# Each step with the approval it needs to have been granted, in this execution's history, before it may run.
STEPS = {
    **live_cutover.STEPS,
    "plan": (plan.plan_cluster, None),
    guard.APPROVAL_STEP: (notify.request_approval, None),
    "writes_stopped": (writes.writes_stopped, "snapshot"),
    "mark_original": (rebuild.mark_original, "snapshot"),
    "unmark_original": (rebuild.unmark_original, "snapshot"),
    "create_snapshot": (rebuild.create_snapshot, "snapshot"),
    "snapshot_available": (rebuild.snapshot_available, "snapshot"),
    "restore_cluster": (rebuild.restore_cluster, "snapshot"),
    "new_cluster_available": (rebuild.new_cluster_available, "snapshot"),
    "apply_settings": (rebuild.apply_settings, "snapshot"),
    "create_instances": (rebuild.create_instances, "snapshot"),
    "instances_available": (rebuild.instances_available, "snapshot"),
    "verify": (rebuild.verify, "snapshot"),
    "measure_writes": (writes.measure_writes, "snapshot"),
    "move_original_aside": (cutover.move_original_aside, "cutover"),
    "confirm_no_writes": (writes.confirm_no_writes, "cutover"),
    "give_new_cluster_the_name": (cutover.give_new_cluster_the_name, "cutover"),
    "move_custom_endpoints": (endpoints.move_custom_endpoints, "cutover"),
    "retire_original": (decommission.retire_original, "cutover"),
    "hand_over_new_cluster": (cutover.hand_over_new_cluster, "cutover"),
    "resolve_finding": (notify.resolve_finding, "cutover"),
    "keep_retired_stopped": (decommission.keep_retired_stopped, "cutover"),
    "withdraw_decommission_approval": (decommission.withdraw_decommission_approval, "cutover"),
    "release_retained": (decommission.release_retained, "cutover"),
    "prove_no_writes_since_cutover": (decommission.prove_no_writes_since_cutover, "decommission"),
    "archive_retired": (decommission.archive_retired, "decommission"),
    "delete_retired": (decommission.delete_retired, "decommission"),
    "roll_back": (rollback.roll_back, None),
    "notify": (notify.notify, None),
}
