"""The sandbox's on-call engineers: people who assume the on-call role under their own session names and
use the approval endpoint with those credentials, as `neptune-guard remediate/approve/reject` do.

In AWS the on-call role is yours (IAM Identity Center sets the session name to the person); the sandbox
creates `NeptuneGuardOnCall` in the security account and allow-lists its sessions.
"""

from __future__ import annotations

import json

import boto3

from neptune_guard.approve import approval_client

ON_CALL_ROLE = "NeptuneGuardOnCall"


def create_role(session: boto3.Session) -> str:
    """The on-call role, trusted by the account (its people assume it), and the allow-list pattern of its sessions."""
    account = session.client("sts").get_caller_identity()["Account"]
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "sts:AssumeRole"}]}
    session.client("iam").create_role(RoleName=ON_CALL_ROLE, AssumeRolePolicyDocument=json.dumps(trust))
    return f"arn:aws:sts::{account}:assumed-role/{ON_CALL_ROLE}/*"


class Engineer:
    """One person on call, with their own credentials (a session of the on-call role named after them)."""

    def __init__(self, session: boto3.Session, name: str, approval_url: str, role_name: str = ON_CALL_ROLE):
        account = session.client("sts").get_caller_identity()["Account"]
        credentials = session.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/{role_name}", RoleSessionName=name, SourceIdentity=name)["Credentials"]
        self.session = boto3.Session(
            aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"], region_name=session.region_name)
        self.arn = f"arn:aws:sts::{account}:assumed-role/{role_name}/{name}"
        self.approval_url = approval_url

    def call(self, body: dict) -> dict:
        return approval_client.call(self.session, self.approval_url, body)

    def start(self, state_machine_arn: str, request: dict) -> str:
        return self.call({"action": "start", "state_machine_arn": state_machine_arn, "request": request})["execution_arn"]

    def approve(self, execution_arn: str, **options) -> dict:
        return self.call({"action": "approve", "execution_arn": execution_arn, **options})

    def reject(self, execution_arn: str, reason: str, **options) -> dict:
        return self.call({"action": "reject", "execution_arn": execution_arn, "reason": reason, **options})
