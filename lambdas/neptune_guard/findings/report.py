"""Rendering scan results for people."""

from __future__ import annotations

from collections import Counter
from itertools import groupby

from neptune_guard import console
from neptune_guard.console import SEVERITY_ORDER
from neptune_guard.models import CLUSTER, CLUSTER_SNAPSHOT, GRAPH, GRAPH_SNAPSHOT, ScanResult, Status

KINDS = {CLUSTER: "cluster", CLUSTER_SNAPSHOT: "snapshot", GRAPH: "graph", GRAPH_SNAPSHOT: "graph snapshot"}


def summary_line(result: ScanResult) -> str:
    evaluations = result.evaluations
    failed = [e for e in evaluations if e.status is Status.FAILED]
    resources = {(e.account_id, e.region, e.resource_arn) for e in evaluations}
    exposed = {(e.account_id, e.region, e.resource_arn) for e in failed}
    accounts = {unit.account_id for unit in result.units} | {error.account_id for error in result.errors}
    return (
        f"{_count(len(accounts), 'account')}, {len(result.scanned_units)}/{len(result.units)} account-regions scanned, "
        f"{_count(len(resources), 'resource')}, {len(exposed)} with failed checks ({_count(len(failed), 'failed check')}), "
        f"{_count(len(result.all_errors), 'error')}"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def severity_counts(result: ScanResult, color: bool = False) -> str:
    """Failed checks by severity, the most severe first: `CRITICAL 1, HIGH 3, MEDIUM 2`."""
    counts = Counter(e.severity for e in result.evaluations if e.status is Status.FAILED and not e.retained)
    ordered = sorted(counts, key=lambda s: SEVERITY_ORDER.get(s, 9))
    return ", ".join(f"{console.severity(s, color)} {counts[s]}" for s in ordered) or "none"


def table(result: ScanResult, color: bool = False, width: int | None = None) -> str:
    """The scan for people: a summary, the failed checks by severity, then a table per account sized to its data
    (severities coloured when `color`: on a terminal)."""
    lines = [f"Neptune Guard scan: {summary_line(result)}", f"Failed checks by severity: {severity_counts(result, color)}"]
    failing = sorted(
        (e for e in result.evaluations if e.status is Status.FAILED),
        key=lambda e: (e.account_id, SEVERITY_ORDER.get(e.severity, 9), e.region, e.resource_id, e.check_id),
    )
    failed = [e for e in failing if not e.retained]
    retained = [e for e in failing if e.retained]
    for account_id, rows in groupby(failed, key=lambda e: e.account_id):
        rows = list(rows)
        lines += ["", f"Account {account_id}: {_count(len(rows), 'failed check')}"]
        lines.append(console.table(["SEVERITY", "REGION", "RESOURCE", "CHECK", "DETAIL"],
                                   [[e.severity, e.region, f"{KINDS[e.resource_type]} {e.resource_id}", e.check_id, e.message]
                                    for e in rows], color=color, indent=2, width=width))
    if not failed:
        lines += ["", "No failed checks."]
    if retained:
        lines += ["", f"Kept on purpose by a remediation ({_count(len(retained), 'failed check')}, not new failures):"]
        lines.append(console.table(["ACCOUNT", "REGION", "RESOURCE", "CHECK", "KEPT BY"],
                                   [[e.account_id, e.region, f"{KINDS[e.resource_type]} {e.resource_id}", e.check_id, e.retained]
                                    for e in retained], color=color, indent=2, width=width))
    if result.all_errors:
        lines += ["", "Errors (these account-regions were not fully scanned):"]
        lines += [f"  {error.account_id} {error.region or '(account)'}: {error.message}" for error in result.all_errors]
    return "\n".join(lines)
