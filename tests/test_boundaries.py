"""The house rules of STYLE.md that import-linter cannot say. The layers, the forbidden imports and
the absence of circles are contracts in pyproject.toml (`[tool.importlinter]`, run by `lint-imports`
in `make lint`); here: a single named file of models/ may import cryptography, two may speak SQL
(a contract can forbid a package to a list of modules, not allow it to one file of a growing
package), and each module of models/ and sync/ keeps its public surface in `__all__`."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def test_only_the_vault_imports_cryptography_on_the_client() -> None:
    users = [str(p.relative_to(ROOT)) for p in _files("models") if "cryptography" in _top(_imports(p))]
    assert users == ["models/storage/vault.py"]


def test_only_the_store_and_migrations_speak_sql_on_the_client() -> None:
    users = sorted(str(p.relative_to(ROOT)) for p in _files("models") if _top(_imports(p)) & {"sqlite3", "sqlite_utils"})
    assert users == ["models/storage/migrations.py", "models/storage/store.py"]


MODULES = [m.name for pkg in ("models", "sync") for m in pkgutil.walk_packages(
    [str(ROOT / pkg)], prefix=f"{pkg}.") if not m.ispkg]


@pytest.mark.parametrize("name", MODULES)
def test_public_surface_is_declared(name: str) -> None:
    """Every module of models/ and sync/ declares `__all__`, and each name in it exists."""
    mod = importlib.import_module(name)
    if name.endswith(("__main__",)):
        return
    exported = getattr(mod, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    missing = [n for n in exported if not hasattr(mod, n)]
    assert not missing, f"{name}.__all__ names missing attributes: {missing}"
