"""The package's shape: layers import downwards only, no import cycles, every module imports on its own, and
modules and functions stay small enough to read (exceptions carry their reason here)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "restorevar"
# what each subpackage may import besides itself; cli → serving → evaluation, training → inference, data →
# models, images. A model family imports nothing but models/.
ALLOWED = {
    "cli": {"serving", "evaluation", "training", "inference", "data", "models", "images"},
    "serving": {"evaluation", "inference", "data", "models", "images"},
    "evaluation": {"inference", "data", "models", "images"},
    "training": {"inference", "data", "models", "images"},
    "inference": {"models", "images"},
    "data": {"images"},
    "models": set(),
    "images": set(),
}
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60
LONG_FUNCTIONS: dict[str, str] = {
    # name: why it is long
    "data/photos.py:build_photo_set": "one linear recipe (download, extract, filter, write) that reads top to bottom",
    "data/rcc.py:build_rcc": "a test-fixture writer of the Qt resource format, field by field as the spec lists them",
}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(path: Path) -> set[str]:
    """Every restorevar module a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "restorevar":
            assert node.level == 0, f"{path}: relative import; the package uses absolute imports only"
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from pkg import module`
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "restorevar")
    return found


def subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else None


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {m for m in imports_of(path) if m in known and m != name} for name, path in known.items()}


def test_layers_import_downwards_only():
    wrong = []
    for module, targets in graph().items():
        here = subpackage(module)
        if here is None:
            continue
        for target in targets:
            there = subpackage(target)
            if there is not None and there != here and there not in ALLOWED[here]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_the_paper_model_imports_nothing_of_our_add_ons():
    paper = {m: t for m, t in graph().items() if m.startswith("restorevar.models.restorevar")}
    leaks = [
        f"{m} -> {t}"
        for m, targets in paper.items()
        for t in targets
        if not t.startswith(
            (
                "restorevar.models.restorevar",
                "restorevar.models.config",
                "restorevar.models.layers",
                "restorevar.models.interface",
                "restorevar.models.checkpoint",
            )
        )
    ]
    assert not leaks, leaks


def test_no_import_cycles():
    edges = {m: {t for t in targets if not PACKAGE_INIT(t)} for m, targets in graph().items()}
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state[nxt] == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt) :] + [nxt]))
            if state[nxt] == 0:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if state[node] == 0:
            visit(node)


def PACKAGE_INIT(module: str) -> bool:  # noqa: N802 - a predicate used as a filter
    """Package __init__ modules only hold docstrings (and the lazy public API): not real dependencies."""
    return modules()[module].name == "__init__.py"


def test_every_module_imports_on_its_own():
    """Each module in a fresh interpreter, so that no import works only because another ran first."""
    names = [m for m in modules() if not m.endswith("__main__")]
    code = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    for loaded in [m for m in sys.modules if m.startswith('restorevar')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_small(path):
    text = path.read_text()
    assert text.count("\n") <= MAX_MODULE_LINES, f"{path.name}: {text.count(chr(10))} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            key = f"{path.relative_to(PACKAGE)}:{node.name}"
            assert length <= MAX_FUNCTION_LINES or key in LONG_FUNCTIONS, f"{key}: {length} lines"
