"""The replicator's code as member accounts run it: signed once, when the security stack is deployed, by its AWS Signer
profile. In each member account and region the member stack's code-signing configuration accepts that profile alone
and blocks anything else (`Enforce`), and the remediation role may create a replicator function only under that
configuration (`lambda:CodeSigningConfigArn`, stacks/member_events.py). So a holder of the remediation role can make a
replicator, but not one that runs code of its own: Lambda refuses a package the profile did not sign, or one changed
since it was signed, and IAM refuses a function without the configuration.
https://docs.aws.amazon.com/lambda/latest/dg/configuration-codesigning.html (Integrity, Expiry, Mismatch, Revocation)
https://docs.aws.amazon.com/lambda/latest/dg/config-codesigning-policies.html (the lambda:CodeSigningConfigArn condition)
https://docs.aws.amazon.com/signer/latest/developerguide/signing-jobs-lambda.html
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import zipfile
from pathlib import Path

import boto3
from botocore.exceptions import WaiterError

from neptune_guard import aws
from neptune_guard.remediate import replication

PACKAGE_ENVIRONMENT = "REPLICATOR_PACKAGE"  # s3://<bucket>/<key> of the signed package, in the security account
PROFILE_ENVIRONMENT = "REPLICATOR_SIGNING_PROFILE_VERSION_ARN"  # the one publisher the member configurations accept
UNSIGNED_PREFIX, SIGNED_PREFIX = "replicator/unsigned/", "replicator/signed/"
ENFORCE = "Enforce"
# The AWS actions, beside the code that calls them: the deployment's signing (security account, its own bucket and
# profile), the workflow's read of the signed package (security account) and its search for the member configuration
# (member account, read only; IAM pins the configuration CreateFunction may name).
PERMISSIONS = {
    "sign": ["s3:PutObject", "signer:StartSigningJob", "signer:DescribeSigningJob"],
    "read_package": ["s3:GetObject"],
    "find_configuration": ["lambda:ListCodeSigningConfigs"],
}


class SigningFailed(Exception):
    """Signer could not sign the package: the deployment stops, and nothing runs unsigned."""


def code_zip() -> bytes:
    """The replicator's code: replication.py and its packages' markers, nothing else (it needs only botocore). The same
    bytes for the same sources (fixed entry times), so that a deployment signs again only when the code changed."""
    library = Path(replication.__file__).resolve().parents[2]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("neptune_guard/__init__.py", "neptune_guard/remediate/__init__.py", "neptune_guard/remediate/replication.py"):
            entry = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, (library / name).read_bytes(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def sign(s3, signer, bucket: str, profile_name: str) -> str:
    """Puts the code in the (versioned) bucket, signs it there with the profile, and waits for the job (seconds; the
    SDK's waiter): s3://<bucket>/<key> of the signed package."""
    code = code_zip()
    key = f"{UNSIGNED_PREFIX}{hashlib.sha256(code).hexdigest()}.zip"
    version = s3.put_object(Bucket=bucket, Key=key, Body=code)["VersionId"]
    job = signer.start_signing_job(
        source={"s3": {"bucketName": bucket, "key": key, "version": version}},
        destination={"s3": {"bucketName": bucket, "prefix": SIGNED_PREFIX}}, profileName=profile_name)["jobId"]
    try:
        signer.get_waiter("successful_signing_job").wait(jobId=job, WaiterConfig={"Delay": 2, "MaxAttempts": 60})
    except WaiterError as error:
        reason = signer.describe_signing_job(jobId=job).get("statusReason", str(error))
        raise SigningFailed(f"signing job {job} did not succeed: {reason}") from error
    signed = signer.describe_signing_job(jobId=job)["signedObject"]["s3"]
    return f"s3://{signed['bucketName']}/{signed['key']}"


def configured() -> tuple[str, str] | None:
    """(package location, signing profile version ARN) as the deployment configured them, or None."""
    location, profile = os.environ.get(PACKAGE_ENVIRONMENT, ""), os.environ.get(PROFILE_ENVIRONMENT, "")
    return (location, profile) if location.startswith("s3://") and "/" in location[5:] and profile else None


@functools.cache
def package(location: str) -> bytes:
    """The signed package's bytes, read with the workflow's own credentials (it is in the security account). A
    deployment that signs again gives a new location, so a process keeps what it read."""
    bucket, key = location.removeprefix("s3://").split("/", 1)
    return boto3.client("s3", config=aws.CLIENT_CONFIG).get_object(Bucket=bucket, Key=key)["Body"].read()


def code_signing_config(lam, profile_version_arn: str) -> str | None:
    """The member region's configuration that accepts this profile alone and enforces it (the member stack's), if any."""
    for page in lam.get_paginator("list_code_signing_configs").paginate():
        for config in page["CodeSigningConfigs"]:
            if (config["AllowedPublishers"]["SigningProfileVersionArns"] == [profile_version_arn]
                    and config["CodeSigningPolicies"]["UntrustedArtifactOnDeployment"] == ENFORCE):
                return config["CodeSigningConfigArn"]
    return None
