"""The layers, bottom to top: core `genprint` -> `pipelines` -> `serving` -> the CLI (`genprint.cli`). Nothing imports
upward, neither when a module loads nor inside a function; the CLI may import any layer, but only when a verb runs."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ABOVE = {  # a layer, and the packages its code must never import
    "genprint": {"ray", "mlflow", "fastapi", "pipelines", "serving"},
    "pipelines": {"fastapi", "serving"},
    "serving": set(),
}


def imports(path: Path) -> set[str]:
    """Top-level package of every import statement in a file, wherever it sits."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", list(ABOVE))
def test_no_module_imports_a_layer_above_its_own(layer):
    files = [p for p in (REPO / layer).rglob("*.py") if "cli" not in p.relative_to(REPO / layer).parts[:1]]
    offending = {
        str(p.relative_to(REPO)): sorted(imports(p) & ABOVE[layer]) for p in files if imports(p) & ABOVE[layer]
    }
    assert files and not offending, offending


def modules_loaded_by(package: str, skip: tuple[str, ...]) -> set[str]:
    code = f"""
import importlib, pkgutil, sys
root = importlib.import_module({package!r})
for m in pkgutil.walk_packages(root.__path__, {package!r} + "."):
    if not m.name.startswith({skip!r}):
        importlib.import_module(m.name)
print(" ".join(sorted({{name.split(".")[0] for name in sys.modules}})))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    return set(out.stdout.split())


def test_loading_the_core_or_the_cli_pulls_in_no_upper_layer():
    """The import-time view: every core module, and every CLI module (so `genprint --help` stays fast)."""
    skip = ("genprint.registry.migrations", "genprint.__main__")  # run by alembic and by `python -m`, not imported
    assert modules_loaded_by("genprint", skip + ("genprint.cli",)).isdisjoint(ABOVE["genprint"])
    assert modules_loaded_by("genprint.cli", skip).isdisjoint(ABOVE["genprint"])
