"""Sessions and clients: the one place that knows how we talk to AWS."""

from __future__ import annotations

import re
import threading

import boto3
from botocore.config import Config

DEFAULT_REGION = "us-east-1"
ACCOUNT_ID = re.compile(r"^\d{12}$")

# Adaptive mode adds client-side rate limiting on top of retries, which is what a scan fanning out over
# many account-regions needs when the Neptune or KMS APIs start throttling.
CLIENT_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": 8},
    user_agent_extra="neptune-guard",
    connect_timeout=10,
    read_timeout=30,
)


def home_region(session: boto3.Session) -> str:
    return session.region_name or DEFAULT_REGION


def partition_of(session: boto3.Session, region: str) -> str:
    return session.get_partition_for_region(region)


def assume_role(
    session: boto3.Session, account_id: str, role_name: str, region: str, session_name: str = "neptune-guard"
) -> boto3.Session:
    """A session in `account_id` through `role_name`, via the regional STS endpoint of `region`."""
    partition = partition_of(session, region)
    sts = session.client("sts", region_name=region, config=CLIENT_CONFIG)
    credentials = sts.assume_role(
        RoleArn=f"arn:{partition}:iam::{account_id}:role/{role_name}",
        RoleSessionName=session_name,
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=region,
    )


def caller_account(session: boto3.Session) -> str:
    return session.client("sts", region_name=home_region(session), config=CLIENT_CONFIG).get_caller_identity()["Account"]


class ClientFactory:
    """Clients from one session, safe to ask for from many threads (boto3 sessions are not thread-safe)."""

    def __init__(self, session: boto3.Session):
        self.session = session
        self._lock = threading.Lock()

    def client(self, service: str, region: str):
        with self._lock:
            return self.session.client(service, region_name=region, config=CLIENT_CONFIG)
