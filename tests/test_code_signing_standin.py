"""The local AWS's Signer signing jobs and Lambda code signing (sandbox/aws/code_signing.py), against what the Lambda
and Signer references say: a signed package deploys under Enforce; an unsigned one, one another profile signed, one
revoked or expired is refused under Enforce and deployed under Warn; a package changed since signing, or carrying a
signature block copied from another, is refused whatever the policy."""

import io
import zipfile
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from neptune_guard.remediate import replicator_package

REGION = "us-east-1"
BUCKET = "neptune-guard-replicator-test"


@pytest.fixture
def signing(local_aws):
    s3, signer, lam = (local_aws.client(name, region_name=REGION) for name in ("s3", "signer", "lambda"))
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    profiles = {name: signer.put_signing_profile(profileName=name, platformId="AWSLambda-SHA384-ECDSA")["profileVersionArn"]
                for name in ("Ours", "Theirs")}
    role = local_aws.client("iam").create_role(RoleName="replicator", AssumeRolePolicyDocument="{}")["Role"]["Arn"]

    def config(policy: str, region: str = REGION) -> str:
        return local_aws.client("lambda", region_name=region).create_code_signing_config(
            AllowedPublishers={"SigningProfileVersionArns": [profiles["Ours"]]},
            CodeSigningPolicies={"UntrustedArtifactOnDeployment": policy})["CodeSigningConfig"]["CodeSigningConfigArn"]

    def signed(profile: str = "Ours") -> tuple[bytes, str]:
        location = replicator_package.sign(s3, signer, BUCKET, profile)
        key = location.split("/", 3)[3]
        return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read(), key.rsplit("/", 1)[1].removesuffix(".zip")

    def create(name: str, package: bytes, config_arn: str, region: str = REGION) -> dict:
        return local_aws.client("lambda", region_name=region).create_function(
            FunctionName=name, Runtime="python3.13", Role=role, Handler=replicator_package.replication.__name__ + ".handler",
            Code={"ZipFile": package}, CodeSigningConfigArn=config_arn)

    return {"s3": s3, "signer": signer, "lambda": lam, "config": config, "signed": signed, "create": create}


def refused(call) -> str:
    with pytest.raises(ClientError) as error:
        call()
    return error.value.response["Error"]["Code"]


def with_entry(package: bytes, name: str, text: str) -> bytes:
    changed = io.BytesIO(package)
    with zipfile.ZipFile(changed, "a") as archive:
        archive.writestr(name, text)
    return changed.getvalue()


def test_a_signed_package_deploys_under_enforce_and_runs_as_its_entries(signing):
    import base64
    import hashlib

    package, _ = signing["signed"]()
    enforce = signing["config"]("Enforce")
    created = signing["create"]("replicator", package, enforce)
    assert created["CodeSha256"] == base64.b64encode(hashlib.sha256(package).digest()).decode()
    assert signing["lambda"].get_function_code_signing_config(FunctionName="replicator")["CodeSigningConfigArn"] == enforce
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        assert sorted(archive.namelist()) == sorted(zipfile.ZipFile(io.BytesIO(replicator_package.code_zip())).namelist())
    listed = signing["lambda"].list_code_signing_configs()["CodeSigningConfigs"]
    assert [c["CodeSigningConfigArn"] for c in listed] == [enforce]


def test_what_the_allowed_profile_did_not_sign_is_refused_under_enforce_and_deployed_under_warn(signing, local_aws):
    enforce, warn = signing["config"]("Enforce"), signing["config"]("Warn")
    theirs, _ = signing["signed"]("Theirs")
    revoked, job = signing["signed"]()
    signing["signer"].revoke_signature(jobId=job, reason="compromised")
    untrusted = {"unsigned": replicator_package.code_zip(), "another profile": theirs, "revoked": revoked}
    for n, (why, package) in enumerate(untrusted.items()):
        assert refused(lambda: signing["create"](f"enforced-{n}", package, enforce)) == "CodeVerificationFailedException", why
        assert signing["create"](f"warned-{n}", package, warn)["FunctionName"] == f"warned-{n}", why
    names = {f["FunctionName"] for f in signing["lambda"].list_functions()["Functions"]}
    assert names == {f"warned-{n}" for n in range(len(untrusted))}  # nothing made when refused


def test_a_package_changed_since_it_was_signed_is_refused_whatever_the_policy(signing):
    package, _ = signing["signed"]()
    other = with_entry(replicator_package.code_zip(), "extra.py", "x = 1")
    copied = io.BytesIO(other)
    with zipfile.ZipFile(copied, "a") as archive:  # another package, the signature block copied onto it
        archive.comment = zipfile.ZipFile(io.BytesIO(package)).comment
    for policy in ("Enforce", "Warn"):
        config = signing["config"](policy)
        for tampered in (with_entry(package, "neptune_guard/evil.py", "import os"), copied.getvalue()):
            assert refused(lambda: signing["create"]("tampered", tampered, config)) == "InvalidCodeSignatureException"


def test_an_expired_signature_is_refused_under_enforce(signing, monkeypatch):
    from moto.core import utils

    from sandbox.aws import code_signing

    package, _ = signing["signed"]()
    later = utils.utcnow() + timedelta(days=135 * 30 + 1)  # past the default validity, 135 months
    monkeypatch.setattr(code_signing, "utcnow", lambda: later)
    assert refused(lambda: signing["create"]("expired", package, signing["config"]("Enforce"))) == "CodeVerificationFailedException"


def test_a_configuration_of_another_region_is_not_found_and_signing_refuses_bad_zips(signing):
    package, _ = signing["signed"]()
    elsewhere = signing["config"]("Enforce", "eu-west-1")
    assert refused(lambda: signing["create"]("replicator", package, elsewhere)) == "CodeSigningConfigNotFoundException"
    s3, signer = signing["s3"], signing["signer"]
    for body, reason in ((package, "already has a signature"), (b"not a zip", "malformed"), (_empty_zip(), "empty")):
        version = s3.put_object(Bucket=BUCKET, Key="source.zip", Body=body)["VersionId"]
        job = signer.start_signing_job(source={"s3": {"bucketName": BUCKET, "key": "source.zip", "version": version}},
                                       destination={"s3": {"bucketName": BUCKET, "prefix": "out/"}}, profileName="Ours")["jobId"]
        described = signer.describe_signing_job(jobId=job)
        assert described["status"] == "Failed" and reason in described["statusReason"]


def test_a_deployment_whose_signing_fails_stops_with_the_reason(signing, monkeypatch):
    monkeypatch.setattr(replicator_package, "code_zip", _empty_zip)
    with pytest.raises(replicator_package.SigningFailed, match="the zip file is empty"):
        replicator_package.sign(signing["s3"], signing["signer"], BUCKET, "Ours")


def _empty_zip() -> bytes:
    buffer = io.BytesIO()
    zipfile.ZipFile(buffer, "w").close()
    return buffer.getvalue()
