"""Sessions and clients: the one place that knows how we talk to AWS."""

from __future__ import annotations

import re
import threading

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config

DEFAULT_REGION = "us-east-1"
DEFAULT_AUDIT_ROLE = "NeptuneGuardAudit"  # the member role that reads, and the one that imports this tool's findings
# ASCII digits only, the whole string (\d takes any script's digits, and $ a trailing newline).
ACCOUNT_ID = re.compile(r"\A[0-9]{12}\Z")
REGION_NAME = re.compile(r"\A[a-z]{2}(-[a-z]+)+-[0-9]+\Z")

# Adaptive mode adds client-side rate limiting on top of retries, which is what a scan fanning out over
# many account-regions needs when the Neptune or KMS APIs start throttling.
CLIENT_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": 8},
    user_agent_extra="neptune-guard",
    connect_timeout=10,
    read_timeout=30,
)


_LOADERS: dict[str | None, botocore.loaders.Loader] = {}  # by the data_path the session's configuration names
_LOADER_LOCK = threading.Lock()


def _sharing_the_loader(core: botocore.session.Session, **arguments) -> boto3.Session:
    """A session that reads botocore's data through the loader every session of this process with the same data path
    shares. A session of its own per assumed role (or per scan) otherwise reads the endpoint rules and each service's
    model from disk again (the loader caches them per instance): half of a remediation step's time."""
    with _LOADER_LOCK:
        # Read as botocore reads it for its own loader (AWS_DATA_PATH, the profile's data_path); reading it also
        # raises ProfileNotFound for an unknown profile, named or from AWS_PROFILE, as boto3.Session does.
        data_path = core.get_config_variable("data_path")
        loader = _LOADERS.get(data_path)
        if loader is None:
            loader = _LOADERS[data_path] = botocore.loaders.create_loader(data_path)
        core.register_component("data_loader", loader)
        made = boto3.Session(botocore_session=core, **arguments)
        # boto3 appends its resource models' folder to the loader's search paths at every session (Session._setup_loader):
        # kept once, or a warm Lambda's shared loader would grow a path per step.
        paths = loader.search_paths
        if paths and paths[-1] in paths[:-1]:
            paths.pop()
    return made


def new_session(region: str | None = None, profile: str | None = None, **credentials: str) -> boto3.Session:
    """A session in `region`, from `profile` or with credentials of its own if given, else the environment's. An unknown
    profile raises ProfileNotFound here, as boto3.Session does."""
    return _sharing_the_loader(botocore.session.Session(profile=profile), region_name=region, **credentials)


def scan_session() -> boto3.Session:
    """A session for scanning, whose clients leave timestamps as AWS sent them. A scan reads none, and parsing them was
    a sixth of its CPU: botocore's response parser factory takes the timestamp parser as a default for the parsers it
    makes (botocore.parsers.ResponseParserFactory.set_parser_defaults)."""
    core = botocore.session.Session()
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=lambda value: value)
    return _sharing_the_loader(core)


def home_region(session: boto3.Session) -> str:
    return session.region_name or DEFAULT_REGION


def partition_of(session: boto3.Session, region: str) -> str:
    return session.get_partition_for_region(region)


def assume_role_credentials(sts, partition: str, account_id: str, role_name: str, session_name: str = "neptune-guard") -> dict[str, str]:
    """Temporary credentials in `account_id` through `role_name`, from a (regional) STS client."""
    credentials = sts.assume_role(
        RoleArn=f"arn:{partition}:iam::{account_id}:role/{role_name}",
        RoleSessionName=session_name,
    )["Credentials"]
    return {
        "aws_access_key_id": credentials["AccessKeyId"],
        "aws_secret_access_key": credentials["SecretAccessKey"],
        "aws_session_token": credentials["SessionToken"],
    }


def assume_role(
    session: boto3.Session, account_id: str, role_name: str, region: str, session_name: str = "neptune-guard"
) -> boto3.Session:
    """A session of its own in `account_id`, for callers that work in one account at a time."""
    sts = session.client("sts", region_name=region, config=CLIENT_CONFIG)
    credentials = assume_role_credentials(sts, partition_of(session, region), account_id, role_name, session_name)
    return new_session(region, **credentials)


def caller_account(session: boto3.Session) -> str:
    return session.client("sts", region_name=home_region(session), config=CLIENT_CONFIG).get_caller_identity()["Account"]


_CLIENT_LOCK = threading.Lock()


class ClientFactory:
    """Clients for one account, all made from one shared session with that account's credentials, each made once per
    service and region and reused by every step that needs it.

    Sharing the session means service models are loaded once per scan rather than once per account; reusing clients
    saves the rest of a client's cost (a third of a scan's CPU went to making clients). boto3 sessions are not
    thread-safe, clients are: hence the lock around creation only.
    """

    def __init__(self, session: boto3.Session, credentials: dict[str, str] | None = None):
        self.session = session
        self.credentials = credentials or {}
        self._clients: dict[tuple[str, str], object] = {}

    def client(self, service: str, region: str):
        with _CLIENT_LOCK:
            if (service, region) not in self._clients:
                self._clients[(service, region)] = self.session.client(service, region_name=region, config=CLIENT_CONFIG,
                                                                       **self.credentials)
            return self._clients[(service, region)]
