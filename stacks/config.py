"""Deployment settings, from CDK context (cdk.json, or `-c neptune-guard:<name>=<value>`), validated."""

from __future__ import annotations

import re
from dataclasses import dataclass

from constructs import Node

PREFIX = "neptune-guard:"
DETECTOR_ROLE = "NeptuneGuardDetector"
WORKFLOW_ROLE = "NeptuneGuardWorkflow"
TRIGGER_ROLE = "NeptuneGuardTrigger"
APPROVAL_ROLE = "NeptuneGuardApproval"
PLANNER_ROLE = "NeptuneGuardPlanner"  # member accounts: read what a remediation would carry, for on-call's `plan`
CLUSTER_STATE_MACHINE = "NeptuneGuardClusterRemediation"
SNAPSHOT_STATE_MACHINE = "NeptuneGuardSnapshotRemediation"
SCAN_STATE_MACHINE = "NeptuneGuardScheduledScan"
CHANGE_BUS = "NeptuneGuardChanges"  # the security account's bus for the members' forwarded changes
SCAN_MODES = ("distributed", "single")  # a Distributed Map over the accounts, or one Lambda for a small Organization


@dataclass(frozen=True)
class Config:
    accounts: str
    regions: str
    schedule: str
    audit_role_name: str
    remediation_role_name: str
    trigger_access_role_name: str
    target_key: str
    approval_timeout_seconds: int
    soak_seconds: int
    metrics_settle_seconds: int
    notification_email: str
    concurrency: int
    scan_mode: str
    map_concurrency: int
    minimum_coverage: float
    organization_id: str
    organizational_unit_ids: tuple[str, ...]
    stack_set_region: str
    change_regions: tuple[str, ...]
    change_batching_seconds: int
    read_neptune_analytics: bool
    stack_set_call_as: str
    powertools_version: str
    log_retention_days: int
    approver_principals: tuple[str, ...]

    @classmethod
    def from_context(cls, node: Node) -> "Config":
        def get(name):
            value = node.try_get_context(PREFIX + name)
            if value is None:
                raise ValueError(f"missing context value {PREFIX}{name} (see cdk.json)")
            return value

        config = cls(
            accounts=str(get("accounts")),
            regions=str(get("regions")),
            schedule=str(get("schedule")),
            audit_role_name=str(get("auditRoleName")),
            remediation_role_name=str(get("remediationRoleName")),
            trigger_access_role_name=str(get("triggerAccessRoleName")),
            target_key=str(get("targetKey")),
            approval_timeout_seconds=int(get("approvalTimeoutSeconds")),
            soak_seconds=int(get("soakSeconds")),
            metrics_settle_seconds=int(get("metricsSettleSeconds")),
            notification_email=str(get("notificationEmail")),
            concurrency=int(get("concurrency")),
            scan_mode=str(get("scanMode")),
            map_concurrency=int(get("mapConcurrency")),
            minimum_coverage=float(get("minimumCoverage")),
            organization_id=str(get("organizationId")),
            organizational_unit_ids=tuple(u.strip() for u in str(get("organizationalUnitIds")).split(",") if u.strip()),
            stack_set_region=str(get("stackSetRegion")),
            change_regions=tuple(r.strip() for r in str(get("changeRegions")).split(",") if r.strip()),
            change_batching_seconds=int(get("changeBatchingSeconds")),
            read_neptune_analytics={True: True, "true": True, False: False, "false": False}.get(get("readNeptuneAnalytics"), None),
            stack_set_call_as=str(get("stackSetCallAs")),
            powertools_version=str(get("powertoolsVersion")),
            log_retention_days=int(get("logRetentionDays")),
            approver_principals=tuple(p.strip() for p in str(get("approverPrincipals")).split(",") if p.strip()),
        )
        config.validate()
        return config

    @property
    def on_call_roles(self) -> tuple[tuple[str | None, str], ...]:
        """(account, role name) of each role whose sessions the approver patterns allow; account None: the security
        account (the pattern says ${AWS::AccountId})."""
        roles = []
        for pattern in self.approver_principals:
            match = re.match(r"^arn:(?:[\w-]+|\$\{AWS::Partition\}):sts::(\d{12}|\$\{AWS::AccountId\}):assumed-role/([\w+=,.@-]+)/", pattern)
            if match:
                roles.append((None if match.group(1).startswith("$") else match.group(1), match.group(2)))
        return tuple(roles)

    def validate(self) -> None:
        if not self.organization_id:
            raise ValueError("organizationId is required: your Organization's id (aws organizations describe-organization "
                             "--query Organization.Id --output text), as -c neptune-guard:organizationId=o-... or in cdk.json. "
                             "The roles trust, and the change bus accepts, only principals of that Organization")
        if not re.match(r"^o-[a-z0-9]{10,32}$", self.organization_id):
            raise ValueError(f"organizationId must look like o-xxxxxxxxxx, got {self.organization_id!r}")
        if not self.organizational_unit_ids or not all(re.match(r"^(r-[0-9a-z]{4,32}|ou-[0-9a-z]{4,32}-[a-z0-9]{8,32})$", u)
                                                       for u in self.organizational_unit_ids):
            raise ValueError(f"organizationalUnitIds must be root or OU ids, got {self.organizational_unit_ids!r}")
        if self.target_key.startswith("alias/aws/"):
            raise ValueError("targetKey must be a customer-managed key, not an AWS-managed alias")
        if not 60 <= self.approval_timeout_seconds <= 7 * 24 * 3600:
            raise ValueError("approvalTimeoutSeconds must be between 60 and 604800")
        if not 0 <= self.soak_seconds <= 365 * 24 * 3600:
            raise ValueError("soakSeconds must be from 0 to 31536000 (how long the original is retained, stopped)")
        if not 0 <= self.metrics_settle_seconds <= 3600:
            raise ValueError("metricsSettleSeconds must be from 0 to 3600")
        if not re.fullmatch(r"[A-Za-z0-9+=,.@_-]{1,64}", self.remediation_role_name):
            raise ValueError(f"remediationRoleName must be an IAM role name, got {self.remediation_role_name!r}")
        if self.stack_set_call_as not in ("SELF", "DELEGATED_ADMIN"):
            raise ValueError("stackSetCallAs must be SELF or DELEGATED_ADMIN")
        if self.log_retention_days not in (30, 90, 180, 365, 400, 731):
            raise ValueError("logRetentionDays must be one of 30, 90, 180, 365, 400, 731")
        if not re.match(r"^3\.\d+\.\d+$", self.powertools_version):
            raise ValueError(f"powertoolsVersion must be a Powertools v3 release such as 3.37.0, got {self.powertools_version!r}")
        if not 1 <= self.concurrency <= 64:
            raise ValueError("concurrency must be from 1 to 64")
        if not self.change_regions or not all(re.match(r"^[a-z]{2}(-[a-z]+)+-\d+$", r) for r in self.change_regions):
            raise ValueError(f"changeRegions must be region names (where changes are forwarded from), got {self.change_regions!r}")
        if not 0 <= self.change_batching_seconds <= 300:
            raise ValueError("changeBatchingSeconds must be from 0 to 300 (SQS's batching window)")
        if self.read_neptune_analytics not in (True, False):
            raise ValueError("readNeptuneAnalytics must be true or false")
        if self.scan_mode not in SCAN_MODES:
            raise ValueError(f"scanMode must be one of {', '.join(SCAN_MODES)}, got {self.scan_mode!r}")
        if not 1 <= self.map_concurrency <= 10_000:
            raise ValueError("mapConcurrency must be from 1 to 10000 (the Distributed Map's limit)")
        if not 0 <= self.minimum_coverage <= 1:
            raise ValueError("minimumCoverage must be a share from 0 to 1")
        if not self.approver_principals:
            raise ValueError("approverPrincipals must name who may approve (principal ARN patterns, comma separated)")
        for pattern in self.approver_principals:
            if not pattern.startswith("arn:") or pattern.split(":")[-1] in ("*", ""):
                raise ValueError(f"approverPrincipals: {pattern!r} is not a principal ARN pattern such as "
                                 "arn:aws:sts::111122223333:assumed-role/OnCall/*")
            if ":iam::" in pattern and ":role/" in pattern:
                raise ValueError(f"approverPrincipals: {pattern!r} names a role, but callers through a role are its sessions: "
                                 "arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION (use assumed-role/ROLE/*)")
