"""The project's shape: layers point down, and the installed CLI reports the package version."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Each layer may import only the layers listed for it (and the standard library and third-party packages).
ALLOWED = {
    "neptune_guard": {"neptune_guard"},
    "handlers": {"neptune_guard", "handlers"},
    "stacks": {"neptune_guard", "stacks"},
}
OURS = {"neptune_guard", "handlers", "stacks", "sandbox", "tests"}


def imported_top_levels(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & OURS


@pytest.mark.parametrize("layer, folder", [("neptune_guard", "lambdas/neptune_guard"), ("handlers", "lambdas/handlers"), ("stacks", "stacks")])
def test_layers_point_down(layer, folder):
    for path in sorted((ROOT / folder).glob("*.py")):
        assert imported_top_levels(path) <= ALLOWED[layer], f"{path.relative_to(ROOT)} imports {imported_top_levels(path) - ALLOWED[layer]}"


def test_the_cli_reports_the_package_version(capsys):
    from neptune_guard import __version__
    from neptune_guard.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"neptune-guard {__version__}"


def test_findings_carry_the_tool_version():
    from neptune_guard import __version__, asff
    from neptune_guard.models import Cluster, Evaluation, Status

    cluster = Cluster("111111111111", "us-east-1", "c", "arn:aws:rds:us-east-1:111111111111:cluster:c", "available", False, None, None)
    evaluation = Evaluation("neptune_cluster_storage_encrypted", Status.FAILED, "HIGH", "111111111111", "us-east-1", cluster.resource_type,
                            "c", cluster.arn, None, "not encrypted")
    finding = asff.build(evaluation, cluster, "aws", "2026-11-24T00:00:00Z", None)
    assert finding["ProductFields"]["neptune-guard/Version"] == __version__


def test_the_deployed_powertools_layer_is_the_release_the_tests_run():
    import json
    from importlib.metadata import version

    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    assert context["neptune-guard:powertoolsVersion"] == version("aws-lambda-powertools")


def test_each_lambda_ships_only_what_its_handler_imports():
    from stacks import lambda_code

    detector = {p.name for p in lambda_code.closure("handlers.detector")}
    assert {"detector.py", "scanner.py", "securityhub.py", "options.py"} <= detector
    assert not detector & {"cli.py", "report.py", "remediation.py", "approvals.py", "steps.py", "trigger.py"}
    steps = {p.name for p in lambda_code.closure("handlers.steps")}
    assert {"steps.py", "remediation.py", "execution_guard.py"} <= steps and not steps & {"cli.py", "scanner.py", "detector.py"}
    excluded = lambda_code.excluded("handlers.approval")
    assert "neptune_guard/cli.py" in excluded and "handlers/approval.py" not in excluded
