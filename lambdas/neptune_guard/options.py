"""The scan's options as people and the detector's environment give them: parsed and validated once, here, for
the CLI's flags and the detector's variables alike (argparse's error type, which both report as one line)."""

from __future__ import annotations

import argparse

from .aws import REGION_NAME
from .inventory import parse_account_list


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
