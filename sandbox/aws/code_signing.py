"""AWS Signer's signing jobs and Lambda's code signing for the local AWS: moto has signing profiles, but no signing
jobs, no code-signing configurations and no signature check. A small stand-in built from the AWS reference, covering
what Neptune Guard calls.

Signer (`StartSigningJob`, `DescribeSigningJob`, `RevokeSignature`) signs a Lambda zip read from S3 at the version
named (Signer reads a versioned source), with an `Active` profile of the `AWSLambda-SHA384-ECDSA` platform. A job
ends at once: `Failed` for an empty, malformed or already signed zip, as documented; else `Succeeded`, and the
signed zip is written to `<prefix><jobId>.zip` in the destination bucket. The signed zip keeps the source's entries
(Lambda runs it as before) and names its job in the archive comment. Real Signer embeds a cryptographic signature;
here the job's record in the signing account's Signer (profile version, a SHA-384 of the entries, the expiry from the
profile's validity period, any revocation) is the signature: a comment anyone writes proves nothing by itself.

Lambda (`CreateCodeSigningConfig`, `GetCodeSigningConfig`, `ListCodeSigningConfigs`, `DeleteCodeSigningConfig`;
`UntrustedArtifactOnDeployment` defaults to `Warn`) checks the package of a `CreateFunction` that names a
configuration, which must be in the function's account and region (`CodeSigningConfigNotFoundException`):
- Integrity: the entries changed since signing, or the named job is unknown: `InvalidCodeSignatureException`, whatever
  the policy;
- Expiry, Mismatch (no signature, or a profile version the configuration does not allow), Revocation:
  `CodeVerificationFailedException` under `Enforce`, a deployment as usual under `Warn`.
Nothing is created when refused. Not emulated: layers' signatures, `UpdateFunctionCode`, signing by another account's
profile through profile permissions, Signer's S3 authorization as the caller.

https://docs.aws.amazon.com/signer/latest/developerguide/signing-jobs-lambda.html
https://docs.aws.amazon.com/signer/latest/api/API_StartSigningJob.html
https://docs.aws.amazon.com/signer/latest/api/API_DescribeSigningJob.html
https://docs.aws.amazon.com/lambda/latest/dg/configuration-codesigning.html (the four checks, Warn and Enforce)
https://docs.aws.amazon.com/lambda/latest/api/API_CreateCodeSigningConfig.html
https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html (CodeVerificationFailedException,
InvalidCodeSignatureException, CodeSigningConfigNotFoundException)
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import re
import uuid
import zipfile
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote

from moto.awslambda import models as lambda_models
from moto.awslambda import responses as lambda_responses
from moto.awslambda import urls as lambda_urls
from moto.core.exceptions import JsonRESTError
from moto.core.utils import utcnow
from moto.s3.models import s3_backends
from moto.signer import responses as signer_responses
from moto.signer import urls as signer_urls
from moto.signer.models import signer_backends

SIGNED = b"NeptuneGuardSandboxSignature:"  # the archive comment of a signed zip, before its job id
PLATFORM = "AWSLambda-SHA384-ECDSA"
VALIDITY = {"DAYS": 1, "MONTHS": 30, "YEARS": 365}  # days per unit of signatureValidityPeriod
CONFIG_ARN = re.compile(r"\Aarn:aws[a-z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):code-signing-config:csc-[0-9a-f]{17}\Z")
PROFILE_VERSION_ARN = re.compile(r"\Aarn:aws[a-z-]*:signer:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):/signing-profiles/[^/]+/[^/]+\Z")

_installed = False


class _Error(JsonRESTError):
    def __init__(self, error_type: str, message: str, status: int = 400):
        super().__init__(error_type, message)
        self.code = status


def _entries_digest(archive: zipfile.ZipFile) -> str:
    digest = hashlib.sha384()
    for info in archive.infolist():
        digest.update(info.filename.encode() + b"\0" + archive.read(info) + b"\0")
    return digest.hexdigest()


def _jobs(backend) -> dict[str, dict]:
    if not hasattr(backend, "_neptune_guard_signing_jobs"):
        backend._neptune_guard_signing_jobs = {}
    return backend._neptune_guard_signing_jobs


def _configs(backend) -> dict[str, dict]:
    if not hasattr(backend, "_neptune_guard_code_signing_configs"):
        backend._neptune_guard_code_signing_configs = {}
    return backend._neptune_guard_code_signing_configs


# Signer.

def _sign(source: bytes, job_id: str) -> tuple[bytes | None, str, str]:
    """(signed zip, digest of its entries, why it failed)."""
    try:
        with zipfile.ZipFile(io.BytesIO(source)) as archive:
            if not archive.infolist():
                return None, "", "the zip file is empty"
            if archive.comment.startswith(SIGNED):
                return None, "", "the zip file already has a signature"
            digest = _entries_digest(archive)
    except zipfile.BadZipFile:
        return None, "", "the zip file is malformed"
    signed = io.BytesIO(source)
    with zipfile.ZipFile(signed, "a") as archive:
        archive.comment = SIGNED + job_id.encode()
    return signed.getvalue(), digest, ""


def start_signing_job(self) -> str:
    params = json.loads(self.body)
    backend = self.signer_backend
    profile = backend.signing_profiles.get(params.get("profileName", ""))
    if profile is None or profile.status != "Active":
        raise _Error("ResourceNotFoundException", f"signing profile {params.get('profileName')} not found or not active", 404)
    if profile.platform_id != PLATFORM:
        raise _Error("ValidationException", f"this stand-in signs {PLATFORM} only")
    source, destination = params["source"]["s3"], params["destination"]["s3"]
    s3 = s3_backends[self.current_account]["aws"]
    if not source.get("version"):
        raise _Error("ValidationException", "the source's version is required (Signer reads a versioned bucket)")
    found = s3.get_object(source["bucketName"], source["key"], version_id=source["version"])
    if found is None:
        raise _Error("ValidationException", f"s3://{source['bucketName']}/{source['key']} version {source['version']} does not exist")
    job_id = str(uuid.uuid4())
    signed, digest, failed = _sign(found.value, job_id)
    now = utcnow()
    period = profile.signature_validity_period
    job = {"jobId": job_id, "jobOwner": self.current_account, "jobInvoker": self.current_account, "profileName": profile.name,
           "profileVersion": profile.profile_version, "profileVersionArn": profile.profile_version_arn, "platformId": PLATFORM,
           "source": params["source"], "createdAt": now.timestamp(), "completedAt": now.timestamp(),
           "status": "Failed" if failed else "Succeeded", "digest": digest,
           "signatureExpiresAt": (now + timedelta(days=VALIDITY[period["type"]] * int(period["value"]))).timestamp()}
    if failed:
        job["statusReason"] = failed
    else:
        key = f"{destination.get('prefix', '')}{job_id}.zip"
        s3.put_object(destination["bucketName"], key, signed)
        job["signedObject"] = {"s3": {"bucketName": destination["bucketName"], "key": key}}
    _jobs(backend)[job_id] = job
    return json.dumps({"jobId": job_id, "jobOwner": self.current_account})


def _job(self) -> dict:
    job_id = unquote(self.path.split("/signing-jobs/", 1)[1].split("/")[0])
    job = _jobs(self.signer_backend).get(job_id)
    if job is None:
        raise _Error("ResourceNotFoundException", f"signing job {job_id} does not exist", 404)
    return job


def describe_signing_job(self) -> str:
    return json.dumps({k: v for k, v in _job(self).items() if k != "digest"})


def revoke_signature(self) -> str:
    job = _job(self)
    job["revocationRecord"] = {"reason": json.loads(self.body or "{}").get("reason", ""), "revokedAt": utcnow().timestamp(),
                               "revokedBy": self.current_account}
    return "{}"


# Lambda.

def create_code_signing_config(self) -> str:
    params = json.loads(self.body or "{}")
    arn = f"arn:aws:lambda:{self.region}:{self.current_account}:code-signing-config:csc-{uuid.uuid4().hex[:17]}"
    config = {"CodeSigningConfigId": arn.rsplit(":", 1)[1], "CodeSigningConfigArn": arn, "Description": params.get("Description", ""),
              "AllowedPublishers": params["AllowedPublishers"],
              "CodeSigningPolicies": {"UntrustedArtifactOnDeployment": "Warn", **params.get("CodeSigningPolicies", {})},
              "LastModified": utcnow().isoformat()}
    _configs(self.backend)[arn] = config
    return json.dumps({"CodeSigningConfig": config})


def _config_of(self) -> tuple[str, dict]:
    arn = unquote(self.path.split("/code-signing-configs/", 1)[1])
    config = _configs(self.backend).get(arn)
    if config is None:
        raise _Error("ResourceNotFoundException", f"code signing configuration {arn} does not exist", 404)
    return arn, config


def get_code_signing_config(self) -> str:
    return json.dumps({"CodeSigningConfig": _config_of(self)[1]})


def delete_code_signing_config(self) -> tuple[int, dict, str]:
    del _configs(self.backend)[_config_of(self)[0]]
    return 204, {}, ""


def list_code_signing_configs(self) -> str:
    configs = list(_configs(self.backend).values())
    start = int(self.querystring.get("Marker", ["0"])[0] or 0)
    size = int(self.querystring.get("MaxItems", ["50"])[0] or 50)
    page = configs[start:start + size]
    return json.dumps({"CodeSigningConfigs": page, **({"NextMarker": str(start + size)} if start + size < len(configs) else {})})


def _package(account: str, code: dict) -> bytes:
    if "ZipFile" in code:
        return base64.b64decode(code["ZipFile"])
    found = s3_backends[account]["aws"].get_object(code["S3Bucket"], code["S3Key"], version_id=code.get("S3ObjectVersion"))
    return found.value if found is not None else b""


def verify(account: str, region: str, config_arn: str, package: bytes) -> None:
    """Lambda's checks of a package deployed under `config_arn`, for a function of `account` in `region`."""
    match = CONFIG_ARN.match(config_arn or "")
    config = _configs(lambda_models.lambda_backends[account][region]).get(config_arn) if match else None
    if config is None or (match["account"], match["region"]) != (account, region):
        raise _Error("CodeSigningConfigNotFoundException", f"code signing configuration {config_arn} not found", 404)
    enforce = config["CodeSigningPolicies"]["UntrustedArtifactOnDeployment"] == "Enforce"
    try:
        with zipfile.ZipFile(io.BytesIO(package)) as archive:
            comment, digest = archive.comment, _entries_digest(archive)
    except zipfile.BadZipFile:
        comment, digest = b"", ""
    untrusted = None
    if not comment.startswith(SIGNED):
        untrusted = "the code package is not signed"
    else:
        job = next((j for backends in signer_backends.values() for b in backends.values()
                    for j in [_jobs(b).get(comment[len(SIGNED):].decode(errors="replace"))] if j), None)
        if job is None or job["status"] != "Succeeded" or job["digest"] != digest:
            raise _Error("InvalidCodeSignatureException", "the code package's signature failed the integrity check")
        if job["profileVersionArn"] not in config["AllowedPublishers"]["SigningProfileVersionArns"]:
            untrusted = f"the code package is signed by {job['profileVersionArn']}, which the configuration does not allow"
        elif "revocationRecord" in job:
            untrusted = "the code package's signature was revoked"
        elif datetime.fromtimestamp(job["signatureExpiresAt"], timezone.utc) <= utcnow().replace(tzinfo=timezone.utc):
            untrusted = "the code package's signature expired"
    if untrusted and enforce:
        raise _Error("CodeVerificationFailedException", untrusted)


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    for name, handler in (("start_signing_job", start_signing_job), ("describe_signing_job", describe_signing_job),
                          ("revoke_signature", revoke_signature)):
        setattr(signer_responses.SignerResponse, name, handler)
    signer_urls.url_paths.update({
        "{0}/signing-jobs$": signer_responses.SignerResponse.dispatch,
        "{0}/signing-jobs/(?P<job_id>[^/]+)$": signer_responses.SignerResponse.dispatch,
        "{0}/signing-jobs/(?P<job_id>[^/]+)/revoke$": signer_responses.SignerResponse.dispatch})
    for name, handler in (("create_code_signing_config", create_code_signing_config), ("get_code_signing_config", get_code_signing_config),
                          ("delete_code_signing_config", delete_code_signing_config), ("list_code_signing_configs", list_code_signing_configs)):
        setattr(lambda_responses.LambdaResponse, name, handler)
    lambda_urls.url_paths.update({
        r"{0}/(?P<api_version>[^/]+)/code-signing-configs/?$": lambda_responses.LambdaResponse.dispatch,
        r"{0}/(?P<api_version>[^/]+)/code-signing-configs/(?P<arn>.+)$": lambda_responses.LambdaResponse.dispatch})

    original_create = lambda_models.LambdaBackend.create_function

    @functools.wraps(original_create)
    def create_function(self, spec):
        if spec.get("CodeSigningConfigArn"):
            verify(self.account_id, self.region_name, spec["CodeSigningConfigArn"], _package(self.account_id, spec.get("Code") or {}))
        return original_create(self, spec)

    lambda_models.LambdaBackend.create_function = create_function
