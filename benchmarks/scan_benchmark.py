"""Scan benchmark: N accounts x R regions x C clusters (and as many manual snapshots) in the local AWS.

A loopback moto server, in a process of its own, stands in for AWS; a fixed latency is added to every
request (default 50 ms) to stand for the real APIs. Prints the requests the scan made against the floor, and the wall time.

    python benchmarks/scan_benchmark.py --accounts 1 --regions 2 --clusters 300
    python benchmarks/scan_benchmark.py --accounts 100 --regions 4 --clusters 5

--mode items measures the scheduled scan's Distributed Map: each account is one item, scanned and published as the
detector function scans it (a warm function's one session), one after another, each timed alone. From the measured
cost per item it projects the Organization-scale run (--project-accounts x --project-regions at --map-concurrency
items at once, each on the detector's 1,024 MB, about 0.58 vCPU) and states the single-Lambda mode's own limit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT)]
os.environ.setdefault("AWS_ACCESS_KEY_ID", "benchmark")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "benchmark")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from neptune_guard import aws  # noqa: E402
from neptune_guard.scanner import FINISHING_RESERVE_SECONDS, ScanOptions, resolve_accounts, scan  # noqa: E402
from sandbox.demo.organization import seed  # noqa: E402

REGIONS = ["us-east-1", "eu-west-1", "us-west-2", "ap-southeast-1", "eu-central-1", "us-east-2"]
ENCRYPTIONS = ("none", "aws-managed", "cmk")


def scenario(accounts: int, regions: int, clusters: int) -> dict:
    region_spec = {
        "keys": {"cmk": {"state": "Enabled"}},
        "clusters": {f"graph-{n:04}": {"encryption": ENCRYPTIONS[n % 3]} for n in range(clusters)},
        "snapshots": {f"graph-{n:04}-manual": f"graph-{n:04}" for n in range(clusters)},
    }
    return {"accounts": {f"{100000000000 + a:012}": {r: region_spec for r in REGIONS[:regions]} for a in range(1, accounts + 1)}}


def floor(accounts: int, regions: int, clusters: int) -> int:
    """The fewest requests a scan can make: the Organization's account list, one role per account, then
    per account-region a page of clusters and of snapshots per 100, one request per key, and one page each of
    Neptune Analytics graphs and graph snapshots (every region here offers it; none has a graph). The
    management account (the caller) is scanned too, through its role, and has no resources."""
    keys = len({ENCRYPTIONS[n % 3] for n in range(clusters)} - {"none"})
    snapshots = 2 * clusters  # each cluster's automated snapshot and its manual one
    graph_lists = 2
    member_unit = max(1, math.ceil(clusters / 100)) + max(1, math.ceil(snapshots / 100)) + keys + graph_lists
    empty_unit = 2 + graph_lists
    return math.ceil((accounts + 1) / 20) + (accounts + 1) + regions * (accounts * member_unit + empty_unit)


class ServerProcess:
    """The loopback moto server in a process of its own, so that its CPU does not compete with the
    scan's for one interpreter lock: the real AWS APIs do not run on the scanner's machine."""

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, "-m", "sandbox.aws.server", "--port", "0"], cwd=ROOT,
                                        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": f"{ROOT / 'lambdas'}:{ROOT}"})
        self.endpoint_url = self.process.stdout.readline().strip()

    def control(self, command: str, method: str = "POST") -> dict:
        request = urllib.request.Request(f"{self.endpoint_url}/_neptune_guard/{command}", method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


LAMBDA_VCPU = 1024 / 1769  # Lambda gives a function one vCPU at 1,769 MB, in proportion below it
LAMBDA_LIMIT_SECONDS = 15 * 60
STEP_OVERHEAD_SECONDS = 10.0  # listing the accounts, the summary, and Step Functions starting the Map's child executions


def measure_items(args, server) -> None:
    """Each account as one Map item, with publishing; then the projection."""
    session = aws.scan_session()
    accounts = resolve_accounts(session, ScanOptions(accounts="org"))  # as the Map's items: the management account too
    walls, cpus, units, requests, errors = [], [], 0, 0, 0
    for account in accounts:
        before = sum(server.control("counts", "GET").values())
        started, cpu_started = time.perf_counter(), time.process_time()
        result = scan(ScanOptions(accounts=account, regions=tuple(REGIONS[: args.regions]), concurrency=args.concurrency,
                                  publish=True), session=session)
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu_started)
        units += len(result.units)
        errors += len(result.all_errors)
        requests += sum(server.control("counts", "GET").values()) - before
    per_unit_cpu = sum(cpus[1:]) / max(1, units - args.regions)  # the first item pays the cold start: measured apart
    item_wall = sorted(walls[1:] or walls)[len(walls[1:] or walls) // 2]
    print(f"items: {len(accounts)} accounts x {args.regions} regions, published; {units} account-regions, {errors} errors, "
          f"{requests} requests ({requests / max(1, units):.1f} per account-region)")
    print(f"  first item (cold: models, clients) {walls[0]:.2f}s wall, {cpus[0]:.2f}s CPU")
    print(f"  warm items: median {item_wall:.2f}s wall; CPU {per_unit_cpu * 1000:.1f} ms per account-region "
          f"(at {args.latency_ms:.0f} ms per request, concurrency {args.concurrency})")

    regions, total = args.project_regions, args.project_accounts
    # On Lambda an item's CPU runs at LAMBDA_VCPU of a core; its requests overlap (the unit pool): the item takes the longer.
    item_cpu_seconds = per_unit_cpu * regions / LAMBDA_VCPU
    item_latency_seconds = item_wall * math.ceil(regions / args.concurrency) / math.ceil(args.regions / args.concurrency)
    projected_item = max(item_cpu_seconds, item_latency_seconds)
    waves = math.ceil(total / args.map_concurrency)
    projected = waves * projected_item + STEP_OVERHEAD_SECONDS
    print(f"projection, {total} accounts x {regions} regions ({total * regions} account-regions), Map concurrency "
          f"{args.map_concurrency}: an item {projected_item:.1f}s ({item_cpu_seconds:.1f}s CPU-bound at {LAMBDA_VCPU:.2f} vCPU, "
          f"{item_latency_seconds:.1f}s latency-bound), {waves} waves: {projected / 60:.1f} min end to end "
          f"({'within' if projected <= LAMBDA_LIMIT_SECONDS else 'beyond'} 15 minutes)")
    single_limit = (LAMBDA_LIMIT_SECONDS - FINISHING_RESERVE_SECONDS) * LAMBDA_VCPU / per_unit_cpu
    print(f"single-Lambda mode (scanMode single): CPU-bound at about {single_limit:,.0f} account-regions, published, "
          f"per 15-minute run at 1,024 MB; past that it reports the rest as not reached")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=1)
    parser.add_argument("--regions", type=int, default=2, choices=range(1, len(REGIONS) + 1))
    parser.add_argument("--clusters", type=int, default=300)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--mode", choices=("scan", "items"), default="scan")
    parser.add_argument("--map-concurrency", type=int, default=100)
    parser.add_argument("--project-accounts", type=int, default=1000)
    parser.add_argument("--project-regions", type=int, default=20)
    args = parser.parse_args()

    with ServerProcess() as server:
        os.environ["AWS_ENDPOINT_URL"] = server.endpoint_url
        started = time.perf_counter()
        seed(scenario(args.accounts, args.regions, args.clusters))
        print(f"seeded {args.accounts} x {args.regions} x {args.clusters} in {time.perf_counter() - started:.1f}s")

        server.control("reset")
        server.control(f"latency?ms={args.latency_ms}")
        if args.mode == "items":
            measure_items(args, server)
            return
        started, cpu_started = time.perf_counter(), time.process_time()
        result = scan(ScanOptions(accounts="org", regions=tuple(REGIONS[: args.regions]), concurrency=args.concurrency))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        counts = server.control("counts", "GET")

    print(f"scan: {len(result.scanned_units)}/{len(result.units)} account-regions, {len(result.evaluations)} evaluations, "
          f"{len(result.all_errors)} errors")
    print(f"requests: {sum(counts.values())} made, floor {floor(args.accounts, args.regions, args.clusters)}")
    for action, count in sorted(counts.items()):
        print(f"  {action:<40} {count}")
    print(f"wall time: {elapsed:.2f}s at {args.latency_ms:.0f} ms per request, concurrency {args.concurrency}; "
          f"scanner CPU {cpu:.2f}s (the rest is the network stand-in and the local server's own CPU)")


if __name__ == "__main__":
    main()
