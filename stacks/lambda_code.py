"""Each Lambda function ships only what its handler imports: the import closure of the handler module within
`lambdas/`, computed from the source at synth time (no bundling step, nothing installed)."""

from __future__ import annotations

import ast
from pathlib import Path

LAMBDAS = Path(__file__).resolve().parent.parent / "lambdas"
PACKAGES = ("neptune_guard",)  # the handlers are neptune_guard.handlers


def _module_file(name: str) -> Path | None:
    path = LAMBDAS.joinpath(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return path / "__init__.py" if (path / "__init__.py").is_file() else None


def imported_names(path: Path, module: str) -> set[str]:
    """Every name the file imports, at any depth (a lazy import is a dependency too), relative imports resolved; for
    `from pkg import x`, both `pkg` and `pkg.x` (x may be a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def _imports(path: Path, module: str) -> set[str]:
    return {name for name in imported_names(path, module) if name.split(".")[0] in PACKAGES and _module_file(name)}


def closure(handler_module: str) -> set[Path]:
    """The files the handler module needs, its packages' __init__ files included."""
    seen: set[str] = set()
    pending = [handler_module]
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        pending += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages
        pending += sorted(_imports(_module_file(module), module))
    return {_module_file(m) for m in seen}


def excluded(handler_module: str) -> list[str]:
    """Asset exclude patterns (relative to lambdas/) for everything the handler does not import."""
    needed = closure(handler_module)
    return sorted(str(p.relative_to(LAMBDAS)) for package in PACKAGES for p in (LAMBDAS / package).rglob("*.py") if p not in needed) + [
        "**/__pycache__", "**/*.pyc", "*.egg-info"]
