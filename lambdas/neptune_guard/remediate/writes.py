"""The freeze path's write proof, from the original's CloudWatch metrics: no write before the snapshot, none after it
up to the cutover, none on the retired original after it. (The streams path proves by position: live_cutover.py.)"""

from __future__ import annotations

from datetime import datetime, timedelta

from neptune_guard.remediate.plan import QUIET_BEFORE_SNAPSHOT_SECONDS
from neptune_guard.remediate.resources import Step, iso, utcnow

WRITE_METRICS = ("NumIndexInsertsPerSec", "NumIndexDeletesPerSec", "LoaderRequestsPerSec")


def write_activity(cloudwatch, windows: list[tuple[str, datetime, datetime]]) -> dict:
    """Every write CloudWatch saw for these (cluster identifier, start, end) windows: index inserts and deletes
    (every mutation of the graph writes its indexes) and bulk-loader requests."""
    queries, labels = [], {}
    for n, (cluster_id, start, end) in enumerate(windows):
        for metric in WRITE_METRICS:
            query_id = f"m{n}{WRITE_METRICS.index(metric)}"
            labels[query_id] = metric
            queries.append({"Id": query_id, "ReturnData": True, "MetricStat": {
                "Metric": {"Namespace": "AWS/Neptune", "MetricName": metric,
                           "Dimensions": [{"Name": "DBClusterIdentifier", "Value": cluster_id}]},
                "Period": 60, "Stat": "Sum"}})
    # Metrics are per minute: a window runs to the end of its last minute, so the latest writes are in it.
    windows = [(c, start, (end + timedelta(minutes=1)).replace(second=0, microsecond=0)) for c, start, end in windows]
    totals = dict.fromkeys(WRITE_METRICS, 0.0)
    for n, (cluster_id, start, end) in enumerate(windows):
        window_queries = [q for q in queries if q["Id"].startswith(f"m{n}")]
        for page in cloudwatch.get_paginator("get_metric_data").paginate(MetricDataQueries=window_queries, StartTime=start, EndTime=end):
            for result in page["MetricDataResults"]:
                totals[labels[result["Id"]]] += sum(result.get("Values", []))
    return {"windows": [{"cluster_id": c, "from": iso(s), "to": iso(e)} for c, s, e in windows],
            "metrics": totals, "writes_detected": any(v > 0 for v in totals.values())}


def _snapshot_minute(step: Step) -> datetime:
    """Metrics are per minute: the window starts with the snapshot's minute, so a write just after it counts."""
    return datetime.fromisoformat(step.state["snapshot"]["created_at"]).replace(second=0, microsecond=0)


def writes_stopped(step: Step) -> dict:
    """Before the snapshot: proof that the application has stopped writing (no write for the last ten minutes).
    Writes before the snapshot are in it; this only spares a remediation that could never cut over."""
    now = utcnow()
    since = (now - timedelta(seconds=QUIET_BEFORE_SNAPSHOT_SECONDS)).replace(second=0, microsecond=0)
    return write_activity(step.client("cloudwatch"), [(step.plan["cluster_id"], since, now)])


def measure_writes(step: Step) -> dict:
    """Writes that reached the original since the snapshot, for the cutover question."""
    return write_activity(step.client("cloudwatch"), [(step.plan["cluster_id"], _snapshot_minute(step), utcnow())])


def writes_until_now(step: Step) -> dict:
    """Writes since the snapshot, under the original's name until it moved aside and under its retired name after."""
    plan = step.plan
    now = utcnow()
    return write_activity(step.client("cloudwatch"), [(plan["cluster_id"], _snapshot_minute(step), now),
                                                      (plan["retired_cluster_id"], cutover_started(step), now)])


def cutover_started(step: Step) -> datetime:
    """The minute the cutover began, recorded by Step Functions before the first rename request."""
    return datetime.fromisoformat(step.state["cutover_clock"]["started_at"].replace("Z", "+00:00")).replace(second=0, microsecond=0)


def confirm_no_writes(step: Step) -> dict:
    """After the metrics have settled: every write since the snapshot, up to now."""
    return writes_until_now(step)


class WritesDetected(Exception):
    """Writes reached the original after its snapshot and on-call did not accept losing them."""


def accepted_write_loss(step: Step) -> bool:
    return bool(step.state.get("approvals", {}).get("cutover", {}).get("accept_write_loss"))
