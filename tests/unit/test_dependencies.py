"""The declared dependencies tell the truth: every runtime dependency in pyproject.toml is
imported by the package, and every third-party module the package imports is declared
(directly, not by luck through another package's requirements)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions, requires
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "wildix_ast"


def _name(requirement: str) -> str:
    """`argon2-cffi>=23.1,<26` -> `argon2-cffi` (normalised as PEP 503 does)."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _declared(extra: str | None = None) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["optional-dependencies"][extra] if extra else project["dependencies"]
    return {_name(r) for r in listed}


def _imported_modules() -> set[str]:
    """Top-level names of every absolute import in the package, lazy ones included."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def _third_party(modules: set[str]) -> dict[str, set[str]]:
    """Module -> the distributions that provide it, for modules outside the standard
    library and the package itself."""
    providers = packages_distributions()
    return {m: {_name(d) for d in providers.get(m, ["?" + m])} for m in modules
            if m not in sys.stdlib_module_names and m != "wildix_ast"}


def test_every_runtime_dependency_is_imported() -> None:
    imported = set().union(*_third_party(_imported_modules()).values())
    unused = _declared() - imported
    assert not unused, f"declared in [project.dependencies] but never imported: {unused}"


def _pinned_by(distributions: set[str]) -> set[str]:
    """Distributions that one of `distributions` requires at one exact version: part of
    its release (pydantic pins pydantic-core), so declaring them again could only clash."""
    return {_name(r) for d in distributions for r in requires(d) or []
            if "==" in r and "extra ==" not in r}


def test_every_imported_module_is_declared() -> None:
    # the database drivers are extras: SQLAlchemy imports them by URL, the package never does
    declared = _declared() | _declared("postgresql") | _declared("mariadb")
    declared |= _pinned_by(declared)
    undeclared = {m: d for m, d in _third_party(_imported_modules()).items()
                  if not d & declared}
    assert not undeclared, f"imported by wildix_ast but not declared: {undeclared}"


def test_the_checks_see_a_missing_declaration(tmp_path: Path) -> None:
    """The walker finds lazy imports inside functions (the checks would pass vacuously
    otherwise): `sqlalchemy` is imported only inside functions in some modules."""
    modules = _imported_modules()
    assert {"sqlalchemy", "pydantic", "jinja2", "panoramisk"} <= modules
    assert "pyst2" not in _declared()  # a dev-only package: the main set must not have it
