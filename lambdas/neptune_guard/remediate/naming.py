"""Names of what the workflows create, validated before anything is created.

Neptune cluster, instance and snapshot identifiers: 1 to 63 characters (snapshots 255), letters,
digits and hyphens, a letter first, no hyphen last, never two hyphens in a row
(https://docs.aws.amazon.com/neptune/latest/apiref/API_CreateDBCluster.html, DBClusterIdentifier).
A derived name always keeps its unique suffix whole and shortens the customer's part instead, so two
executions can never derive the same name, however long the cluster's identifier.
"""

from __future__ import annotations

import hashlib
import re

IDENTIFIER = re.compile(r"\A[a-zA-Z](?!.*--)[a-zA-Z0-9-]*(?<!-)\Z")
MAX_IDENTIFIER = 63
MAX_SNAPSHOT_IDENTIFIER = 255


class InvalidName(ValueError):
    pass


def is_identifier(name: str, limit: int = MAX_IDENTIFIER) -> bool:
    return isinstance(name, str) and 0 < len(name) <= limit and bool(IDENTIFIER.match(name))


TOKEN_LENGTH = 8
MARK = "ng"  # Neptune Guard's, before the token: a customer's own `orders-cmk-20261204` is not a name the workflow derives


def execution_token(execution_arn: str) -> str:
    """Eight hex characters unique to one execution: part of every name the execution derives."""
    return hashlib.sha256(execution_arn.encode()).hexdigest()[:TOKEN_LENGTH]


def derived(base: str, role: str, token: str, limit: int = MAX_IDENTIFIER) -> str:
    """`<base>-<role>-ng<token>`, the base shortened (never the suffix) to fit `limit`, and valid."""
    suffix = f"-{role}-{MARK}{token}"
    room = limit - len(suffix)
    if room < 1:
        raise InvalidName(f"suffix {suffix!r} leaves no room in {limit} characters")
    name = base[:room].rstrip("-") + suffix
    if not is_identifier(name, limit):
        raise InvalidName(f"{name!r} (derived from {base!r}) is not a valid Neptune identifier")
    return name


def pattern(role: str) -> str:
    """The IAM ARN pattern of the names derived for `role` (`?` one character: the token's)."""
    return f"*-{role}-{MARK}" + "?" * TOKEN_LENGTH


# The names the workflows derive for what they create, by resource type, as IAM ARN patterns. The remediation role may
# tag a resource with its execution's creation tag only under these names: RDS authorizes tag-on-create as a plain
# rds:AddTagsToResource on the new resource, and no condition key tells a creating call from a later one, so the name
# is what keeps the tag off a customer's existing resource (and MARK keeps a customer's dated names out of them).
CREATED_NAMES = {
    "cluster": tuple(pattern(role) for role in ("cmk", "archive")),
    "db": (pattern("cmk"),),
    "cluster-snapshot": tuple(pattern(role) for role in ("pre-cmk", "archive", "final", "cmk")),
}
TEMPORARY_CLUSTER_NAMES = (pattern("tmp"),)  # the snapshot workflow's: restored from a customer's snapshot, then deleted
