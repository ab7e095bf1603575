"""The scan's options as people and the detector's environment give them: parsed and validated once, here, for
the CLI's flags and the detector's variables alike (argparse's error type, which both report as one line)."""

from __future__ import annotations

import argparse
import os

from neptune_guard.aws import DEFAULT_AUDIT_ROLE, REGION_NAME
from neptune_guard.detect.inventory import parse_account_list
from neptune_guard.scanner import ScanOptions


# The CloudWatch namespace of every function's metrics, the one the stack's alarms read: in the code, not only in the
# environment, since Powertools reads the environment once, when a handler module is first imported.
METRICS_NAMESPACE = "NeptuneGuard"


class ConfigurationError(Exception):
    """A function's environment is not a valid scan configuration: nothing is scanned."""


def regions_option(value: str) -> tuple[str, ...]:
    regions = tuple(dict.fromkeys(r.strip() for r in value.split(",") if r.strip()))
    bad = [r for r in regions if not REGION_NAME.match(r)]
    if bad or not regions:
        raise argparse.ArgumentTypeError(f"not a list of region names: {value!r}")
    return regions


def concurrency_option(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 64, got {value!r}")
    return int(value)


def accounts_option(value: str) -> str:
    if value in ("self", "org"):
        return value
    try:
        return ",".join(parse_account_list(value))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def options_from_environment(environ=os.environ) -> ScanOptions:
    """The scan options of a scanning function (ACCOUNTS self|org|ids, default org; AUDIT_ROLE_NAME; REGIONS, a comma
    list, empty for every enabled region; CONCURRENCY; PUBLISH true|false; READ_NEPTUNE_ANALYTICS true|false), with the
    validations the CLI's flags get."""
    values = {"ACCOUNTS": environ.get("ACCOUNTS", "org"), "REGIONS": environ.get("REGIONS", ""),
              "CONCURRENCY": environ.get("CONCURRENCY", "16"), "PUBLISH": environ.get("PUBLISH", "true"),
              "READ_NEPTUNE_ANALYTICS": environ.get("READ_NEPTUNE_ANALYTICS", "true")}
    try:
        regions = regions_option(values["REGIONS"]) if values["REGIONS"].strip() else None
        accounts = accounts_option(values["ACCOUNTS"])
        concurrency = concurrency_option(values["CONCURRENCY"])
    except argparse.ArgumentTypeError as error:
        raise ConfigurationError(f"bad scan configuration: {error}") from None
    for name in ("PUBLISH", "READ_NEPTUNE_ANALYTICS"):
        if values[name].lower() not in ("true", "false"):
            raise ConfigurationError(f"bad scan configuration: {name} must be true or false, got {values[name]!r}")
    return ScanOptions(accounts=accounts, role_name=environ.get("AUDIT_ROLE_NAME", DEFAULT_AUDIT_ROLE), regions=regions,
                       concurrency=concurrency, publish=values["PUBLISH"].lower() == "true",
                       read_graphs=values["READ_NEPTUNE_ANALYTICS"].lower() == "true")
