"""The tree shows the architecture, and its imports point down: the library imports nothing above it; inside it,
each floor imports only the floors below (detection and remediation side by side, never each other); remediation's
stages import the helpers and proofs beneath them, and only the registry imports the stages; the sandbox's AWS
stand-ins import neither the IAM harness nor the demo. A module in no floor fails: placing it is a decision."""

from pathlib import Path

import pytest

from stacks.lambda_code import imported_names

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "lambdas"
OURS = {"neptune_guard", "handlers", "stacks", "sandbox", "tests"}
# Each top-level layer may import only these of ours (and the standard library and third-party packages).
ALLOWED = {"neptune_guard": {"neptune_guard"}, "stacks": {"neptune_guard", "stacks"}, "sandbox": {"neptune_guard", "sandbox"}}
# The library's floors, by the longest matching module prefix.
FLOORS = {
    "neptune_guard": 0, "neptune_guard.tags": 0, "neptune_guard.models": 0, "neptune_guard.aws": 0, "neptune_guard.console": 0,
    "neptune_guard.detect": 1, "neptune_guard.remediate": 1,
    "neptune_guard.findings": 2,
    "neptune_guard.approve": 3,
    "neptune_guard.scanner": 4, "neptune_guard.options": 5,
    "neptune_guard.cli": 6, "neptune_guard.__main__": 7, "neptune_guard.handlers": 6,
}
SIDE_BY_SIDE = [("neptune_guard.detect", "neptune_guard.remediate"), ("neptune_guard.findings", "neptune_guard.remediate")]
# Inside remediate/: strictly downward.
STAGES = {
    "naming": 0, "resources": 0, "notifications": 0, "replication": 0, "network": 0,
    "replicator_package": 1,
    "guard": 2, "plan": 2, "finding_notes": 2,
    "writes": 3, "endpoints": 3, "live_cutover": 3,
    "rebuild": 4, "ended": 4, "cutover": 4, "decommission": 4, "rollback": 4, "notify": 4, "snapshot": 4,
    "cluster": 5,
}
SANDBOX = {"sandbox.aws": {"sandbox.aws"}, "sandbox.iam": {"sandbox.aws", "sandbox.iam", "sandbox.demo"},
           "sandbox.demo": {"sandbox.aws", "sandbox.demo"}}


def module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def graph(base: Path, top: str) -> dict[str, set[str]]:
    modules = {module_name(p, base): p for p in (base / top).rglob("*.py")}
    return {m: {i for i in imported_names(p, m) if i in modules and i != m} for m, p in modules.items()}


def floor(module: str) -> int:
    prefix = max((p for p in FLOORS if module == p or module.startswith(p + ".")), key=len, default=None)
    assert prefix is not None, f"{module} is on no floor: add it to FLOORS"
    return FLOORS[prefix]


def package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def floor_violations(edges: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in edges.items():
        for target in targets:
            if floor(target) > floor(module):
                found.append(f"{module} (floor {floor(module)}) imports {target} (floor {floor(target)})")
            found += [f"{module} imports {target}: {one} and {other} stand side by side" for one, other in SIDE_BY_SIDE
                      if {package(module), package(target)} == {one, other}]
    return found


def stage_violations(edges: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in edges.items():
        if not module.startswith("neptune_guard.remediate."):
            continue
        stage = module.rsplit(".", 1)[1]
        if stage not in STAGES:
            found.append(f"{module} is on no floor of remediate/: add it to STAGES")
            continue
        found += [f"{module} imports {target}, which is not beneath it" for target in targets
                  if target.startswith("neptune_guard.remediate.") and STAGES.get(target.rsplit(".", 1)[1], 99) >= STAGES[stage]]
    return found


def cycles(edges: dict[str, set[str]]) -> list[str]:
    found, done, path = [], set(), []

    def visit(module):
        if module in path:
            found.append(" -> ".join(path[path.index(module):] + [module]))
            return
        if module in done:
            return
        path.append(module)
        for target in sorted(edges.get(module, ())):
            if not module.startswith(target + "."):  # a module importing its own package's marker is no cycle
                visit(target)
        path.pop()
        done.add(module)

    for module in sorted(edges):
        visit(module)
    return found


@pytest.mark.parametrize("layer, base", [("neptune_guard", LIBRARY), ("stacks", ROOT), ("sandbox", ROOT)])
def test_layers_point_down(layer, base):
    for path in sorted((base / layer).rglob("*.py")):
        mine = {name.split(".")[0] for name in imported_names(path, module_name(path, base))} & OURS
        assert mine <= ALLOWED[layer], f"{path.relative_to(ROOT)} imports {mine - ALLOWED[layer]}"


def test_the_library_floors_point_down():
    assert floor_violations(graph(LIBRARY, "neptune_guard")) == []


def test_remediation_stages_import_only_what_lies_beneath_them():
    assert stage_violations(graph(LIBRARY, "neptune_guard")) == []


def test_the_library_has_no_import_cycle():
    assert cycles(graph(LIBRARY, "neptune_guard")) == []


def test_the_sandbox_stand_ins_import_neither_the_iam_harness_nor_the_demo():
    for module, targets in graph(ROOT, "sandbox").items():
        part = package(module)
        assert module == "sandbox" or part in SANDBOX, f"{module} is in none of {sorted(SANDBOX)}: place it"
        for target in targets:
            target_part = package(target)
            if part in SANDBOX and target_part in SANDBOX:
                assert target_part in SANDBOX[part], f"{module} imports {target}"


def test_each_check_catches_what_it_is_for():
    """Each check above would pass on a graph it cannot read: planted faults must fail them."""
    upward = {"neptune_guard.tags": {"neptune_guard.detect.inventory"}, "neptune_guard.detect.inventory": set()}
    sideways = {"neptune_guard.detect.inventory": {"neptune_guard.remediate.plan"}, "neptune_guard.remediate.plan": set()}
    stage_up = {"neptune_guard.remediate.plan": {"neptune_guard.remediate.cutover"}, "neptune_guard.remediate.cutover": set()}
    unplaced = {"neptune_guard.remediate.somewhere": set()}
    loop = {"neptune_guard.approve.a": {"neptune_guard.approve.b"}, "neptune_guard.approve.b": {"neptune_guard.approve.a"}}
    assert floor_violations(upward) and floor_violations(sideways) and "side by side" in floor_violations(sideways)[0]
    assert stage_violations(stage_up) and "no floor" in stage_violations(unplaced)[0]
    assert cycles(loop) and cycles(graph(LIBRARY, "neptune_guard") | loop)
    with pytest.raises(AssertionError, match="on no floor"):
        floor("neptune_guard_other.module")


def test_the_replicator_ships_alone_and_imports_nothing_of_the_library_beyond_its_zip(tmp_path):
    """The replicator function's code is replicator_package.code_zip(): replication.py and its packages' markers. In the local
    AWS its handler runs in-process, so a missing import would break only in AWS: import it from the unpacked zip
    alone, with botocore and no site hooks (no development install), and see nothing else of ours come in."""
    import subprocess
    import sys
    import sysconfig
    import zipfile
    from io import BytesIO

    from neptune_guard.remediate import replicator_package

    zipfile.ZipFile(BytesIO(replicator_package.code_zip())).extractall(tmp_path)
    assert imported_names(LIBRARY / "neptune_guard" / "__init__.py", "neptune_guard") == set()
    assert imported_names(LIBRARY / "neptune_guard" / "remediate" / "__init__.py", "neptune_guard.remediate") == set()
    probe = ("import sys, neptune_guard.remediate.replication as r; "
             "print(r.__file__); print(sorted(m for m in sys.modules if m.startswith('neptune_guard')))")
    ran = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": f"{tmp_path}:{sysconfig.get_paths()['purelib']}"})
    assert ran.returncode == 0, ran.stderr
    where, loaded = ran.stdout.splitlines()
    assert where.startswith(str(tmp_path))
    assert loaded == str(["neptune_guard", "neptune_guard.remediate", "neptune_guard.remediate.replication"])
