"""Replication throughput (records per second) and the write pause against the write rate, in the local AWS.

For each write rate, an application writes to a streams-enabled cluster while the replicator (replication.py, the
code the member-account function runs) keeps a restored copy in step; then the application pauses, the replicator
drains and proves the copy's position equal to the original's last event, as the cutover does. The pause measured is
that drain plus the proof: the part of the write pause that depends on the write rate (the renames add AWS's own
time, which the local AWS does not have). Run: .venv/bin/python benchmarks/replication_benchmark.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent.parent / "lambdas")]

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from neptune_guard.remediate import replication  # noqa: E402
from sandbox.aws import moto_fixes  # noqa: E402
from sandbox.demo import organization  # noqa: E402
from sandbox.demo.application import Writer  # noqa: E402

ACCOUNT, REGION = "123456789012", "us-east-1"


def measure(rate: float, seconds: float, records: int) -> dict:
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        neptune = session.client("neptune", region_name=REGION)
        organization.seed_region(session, REGION, {"clusters": {"live": {"encryption": "none", "instances": {"live-1": "db.r6g.large"}, "streams": True}}}, ACCOUNT)
        source_cluster = neptune.describe_db_clusters(DBClusterIdentifier="live")["DBClusters"][0]
        source = replication.Neptune(source_cluster["Endpoint"], REGION, False)
        bulk = Writer(ACCOUNT, REGION, "live", interval=0)
        for n in range(records):  # a backlog to measure raw throughput on
            bulk._write(n)
        position = {m: None for m in replication.MODELS}
        neptune.create_db_cluster_snapshot(DBClusterSnapshotIdentifier="empty", DBClusterIdentifier="live")
        copy = neptune.restore_db_cluster_from_snapshot(DBClusterIdentifier="copy", SnapshotIdentifier="empty", Engine="neptune",
                                                        DBClusterParameterGroupName=source_cluster["DBClusterParameterGroup"])["DBCluster"]
        neptune.create_db_instance(DBInstanceIdentifier="copy-1", DBClusterIdentifier="copy", Engine="neptune", DBInstanceClass="db.r6g.large")
        target = replication.Neptune(copy["Endpoint"], REGION, False)
        started = time.perf_counter()
        caught = replication.replicate(source, target, position, 600)
        elapsed = time.perf_counter() - started
        writer = Writer(ACCOUNT, REGION, "live", interval=1 / rate).start()
        positions = caught["positions"]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            positions = replication.replicate(source, target, positions, 1)["positions"]
        writer.pause()
        paused = time.perf_counter()
        drained = replication.replicate(source, target, positions, 60)
        proof = replication.proof(source, drained["positions"])
        pause = time.perf_counter() - paused
        writer.stop()
        applied = sum(caught["applied"].values())
        return {"write_rate_per_second": rate, "backlog_records": applied, "throughput_records_per_second": round(applied / elapsed, 1),
                "drain_and_proof_seconds": round(pause, 3), "proven": proof["proven"], "writes_acknowledged": len(writer.acknowledged), "writes_refused": writer.failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="10,50,200", help="application writes per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=3.0, help="how long the application writes at each rate")
    parser.add_argument("--records", type=int, default=2000, help="writes in the backlog the throughput is measured on")
    arguments = parser.parse_args()
    moto_fixes.apply()
    print(json.dumps([measure(float(r), arguments.seconds, arguments.records) for r in arguments.rates.split(",")], indent=2))


if __name__ == "__main__":
    main()
