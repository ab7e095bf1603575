"""Findings within minutes of a change: a CloudTrail call forwarded to the security account's bus, queued, and the
targeted scan of that one account-region, in the local AWS (EventBridge delivers to SQS as it does in AWS)."""

import json

import pytest

from neptune_guard.detect import changes
from tests.conftest import ORG, LambdaContext, findings, member_session

ACCOUNT, REGION = "111111111111", "us-east-1"


def cloudtrail_event(event_name: str, account: str = ACCOUNT, region: str = REGION, source: str = "aws.rds", **detail) -> dict:
    """An API call as EventBridge delivers it from CloudTrail (eb-service-event-cloudtrail.html)."""
    return {"version": "0", "id": "6f0e9c2a-1111-2222-3333-444455556666", "detail-type": "AWS API Call via CloudTrail",
            "source": source, "account": account, "time": "2026-12-02T05:00:00Z", "region": region, "resources": [],
            "detail": {"eventVersion": "1.09", "eventSource": source.removeprefix("aws.") + ".amazonaws.com",
                       "eventName": event_name, "awsRegion": region, "requestParameters": {}, **detail}}


@pytest.fixture
def change_bus(seeded, monkeypatch):
    """ORG, with the security account's change bus, its rule and the queue the targeted scan reads (as the stack
    deploys them); returns (session, forward(event), drain() -> the SQS event the function would get)."""
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "NeptuneGuard")
    session = seeded(ORG)
    events, sqs = session.client("events"), session.client("sqs")
    queue_url = sqs.create_queue(QueueName="neptune-guard-changes")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.create_event_bus(Name="NeptuneGuardChanges")
    events.put_rule(Name="ScanOnChange", EventBusName="NeptuneGuardChanges",
                    EventPattern=json.dumps({"detail-type": [changes.CLOUDTRAIL], "source": sorted(changes.WATCHED)}))
    events.put_targets(Rule="ScanOnChange", EventBusName="NeptuneGuardChanges", Targets=[{"Id": "queue", "Arn": queue_arn}])

    def forward(event: dict) -> None:
        entry = {"Source": event["source"], "DetailType": event["detail-type"], "Detail": json.dumps(event["detail"]),
                 "EventBusName": "NeptuneGuardChanges"}
        assert events.put_events(Entries=[entry])["FailedEntryCount"] == 0

    def drain() -> dict:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        records = []
        for message in messages:
            records.append({"messageId": message["MessageId"], "body": message["Body"], "eventSource": "aws:sqs",
                            "eventSourceARN": queue_arn, "awsRegion": REGION, "receiptHandle": message["ReceiptHandle"],
                            "attributes": {}, "messageAttributes": {}, "md5OfBody": message["MD5OfBody"]})
        return {"Records": records}

    return session, forward, drain


def test_a_new_cluster_on_the_aws_managed_key_is_found_by_the_targeted_scan(change_bus):
    from neptune_guard.handlers import change_scan

    session, forward, drain = change_bus
    neptune = member_session(session, ACCOUNT).client("neptune", region_name=REGION)
    neptune.create_db_cluster(DBClusterIdentifier="fresh", Engine="neptune", StorageEncrypted=True)
    forward(cloudtrail_event("CreateDBCluster", requestParameters={"dBClusterIdentifier": "fresh"}))
    forward(cloudtrail_event("ModifyDBCluster"))  # the same account-region again: one scan
    sqs_event = drain()
    for record in sqs_event["Records"]:  # the bus in the local AWS stamps its own account: restore the member's
        body = json.loads(record["body"])
        body["account"] = ACCOUNT
        record["body"] = json.dumps(body)

    result = change_scan.handler(sqs_event, LambdaContext())

    assert result["account_regions"] == [[ACCOUNT, REGION]] and result["scanned"] == 1, result
    fresh = [f for f in findings(session, ACCOUNT, REGION).values()
             if f["Resources"][0]["Id"].endswith(":cluster:fresh") and f["Compliance"]["Status"] == "FAILED"]
    assert {f["GeneratorId"] for f in fresh} == {"neptune-guard/neptune_cluster_uses_cmk"}
    assert not findings(session, "222222222222", REGION)  # nothing else was scanned


@pytest.mark.parametrize("body, reason", [
    ("not json", "not an EventBridge event"),
    (json.dumps(cloudtrail_event("DeleteBucket", source="aws.s3")), "not a watched CloudTrail call"),
    (json.dumps(cloudtrail_event("DescribeDBClusters")), "is not watched"),
    (json.dumps(cloudtrail_event("CreateDBCluster", account="12345")), "not an account id"),
    (json.dumps(cloudtrail_event("CreateDBCluster", region="us-east-1; rm -rf /")), "not a region name"),
    (json.dumps(cloudtrail_event("DisableKey", source="aws.kms", errorCode="AccessDenied")), "the call failed"),
])
def test_a_forged_or_irrelevant_event_is_set_aside_and_scans_nothing(local_aws, monkeypatch, body, reason):
    from neptune_guard.handlers import change_scan

    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    record = {"messageId": "1", "body": body, "eventSource": "aws:sqs", "receiptHandle": "r", "attributes": {},
              "messageAttributes": {}, "md5OfBody": "", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": REGION}
    result = change_scan.handler({"Records": [record]}, LambdaContext())
    assert result["account_regions"] == [] and result["scanned"] == 0
    assert len(result["ignored"]) == 1 and reason in result["ignored"][0], result


def test_every_watched_call_names_its_account_region_once():
    events = [cloudtrail_event(name, source=source) for source, names in changes.WATCHED.items() for name in names]
    events.append(cloudtrail_event("ScheduleKeyDeletion", source="aws.kms", account="222222222222", region="eu-west-1"))
    wanted = changes.account_regions(events)
    assert list(wanted.account_regions) == [(ACCOUNT, REGION), ("222222222222", "eu-west-1")] and wanted.ignored == ()
    assert wanted.account_regions[(ACCOUNT, REGION)] == tuple(range(len(events) - 1))


def test_events_outside_the_configured_accounts_and_regions_are_set_aside():
    events = [cloudtrail_event("CreateDBCluster"), cloudtrail_event("CreateDBCluster", region="ap-south-1"),
              cloudtrail_event("CreateDBCluster", account="333333333333")]
    wanted = changes.account_regions(events, accounts=(ACCOUNT,), regions=(REGION,))
    assert list(wanted.account_regions) == [(ACCOUNT, REGION)]
    assert ["region ap-south-1" in wanted.ignored[0], "account 333333333333" in wanted.ignored[1]] == [True, True]


def test_an_account_region_not_scanned_in_full_comes_back_as_a_failed_batch_item(change_bus):
    from neptune_guard.handlers import change_scan

    session, forward, drain = change_bus
    forward(cloudtrail_event("CreateDBCluster"))
    (record,) = drain()["Records"]
    good = json.loads(record["body"]) | {"account": ACCOUNT}
    refused = good | {"account": "444444444444"}  # no audit role there: AssumeRole is refused
    hub_off = good | {"account": "222222222222", "region": "eu-west-1"}  # Security Hub is off there: its setting, done
    sqs_event = {"Records": [record | {"messageId": name, "body": json.dumps(body)}
                             for name, body in (("good", good), ("refused", refused), ("hub-off", hub_off))]}

    result = change_scan.handler(sqs_event, LambdaContext())

    assert result["batchItemFailures"] == [{"itemIdentifier": "refused"}], result
    assert result["scanned"] == 2
