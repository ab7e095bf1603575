"""Time to finding: from a Neptune API call to its finding in Security Hub, through the change path, in the local AWS.

The call is made in a member account; the CloudTrail event it produces is put on the security account's change bus
(as the member's forwarding rule does), delivered to the change queue by EventBridge, read in one batch and handed to
the targeted scan's real handler, which scans the account-region and publishes. CloudTrail's own delivery of the event
to EventBridge happens before this path and is not measured here; the queue's batching window (the debounce) is a
setting, added to the measured time.

    python benchmarks/time_to_finding.py [--batching-seconds 30] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT)]
for name, value in {"AWS_ACCESS_KEY_ID": "benchmark", "AWS_SECRET_ACCESS_KEY": "benchmark", "AWS_DEFAULT_REGION": "us-east-1",
                    "POWERTOOLS_TRACE_DISABLED": "1", "POWERTOOLS_METRICS_NAMESPACE": "NeptuneGuard", "POWERTOOLS_LOG_LEVEL": "WARNING"}.items():
    os.environ.setdefault(name, value)

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from neptune_guard import aws
from neptune_guard.detect import changes  # noqa: E402
from sandbox.aws import moto_fixes  # noqa: E402
from sandbox.demo.organization import seed  # noqa: E402

MEMBER, REGION = "111111111111", "us-east-1"
SCENARIO = {"accounts": {MEMBER: {REGION: {"keys": {"cmk": {"state": "Enabled"}},
                                           "clusters": {f"existing-{n}": {"encryption": "cmk"} for n in range(10)}}}}}


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "neptune-guard-change-scan", 1024, "benchmark"
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:neptune-guard-change-scan"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 300_000


def one_run(session: boto3.Session, run: int, handler) -> float:
    events, sqs = session.client("events"), session.client("sqs")
    queue_url = sqs.get_queue_url(QueueName="neptune-guard-changes")["QueueUrl"]
    member = aws.assume_role(session, MEMBER, "OrganizationAccountAccessRole", REGION, "benchmark")
    securityhub = member.client("securityhub", region_name=REGION)
    cluster = f"fresh-{run}"
    started = time.perf_counter()
    member.client("neptune", region_name=REGION).create_db_cluster(DBClusterIdentifier=cluster, Engine="neptune", StorageEncrypted=True)
    detail = {"eventSource": "rds.amazonaws.com", "eventName": "CreateDBCluster", "awsRegion": REGION,
              "requestParameters": {"dBClusterIdentifier": cluster}}
    events.put_events(Entries=[{"Source": "aws.rds", "DetailType": changes.CLOUDTRAIL, "Detail": json.dumps(detail),
                                "EventBusName": "NeptuneGuardChanges"}])
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    records = []
    for message in messages:
        body = json.loads(message["Body"])
        body["account"] = MEMBER  # the local bus stamps its own account on what it delivers; AWS keeps the member's
        records.append({"messageId": message["MessageId"], "body": json.dumps(body), "eventSource": "aws:sqs", "attributes": {},
                        "messageAttributes": {}, "md5OfBody": message["MD5OfBody"], "receiptHandle": message["ReceiptHandle"],
                        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:neptune-guard-changes", "awsRegion": REGION})
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    handler({"Records": records}, Context())
    pages = securityhub.get_paginator("get_findings").paginate()
    found = [f for page in pages for f in page["Findings"] if f["Resources"][0]["Id"].endswith(f":cluster:{cluster}")]
    elapsed = time.perf_counter() - started
    if not any(f["Compliance"]["Status"] == "FAILED" for f in found):
        raise SystemExit(f"run {run}: no FAILED finding for {cluster}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batching-seconds", type=int, default=30, help="the change queue's batching window (cdk.json)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    moto_fixes.apply()
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        seed(SCENARIO, session)
        sqs = session.client("sqs")
        queue_arn = sqs.get_queue_attributes(QueueUrl=sqs.create_queue(QueueName="neptune-guard-changes")["QueueUrl"],
                                             AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = session.client("events")
        events.create_event_bus(Name="NeptuneGuardChanges")
        events.put_rule(Name="ScanOnChange", EventBusName="NeptuneGuardChanges",
                        EventPattern=json.dumps({"detail-type": [changes.CLOUDTRAIL], "source": sorted(changes.WATCHED)}))
        events.put_targets(Rule="ScanOnChange", EventBusName="NeptuneGuardChanges", Targets=[{"Id": "queue", "Arn": queue_arn}])
        from neptune_guard.handlers.change_scan import handler

        times = [one_run(session, run, handler) for run in range(args.runs)]
    print(f"API call to FAILED finding, through the change path: median {statistics.median(times):.2f}s, "
          f"max {max(times):.2f}s over {len(times)} runs (the first pays the cold start: {times[0]:.2f}s)")
    print(f"tool time with the batching window: at most {args.batching_seconds + max(times):.0f}s "
          f"({args.batching_seconds}s window + {max(times):.1f}s), plus CloudTrail's own delivery to EventBridge")


if __name__ == "__main__":
    main()
