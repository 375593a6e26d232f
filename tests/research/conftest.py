"""Research fixtures: the synthetic market generated once, and a database of each test's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.data_folder import synthetic_data_folder


@pytest.fixture(scope="package")
def market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder holding the default synthetic market (minute sessions 2025-03-03 .. 2025-03-07)."""
    return synthetic_data_folder(tmp_path_factory)


@pytest.fixture
def data(market: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The synthetic market through OPENBELL_DATA__DIR, with a database of this test's own; returns the database."""
    monkeypatch.setenv("OPENBELL_DATA__DIR", str(market))
    monkeypatch.setenv("OPENBELL_DATA__DB_PATH", str(tmp_path / "openbell.ducklake"))
    return tmp_path / "openbell.ducklake"
