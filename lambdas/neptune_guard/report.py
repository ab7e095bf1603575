"""Rendering scan results for people."""

from __future__ import annotations

from itertools import groupby

from .models import CLUSTER, CLUSTER_SNAPSHOT, GRAPH, GRAPH_SNAPSHOT, ScanResult, Status

KINDS = {CLUSTER: "cluster", CLUSTER_SNAPSHOT: "snapshot", GRAPH: "graph", GRAPH_SNAPSHOT: "graph snapshot"}
SEVERITY_ORDER = {"CRITICAL": 0, "HIGH": 1, "MEDIUM": 2, "LOW": 3, "INFORMATIONAL": 4}


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


def table(result: ScanResult) -> str:
    lines = [f"Neptune Guard scan: {summary_line(result)}"]
    failing = sorted(
        (e for e in result.evaluations if e.status is Status.FAILED),
        key=lambda e: (e.account_id, SEVERITY_ORDER.get(e.severity, 9), e.region, e.resource_id, e.check_id),
    )
    failed = [e for e in failing if not e.retained]
    retained = [e for e in failing if e.retained]
    for account_id, rows in groupby(failed, key=lambda e: e.account_id):
        rows = list(rows)
        lines += ["", f"Account {account_id}: {len(rows)} failed checks"]
        lines.append(f"  {'SEVERITY':<9} {'REGION':<15} {'RESOURCE':<40} {'CHECK':<43} DETAIL")
        for e in rows:
            kind = KINDS[e.resource_type]
            lines.append(f"  {e.severity:<9} {e.region:<15} {kind + ' ' + e.resource_id:<40} {e.check_id:<43} {e.message}")
    if not failed:
        lines += ["", "No failed checks."]
    if retained:
        lines += ["", f"Kept on purpose by a remediation ({_count(len(retained), 'failed check')}, not new failures):"]
        for e in retained:
            kind = KINDS[e.resource_type]
            lines.append(f"  {e.account_id} {e.region:<15} {kind + ' ' + e.resource_id:<40} {e.check_id:<43} {e.retained}")
    if result.all_errors:
        lines += ["", "Errors (these account-regions were not fully scanned):"]
        lines += [f"  {error.account_id} {error.region or '(account)'}: {error.message}" for error in result.all_errors]
    return "\n".join(lines)
