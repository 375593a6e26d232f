"""The layout's rules: imports run flows -> tasks -> openbell, and the core is pure."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "openbell"
SIDE_EFFECT_MODULES = {
    "prefect", "duckdb", "httpx", "openai", "alpaca", "ib_async", "requests", "exchange_calendars",
    "pyarrow", "os", "time", "socket", "subprocess", "openbell.store", "openbell.brokers",
    "openbell.marketdata", "openbell.runtime", "openbell.calendar", "openbell.clock", "openbell.config",
}  # fmt: skip


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def test_the_package_never_imports_flows_or_tasks():
    offenders = {str(p.relative_to(ROOT)): sorted(_top(_imports(p)) & {"flows", "tasks"}) for p in PACKAGE.rglob("*.py")}
    assert {p: m for p, m in offenders.items() if m} == {}


def test_tasks_never_import_flows():
    offenders = {str(p.relative_to(ROOT)) for p in (ROOT / "tasks").rglob("*.py") if "flows" in _top(_imports(p))}
    assert offenders == set()


def test_the_core_imports_nothing_with_side_effects():
    offenders = {}
    for path in (PACKAGE / "core").rglob("*.py"):
        bad = {name for name in _imports(path) if any(name == m or name.startswith(m + ".") for m in SIDE_EFFECT_MODULES)}
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}


def test_the_core_never_reads_the_clock():
    calls = []
    for path in (PACKAGE / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in {"now", "today", "utcnow"}:
                calls.append(f"{path.name}:{node.lineno}")
    assert calls == []


def test_every_module_starts_with_a_docstring():
    missing = [
        str(p.relative_to(ROOT))
        for folder in (PACKAGE, ROOT / "tasks", ROOT / "flows")
        for p in folder.rglob("*.py")
        if p.read_text().strip() and ast.get_docstring(ast.parse(p.read_text())) is None
    ]
    assert missing == []
