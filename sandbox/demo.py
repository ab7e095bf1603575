"""`neptune-guard demo`: the main job end to end against the embedded local AWS (moto, in-process)."""

from __future__ import annotations

import json
import os

from . import moto_fixes
from .organization import DEMO_SCENARIO, seed

SANDBOX_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "sandbox",
    "AWS_SECRET_ACCESS_KEY": "sandbox",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def load_scenario(path: str | None) -> dict:
    if path is None:
        return DEMO_SCENARIO
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def scenario_regions(scenario: dict) -> tuple[str, ...]:
    return tuple(sorted({region for regions in scenario["accounts"].values() for region in regions}))


def run(scenario_path: str | None = None, output: str = "table") -> int:
    from moto import mock_aws

    from neptune_guard import report
    from neptune_guard.scanner import ScanOptions, scan

    scenario = load_scenario(scenario_path)
    for name, value in SANDBOX_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    os.environ.pop("AWS_ENDPOINT_URL", None)  # the demo's AWS is in-process
    moto_fixes.apply()
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        seed(scenario)
        before = scan(ScanOptions(accounts="org", regions=scenario_regions(scenario)))
        if output == "json":
            print(json.dumps({"before": before.to_dict()["evaluations"], "errors": before.to_dict()["errors"]}, indent=2))
        else:
            print("== Scan of the demo Organization ==")
            print(report.table(before))
    return 0
