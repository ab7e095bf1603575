"""The security stack's custom resource that signs the replicator's code when the stack is deployed (through CDK's
provider framework): its `Package` attribute is where the signed package is, which the workflow's steps function reads
(remediate/replicator_package.py says why the code is signed). A deployment of changed code signs again under a new
physical id; deleting the resource leaves the signed packages in the bucket, which the stack retains."""

import os

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from neptune_guard.aws import CLIENT_CONFIG
from neptune_guard.handlers import envelopes
from neptune_guard.remediate import replicator_package

logger = Logger()


@logger.inject_lambda_context
@envelopes.checked(envelopes.CUSTOM_RESOURCE, "a CloudFormation custom resource request")
def handler(event: dict, context: LambdaContext) -> dict:
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": event["PhysicalResourceId"]}
    signer = boto3.client("signer", config=CLIENT_CONFIG)
    location = replicator_package.sign(boto3.client("s3", config=CLIENT_CONFIG), signer, os.environ["PACKAGE_BUCKET"],
                                       os.environ["SIGNING_PROFILE_NAME"])
    logger.info("signed", package=location)
    return {"PhysicalResourceId": location, "Data": {"Package": location}}
