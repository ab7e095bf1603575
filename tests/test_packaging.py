"""The package: what the wheel and each Lambda hold, and the version they report. (Its layering: test_layout.py.)"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_cli_reports_the_package_version(capsys):
    from neptune_guard import __version__
    from neptune_guard.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"neptune-guard {__version__}"


def test_findings_carry_the_tool_version():
    from neptune_guard import __version__
    from neptune_guard.findings import asff
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

    detector = {p.name for p in lambda_code.closure("neptune_guard.handlers.detector")}
    assert {"detector.py", "scanner.py", "securityhub.py", "options.py"} <= detector
    assert not detector & {"cli.py", "report.py", "cluster.py", "approvals.py", "steps.py", "trigger.py"}
    steps = {p.name for p in lambda_code.closure("neptune_guard.handlers.steps")}
    assert {"steps.py", "cluster.py", "guard.py"} <= steps and not steps & {"cli.py", "scanner.py", "detector.py"}
    assert not steps & {"console.py", "executions.py"}  # the CLI's own modules (rich) never ship in a Lambda
    assert "notifications.py" in steps
    excluded = lambda_code.excluded("neptune_guard.handlers.approval")
    assert "neptune_guard/cli.py" in excluded and "neptune_guard/handlers/approval.py" not in excluded
    assert "neptune_guard/handlers/steps.py" in excluded and "neptune_guard/console.py" in excluded


def test_the_wheel_holds_the_library_and_its_handlers_under_its_own_name(tmp_path):
    """Build the wheel offline from a copy of what it is built from, and read what it would install."""
    import email
    import shutil
    import subprocess
    import sys
    import zipfile

    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "lambdas", source / "lambdas", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
                            "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("neptune_guard-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    info = next(top for top in tops if top.endswith(".dist-info"))
    assert tops == {"neptune_guard", info}  # no sandbox, no top-level handlers, no stacks or tests
    assert {"neptune_guard/cli.py", "neptune_guard/handlers/__init__.py", "neptune_guard/handlers/steps.py",
            "neptune_guard/handlers/approval.py", f"{info}/licenses/LICENSE"} <= set(names)
    archive = zipfile.ZipFile(wheel)
    metadata = email.message_from_bytes(archive.read(f"{info}/METADATA"))
    assert metadata["License-Expression"] == "Apache-2.0" and metadata["Requires-Python"] == ">=3.11"
    assert "Programming Language :: Python :: 3.11" in metadata.get_all("Classifier")
    assert any(url.startswith("Source, https://") for url in metadata.get_all("Project-URL"))
    requires = metadata.get_all("Requires-Dist")
    plain = {r.split(">")[0].split("=")[0].strip() for r in requires if "extra ==" not in r}
    assert plain == {"boto3", "botocore", "rich"}  # what the CLI imports, no more
    lambda_only = {r.split(">")[0].strip() for r in requires if 'extra == "lambda"' in r}
    assert lambda_only == {"aws-lambda-powertools", "aws-xray-sdk", "fastjsonschema", "pydantic"}
    entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert "neptune-guard = neptune_guard.cli:main" in entry_points


def test_the_cli_imports_none_of_the_lambda_packages():
    import subprocess
    import sys

    script = ("import sys\nfrom neptune_guard.cli import main\nmain(['checks'])\n"
              "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('aws_lambda_powertools', 'aws_xray_sdk', "
              "'pydantic', 'fastjsonschema'))\nassert not loaded, loaded\n")
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert ran.returncode == 0, ran.stderr


def test_the_demo_from_a_wheel_says_it_needs_the_repository(capsys, monkeypatch):
    from neptune_guard import cli

    class Missing:
        def load(self):
            raise ModuleNotFoundError("No module named 'sandbox'")

    monkeypatch.setattr(cli, "entry_points", lambda **kwargs: [Missing()])
    assert cli.main(["demo"]) == 2
    assert "development install" in capsys.readouterr().err
