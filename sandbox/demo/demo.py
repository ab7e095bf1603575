"""`neptune-guard demo`: the whole job against the embedded local AWS (moto, in-process).

Seed an Organization, scan it, remediate every failed cluster and manual snapshot through the real
state machines (one on-call engineer starts them through the approval endpoint, another approves each
step there, as the two-person rule requires), scan again, show before and after.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import boto3
import jsonschema

from neptune_guard.approve import approval_client
from neptune_guard.console import Progress
from neptune_guard.detect import graphs
from neptune_guard.remediate.resources import custom_endpoints

from sandbox.aws import function_urls, moto_fixes
from sandbox.demo import application, on_call, workflows
from sandbox.demo.organization import DEMO_SCENARIO, account_session, alias_name, scenario_regions, seed

SANDBOX_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "sandbox",
    "AWS_SECRET_ACCESS_KEY": "sandbox",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


SCENARIO_SCHEMA = json.loads((Path(__file__).resolve().parent / "scenario.schema.json").read_text())


EXIT_BAD_SCENARIO = 2  # as the CLI's usage errors


class ScenarioError(Exception):
    """The scenario file cannot be used: one line says why; nothing was seeded."""


def _control_character(value):
    """The first key or string of a scenario that holds a control character (a newline, a tab), or None."""
    if isinstance(value, str):
        return value if any(ord(c) < 0x20 or ord(c) == 0x7f for c in value) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _control_character(key) if isinstance(key, str) else None
        found = found if found is not None else _control_character(item)
        if found is not None:
            return found
    return None


def load_scenario(path: str | None) -> dict:
    """The scenario, validated against scenario.schema.json and for what refers to what, before anything is seeded."""
    if path is None:
        return DEMO_SCENARIO
    try:
        with open(path, encoding="utf-8") as handle:
            scenario = json.load(handle)
    except OSError as error:
        raise ScenarioError(f"cannot read {path}: {error.strerror or error}") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise ScenarioError(f"{path} is not JSON: {error}") from None
    except RecursionError:
        raise ScenarioError(f"{path} nests deeper than any scenario does") from None
    try:
        problem = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(SCENARIO_SCHEMA).iter_errors(scenario))
        control = _control_character(scenario)
    except RecursionError:
        raise ScenarioError(f"{path} nests deeper than any scenario does") from None
    if control is not None:
        # Python's jsonschema matches patterns with re.search, where `$` also matches before a final newline.
        raise ScenarioError(f"{path}: {control!r} holds a control character")
    if problem is not None:
        where = "/".join(str(p) for p in problem.absolute_path) or "(top)"
        raise ScenarioError(f"{path}: at {where}: {problem.message}")
    for account_id, regions in scenario["accounts"].items():
        for region, spec in regions.items():
            _check_references(f"{path}: {account_id} {region}", spec)
            if spec.get("graphs") and region not in graphs.REGIONS:
                raise ScenarioError(f"{path}: {account_id} {region}: Neptune Analytics is not offered in {region}, so it can hold no graphs")
    return scenario


def _check_references(where: str, spec: dict) -> None:
    clusters, keys = spec.get("clusters", {}), {alias_name(k) for k in spec.get("keys", {})}
    for cluster_id, cluster in clusters.items():
        encryption = cluster.get("encryption", "none")
        if encryption not in ("none", "aws-managed") and not encryption.startswith("arn:") and alias_name(encryption) not in keys:
            raise ScenarioError(f"{where}: cluster {cluster_id} uses key {encryption}, which the region does not define")
        instances = set(cluster.get("instances", {}))
        named = set(cluster.get("instance_tags", {})) | {m for e in cluster.get("custom_endpoints", {}).values() for m in e.get("members", [])}
        if named - instances:
            raise ScenarioError(f"{where}: cluster {cluster_id} names instances it does not have: {', '.join(sorted(named - instances))}")
    for name, graph in spec.get("graphs", {}).items():
        encryption = graph.get("encryption", "aws-owned")
        if encryption != "aws-owned" and not encryption.startswith("arn:") and alias_name(encryption) not in keys:
            raise ScenarioError(f"{where}: graph {name} uses key {encryption}, which the region does not define")
    for snapshot_id, source in spec.get("snapshots", {}).items():
        cluster_id = source if isinstance(source, str) else source["cluster"]
        if cluster_id not in clusters:
            raise ScenarioError(f"{where}: snapshot {snapshot_id} is of cluster {cluster_id}, which the region does not define")


def remediation_requests(evaluations, target_key: str) -> list[tuple[str, dict]]:
    """(workflow, request) for every failed cluster and manual snapshot, once each, as the checks' registry
    says which workflow fixes which failure; automated snapshots follow their cluster."""
    from neptune_guard.detect.checks import CHECKS_BY_ID, CLUSTER_WORKFLOW, SNAPSHOT_WORKFLOW

    kinds = {CLUSTER_WORKFLOW: "cluster", SNAPSHOT_WORKFLOW: "snapshot"}
    requests = {}
    for e in evaluations:
        kind = kinds.get(CHECKS_BY_ID[e.check_id].workflow)
        if e.status.value != "FAILED" or kind is None or e.resource_id.startswith("rds:") or e.retained:
            continue
        if f":{e.account_id}:" not in e.resource_arn:  # shared with this account by another: only its owner can fix it
            continue
        field = "cluster_id" if kind == "cluster" else "snapshot_id"
        requests[(e.account_id, e.region, e.resource_id)] = (kind, {
            "account_id": e.account_id, "region": e.region, field: e.resource_id, "target_key": target_key,
            **({"soak_seconds": 0, "metrics_settle_seconds": 0} if kind == "cluster" else {}), "approval_timeout_seconds": 600,
        })
    return list(requests.values())


def approve_until_done(approver: on_call.Engineer, sfn, executions: list[str], accept_write_loss: set[str] = frozenset(),
                       hold: frozenset[str] = frozenset(), timeout: float = 600, progress=None, writers: dict | None = None) -> None:
    """Act as on-call: answer, through the approval endpoint, every step any execution waits on, until none is
    running or waits for a `hold` stage. The approver must not be who started them (the endpoint refuses that).
    Each approval names its stage. A cutover with writes detected after the snapshot is rejected, as a person would
    (the original keeps serving), unless the scenario says on-call accepts losing those writes for that cluster."""
    from neptune_guard.approve import approvals

    writers = writers or {}
    deadline = time.monotonic() + timeout
    running = set(executions)
    while running and time.monotonic() < deadline:
        for execution in list(running):
            if sfn.describe_execution(executionArn=execution)["status"] != "RUNNING":
                running.discard(execution)
                if execution in writers:
                    writers[execution].resume()  # whatever the outcome, the application writes to whatever serves the name
                continue
            try:
                pending = approvals.pending_approval(sfn, execution)
            except approvals.NoPendingApproval:
                continue
            writer = writers.get(execution)
            if writer is not None and pending["stage"] != "cutover":
                writer.resume()
            if pending["stage"] in hold:
                running.discard(execution)
                continue
            writes = pending["stage"] == "cutover" and (pending.get("write_check") or {}).get("writes_detected") is True
            if writer is not None and pending["stage"] == "cutover" and (pending.get("plan") or {}).get("path") == "streams":
                writer.pause()  # on-call stops the application's writes, then approves; it writes again once cut over
            try:
                if writes and execution not in accept_write_loss:
                    approver.reject(execution, "writes detected after the snapshot: the application is still writing", stage="cutover")
                else:
                    approver.approve(execution, stage=pending["stage"], **({"accept_write_loss": True} if writes else {}))
            except approval_client.EndpointRefused as refusal:
                if refusal.status != 409:  # 409: answered or moved on meanwhile; look again
                    raise
        if progress:
            progress.say(f"remediating: {len(executions) - len(running)}/{len(executions)} executions settled")
        time.sleep(0.1)


OUTCOMES = {"Refused": "refused", "RolledBack": "rolled back", "WritesDetected": "writes detected", "NotApproved": "not approved"}


def final_snapshots(session: boto3.Session, scenario: dict) -> list[dict]:
    snapshots = []
    for account_id, regions in scenario["accounts"].items():
        member = account_session(session, account_id)
        for region in regions:
            neptune = member.client("neptune", region_name=region)
            for s in neptune.describe_db_cluster_snapshots(SnapshotType="manual")["DBClusterSnapshots"]:
                attributes = neptune.describe_db_cluster_snapshot_attributes(DBClusterSnapshotIdentifier=s["DBClusterSnapshotIdentifier"])
                shared = sorted(v for a in attributes["DBClusterSnapshotAttributesResult"]["DBClusterSnapshotAttributes"]
                                if a["AttributeName"] == "restore" for v in a["AttributeValues"])
                snapshots.append({"account_id": account_id, "region": region, "id": s["DBClusterSnapshotIdentifier"],
                                  "storage_encrypted": s["StorageEncrypted"], "kms_key_id": s.get("KmsKeyId"), "shared_with": shared})
    return snapshots


def final_clusters(session: boto3.Session, scenario: dict) -> list[dict]:
    clusters = []
    for account_id, regions in scenario["accounts"].items():
        member = account_session(session, account_id)
        for region in regions:
            neptune = member.client("neptune", region_name=region)
            described = {i["DBInstanceIdentifier"]: i for i in neptune.describe_db_instances()["DBInstances"]}
            instances = {i: d["DBInstanceClass"] for i, d in described.items()}
            for c in neptune.describe_db_clusters(Filters=[{"Name": "engine", "Values": ["neptune"]}])["DBClusters"]:
                tags = neptune.list_tags_for_resource(ResourceName=c["DBClusterArn"]).get("TagList", [])
                clusters.append({
                    "account_id": account_id, "region": region, "id": c["DBClusterIdentifier"], "status": c["Status"],
                    "storage_encrypted": c["StorageEncrypted"], "kms_key_id": c.get("KmsKeyId"),
                    "deletion_protection": c["DeletionProtection"], "iam_auth": c["IAMDatabaseAuthenticationEnabled"],
                    "port": c["Port"], "backup_retention": c["BackupRetentionPeriod"],
                    "log_exports": c.get("EnabledCloudwatchLogsExports", []), "tags": {t["Key"]: t["Value"] for t in tags},
                    "instances": {m["DBInstanceIdentifier"]: instances.get(m["DBInstanceIdentifier"]) for m in c["DBClusterMembers"]},
                    "resource_id": c["DbClusterResourceId"], "storage_type": c.get("StorageType"),
                    "custom_endpoints": {e["id"]: {"type": e["type"], "members": e["static_members"]}
                                         for e in custom_endpoints(neptune, c["DBClusterIdentifier"])},
                    "instance_tags": {m["DBInstanceIdentifier"]: {t["Key"]: t["Value"] for t in neptune.list_tags_for_resource(
                        ResourceName=described[m["DBInstanceIdentifier"]]["DBInstanceArn"])["TagList"]}
                        for m in c["DBClusterMembers"] if m["DBInstanceIdentifier"] in described},
                })
    return clusters


EXIT_FAILED = 1


def run(scenario_path: str | None = None, output: str = "table") -> int:
    """The demo, never ending in a traceback: a failure is one line on stderr and exit status 1."""
    progress = Progress()
    try:
        return _run(scenario_path, output, progress)
    except KeyboardInterrupt:
        progress.close()
        print("neptune-guard demo: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the demo's promise is a readable end, whatever broke
        progress.close()
        print(f"neptune-guard demo: failed: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED


def _run(scenario_path: str | None, output: str, progress: Progress) -> int:
    from moto import mock_aws

    from neptune_guard.findings import report
    from neptune_guard.scanner import ScanOptions, scan

    try:
        scenario = load_scenario(scenario_path)
    except ScenarioError as error:
        print(f"neptune-guard demo: {error}", file=sys.stderr)
        return EXIT_BAD_SCENARIO
    for name, value in SANDBOX_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    # moto's Step Functions interpreter logs every state error at ERROR, the ones the ASL catches included (a Choice on
    # a field an output lacks, a Fail state reached on purpose); each execution's history and the demo's table say
    # what happened, so on the terminal they are noise.
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
    os.environ.pop("AWS_ENDPOINT_URL", None)  # the demo's AWS is in-process
    moto_fixes.apply()
    options = ScanOptions(accounts="org", regions=scenario_regions(scenario))
    target_key = alias_name(scenario.get("target_key", "neptune-cmk"))
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}), workflows.fast_clock(), \
            contextlib.ExitStack() as servers:
        session = boto3.Session(region_name="us-east-1")
        progress.say("seeding the demo Organization in the local AWS")
        seed(scenario, session)
        before = scan(options, session, on_unit_done=progress)
        progress.say("deploying the state machines and the approval endpoint")
        arns = workflows.deploy(session, member_regions=scenario_regions(scenario))
        approval_url = servers.enter_context(function_urls.serve(session, arns["approval_function"])).url
        requester, approver = on_call.Engineer(session, "requester", approval_url), on_call.Engineer(session, "approver", approval_url)
        sfn = session.client("stepfunctions", region_name="us-east-1")
        started = [(kind, request, requester.start(arns[kind], request))
                   for kind, request in remediation_requests(before.evaluations, target_key)]
        accepting = {execution for kind, request, execution in started
                     if scenario["accounts"].get(request["account_id"], {}).get(request["region"], {}).get("clusters", {})
                     .get(request.get("cluster_id"), {}).get("accept_write_loss")}
        executions = [execution for _, _, execution in started]
        writers = {execution: application.Writer(request["account_id"], request["region"], request["cluster_id"], spec.get("data_model", "property-graph")).start()
                   for kind, request, execution in started if kind == "cluster"
                   for spec in [scenario["accounts"][request["account_id"]][request["region"]]["clusters"].get(request["cluster_id"], {})]
                   if spec.get("writes_during_remediation")}
        approve_until_done(approver, sfn, executions, accepting, hold=frozenset({"decommission"}), progress=progress, writers=writers)
        remediated = scan(options, session, on_unit_done=progress)  # retained originals and workflows' snapshots, decommission pending
        progress.say("decommissioning the retired originals")
        approve_until_done(approver, sfn, executions, accepting, progress=progress, writers=writers)
        for writer in writers.values():
            writer.stop()
        remediations, decommissions = [], []
        for kind, request, execution in started:
            description = sfn.describe_execution(executionArn=execution)
            ended = workflows.final_state(sfn, execution)
            resource_id = request.get("cluster_id") or request.get("snapshot_id")
            remediations.append({
                "account_id": request["account_id"], "region": request["region"],
                "resource_type": "AwsRdsDbCluster" if kind == "cluster" else "AwsRdsDbClusterSnapshot",
                "resource_id": resource_id, "status": description["status"], "execution_arn": execution,
                **({"path": ended.get("plan", {}).get("path", "freeze"), "write_pause_seconds": ended.get("cutover", {}).get("write_pause_seconds"),
                    "nameless_seconds": ended.get("cutover", {}).get("nameless_seconds"),
                    "writes_acknowledged": len(writers[execution].acknowledged) if execution in writers else 0,
                    "writes_missing": len(writers[execution].missing()) if execution in writers else 0} if kind == "cluster" else {}),
                **({"outcome": OUTCOMES.get(description.get("error"), description.get("error")),
                    "error": description.get("error"), "cause": (ended.get("error") or {}).get("Cause") or description.get("cause")}
                   if description["status"] != "SUCCEEDED" else {}),
            })
            if kind == "cluster" and "cutover" in ended:
                decommissions.append({"account_id": request["account_id"], "region": request["region"], "resource_id": resource_id,
                                      "status": "DECOMMISSIONED" if "decommissioned" in ended else "RETAINED",
                                      "retired_cluster_id": ended["plan"]["retired_cluster_id"], "execution_arn": execution})
        after = scan(options, session, on_unit_done=progress)
        clusters = final_clusters(session, scenario)
        snapshots = final_snapshots(session, scenario)
    progress.close()

    if output == "json":
        print(json.dumps({"before": before.to_dict()["evaluations"], "remediations": remediations,
                          "remediated": remediated.to_dict()["evaluations"], "decommissions": decommissions,
                          "after": after.to_dict()["evaluations"], "clusters": clusters, "snapshots": snapshots,
                          "errors": before.to_dict()["errors"] + remediated.to_dict()["errors"] + after.to_dict()["errors"]}, indent=2))
        return 0
    print("== Before: the demo Organization as found ==")
    print(report.table(before))
    print(f"\n== Remediation: {len(remediations)} executions of the real state machines, started by one on-call engineer, every approval answered by another through the approval endpoint ==")
    for r in remediations:
        kind = "cluster" if r["resource_type"] == "AwsRdsDbCluster" else "snapshot"
        detail = "" if r["status"] == "SUCCEEDED" else f"  ({r['outcome']}: {r['cause']})"
        print(f"  {r['status']:<10} {r['account_id']} {r['region']:<10} {kind} {r['resource_id']}{detail}")
    print("\n== After remediation, before decommission: the retained originals and the workflows' snapshots are kept on purpose ==")
    print(report.table(remediated))
    print(f"\n== Decommission: {len(decommissions)} retired originals, soak shortened, the third approval answered as on-call would ==")
    for d in decommissions:
        print(f"  {d['status']:<14} {d['account_id']} {d['region']:<10} {d['retired_cluster_id']} (the original of {d['resource_id']})")
    print("\n== After ==")
    print(report.table(after))
    print("\nStill failing by design: clusters whose CMK is disabled or pending deletion. They need the key re-enabled\n"
          "(or its deletion cancelled), not a re-encryption. Neptune Analytics graphs and graph snapshots on an AWS owned\n"
          "key: AWS offers no restore under another key, so their findings say how to re-key by export and import.")
    return 0
