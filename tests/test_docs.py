"""The docs hold in the code: every documented command is one the CLI takes, the exit codes are the CLI's and behave
as documented, every link resolves, the README stays short, and the lifecycle diagram is the one the ASL generates."""

import re
import shlex
import sys
from pathlib import Path

import pytest

from neptune_guard import cli

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PREFIXES = ("neptune-guard", "python -m neptune_guard", ".venv/bin/python -m neptune_guard", ".venv/bin/neptune-guard")
# Pages the lead adds later; the runbook links to them already.
PLANNED = {"live-cutover.md"}


def code_blocks(text: str):
    for match in re.finditer(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M):
        yield match.group(1)


def documented_commands():
    for page in PAGES:
        for block in code_blocks(page.read_text()):
            logical = re.sub(r"\\\n\s*", " ", block)  # continuation lines
            for line in logical.splitlines():
                line = line.strip()
                if any(line.startswith(prefix + " ") for prefix in PREFIXES):
                    yield page.name, line


def arguments(line: str) -> list[str]:
    """The CLI's arguments in a documented shell line: split as a POSIX shell does, up to a redirection or a pipe."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = []
    for word in lexer:
        if word in (">", ">>", "|", "&", "&&", ";", "||"):
            break
        words.append(word)
    return words[1:] if words[0].endswith("neptune-guard") else words[3:]


def test_the_docs_show_the_on_call_commands():
    shown = {arguments(line)[0] for _, line in documented_commands()}
    assert {"scan", "plan", "remediate", "pending", "status", "approve", "reject", "checks", "demo"} <= shown


@pytest.mark.parametrize("page, line", list(documented_commands()))
def test_every_documented_command_is_one_the_cli_takes(page, line):
    words = arguments(line)  # also proves it pastes into a POSIX shell as one command
    try:
        cli.build_parser().parse_args(words)
    except SystemExit as exit_:
        assert exit_.code == 0, f"{page}: `{line}` is not a command the CLI takes"


def test_the_documented_exit_codes_are_the_clis(capsys):
    table = dict(re.findall(r"^\| (\d) \| (.+?) \|$", (ROOT / "README.md").read_text(), flags=re.M))
    clauses = dict(re.findall(r"(\d) ([^;]+)", cli.EXIT_CODES.split(":", 1)[1]))
    assert table == {code: text.strip() for code, text in clauses.items()}
    assert (cli.EXIT_OK, cli.EXIT_NOTHING_SCANNED, cli.EXIT_USAGE, cli.EXIT_CREDENTIALS, cli.EXIT_AWS) == (0, 1, 2, 3, 4)


def test_the_exit_codes_behave_as_documented(capsys, monkeypatch):
    """2 for bad usage and for a request the CLI refuses, 3 without usable credentials: one line, no traceback."""
    with pytest.raises(SystemExit) as usage:
        cli.main(["scan", "--regions", "Mars"])
    assert usage.value.code == 2
    execution = "arn:aws:states:us-east-1:111122223333:execution:NeptuneGuardClusterRemediation:orders-abc123"
    assert cli.main(["approve", execution, "--approval-url", "https://abcdefghij.lambda-url.us-east-1.on.aws/"]) == 2
    assert "--stage" in capsys.readouterr().err
    assert cli.main(["scan", "--profile", "no-such-profile"]) == 3
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_every_relative_link_resolves():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            resolved = (page.parent / target).resolve()
            assert resolved.exists() or target in PLANNED, f"{page.name} links to {target}, which does not exist"


def test_the_readme_is_short_and_its_contents_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 250
    first_screen = "\n".join(text.splitlines()[:20])
    assert all(word in first_screen for word in ("pip install", "neptune-guard scan", "make demo", "deploy guide"))
    headings = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^## (.+)$", text, flags=re.M)}
    anchors = re.findall(r"\]\(#([^)]+)\)", text)
    assert anchors and set(anchors) <= headings


def test_the_runbook_keeps_a_place_for_the_live_cutover_page():
    assert "(live-cutover.md)" in (ROOT / "docs" / "runbook.md").read_text()


def test_the_lifecycle_diagram_is_the_one_the_asl_generates():
    """Regenerate and compare: after an ASL change, run `python tools/asl_diagram.py` and commit the page."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import asl_diagram
    finally:
        sys.path.remove(str(ROOT / "tools"))
    import json

    definition = json.loads((ROOT / "state_machines" / "cluster_remediation.asl.json").read_text())
    generated = asl_diagram.page(definition)
    assert (ROOT / "docs" / "remediation-lifecycle.md").read_text() == generated, "run python tools/asl_diagram.py"
    diagram = asl_diagram.mermaid(definition)
    for name, state in definition["States"].items():  # every state and every edge is drawn
        for target in [state.get("Next"), state.get("Default"), *(c["Next"] for c in state.get("Choices", [])),
                       *(c["Next"] for c in state.get("Catch", []))]:
            if target:
                assert re.search(rf"^    {name} --> {target}\b", diagram, flags=re.M), (name, target)


def _about(seconds: int) -> str:
    hours = seconds / 3600
    return f"about {round(seconds / 60)} min" if seconds < 3600 else f"about {hours:.1f} h" if hours < 10 else f"about {round(hours)} h"


@pytest.mark.parametrize("page", ["README.md", "docs/live-cutover.md"])
def test_the_cost_table_is_the_plans_estimate(page):
    """The pauses the README and the live-cutover page promise are the ones every plan states for its own cluster."""
    from neptune_guard.remediate.plan import estimated_waits

    text = (ROOT / page).read_text()
    for label, size in (("10 GB", 10 * 10**9), ("1 TB", 10**12), ("10 TB", 10 * 10**12)):
        waits = estimated_waits(size, 1)
        cells = [label, *(_about(waits[kind][path]) for path in ("streams", "freeze") for kind in ("write_pause_seconds", "nameless_seconds"))]
        assert "| " + " | ".join(cells) + " |" in text, (page, cells)
