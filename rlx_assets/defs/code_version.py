"""Code versions that change when an asset's code changes, so Dagster can tell stale partitions.

An asset's version is a short hash of the source of the module that defines it and of every
module of the engine and the lake reader it imports, directly or through one another (found by
reading their `import` statements, not by importing anything). Shared glue (resources,
telemetry) is left out on purpose: it does not change what an asset holds, and counting it
would mark every partition stale on every change of a log line.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = "rlx_assets"
# Modules under these prefixes decide what an asset holds: they count in its version.
VERSIONED_PREFIXES = (f"{PACKAGE}.engine", f"{PACKAGE}.lake")
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
DIGITS = 12


def _module_file(module: str, package_root: Path) -> Path | None:
    """The source file of `rlx_assets.a.b` under `package_root` (the `rlx_assets` folder)."""
    parts = module.split(".")[1:]
    base = package_root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(source: Path, module: str, package_root: Path) -> set[str]:
    """The `rlx_assets` modules a file imports (absolute and relative imports; `from pkg import
    name` counts `pkg.name` when that is a module, else `pkg`)."""
    tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    is_package = source.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            found.add(base)
            for alias in node.names:
                name = f"{base}.{alias.name}"
                if _module_file(name, package_root) is not None:
                    found.add(name)
    return {name for name in found if name == PACKAGE or name.startswith(f"{PACKAGE}.")}


def versioned_sources(module: str, package_root: Path = PACKAGE_ROOT) -> list[Path]:
    """The asset module's file and the engine/lake files it reaches through imports, sorted."""
    start = _module_file(module, package_root)
    if start is None:
        raise ValueError(f"no source file for module {module!r} under {package_root}")
    seen: dict[str, Path] = {module: start}
    pending = [module]
    while pending:
        current = pending.pop()
        for imported in _imported_modules(seen[current], current, package_root):
            if imported in seen or not imported.startswith(VERSIONED_PREFIXES):
                continue
            path = _module_file(imported, package_root)
            if path is not None:
                seen[imported] = path
                pending.append(imported)
    return sorted(set(seen.values()))


@cache
def code_version(module: str, package_root: Path = PACKAGE_ROOT) -> str:
    """A short hash of the sources `versioned_sources` lists (paths relative to the package,
    so the same code gives the same version in any checkout). Computed once per load."""
    digest = hashlib.sha256()
    for path in versioned_sources(module, package_root):
        digest.update(path.relative_to(package_root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:DIGITS]
