"""The layout's rules: imports run openbell.flows -> openbell.tasks -> the rest of openbell, and the core is pure."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "openbell"
SIDE_EFFECT_MODULES = {
    "prefect", "duckdb", "httpx", "openai", "alpaca", "ib_async", "requests", "exchange_calendars",
    "pyarrow", "os", "time", "socket", "subprocess", "openbell.store", "openbell.venues",
    "openbell.wiring", "openbell.calendar", "openbell.clock", "openbell.config",
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


def _layer(names: set[str]) -> set[str]:
    """The Prefect layers among imported modules: "flows" for openbell.flows..., "tasks" for openbell.tasks..."""
    return {n.split(".")[1] for n in names if n.startswith(("openbell.flows", "openbell.tasks"))}


def test_the_package_never_imports_flows_or_tasks():
    below = [p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in ("flows", "tasks")]
    offenders = {str(p.relative_to(ROOT)): sorted(_layer(_imports(p))) for p in below}
    assert {p: m for p, m in offenders.items() if m} == {}


def test_tasks_never_import_flows():
    offenders = {str(p.relative_to(ROOT)) for p in (PACKAGE / "tasks").rglob("*.py") if "flows" in _layer(_imports(p))}
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
        for p in PACKAGE.rglob("*.py")
        if p.read_text().strip() and ast.get_docstring(ast.parse(p.read_text())) is None
    ]
    assert missing == []
