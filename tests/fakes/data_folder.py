"""A data folder holding the default synthetic market, as a first replay or demo makes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from openbell.venues.synthetic import generate_synthetic_market


def synthetic_data_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new data folder whose synthetic/ holds the default synthetic market (minute sessions 2025-03-03 .. 2025-03-07)."""
    folder = tmp_path_factory.mktemp("data")
    generate_synthetic_market(folder / "synthetic")
    return folder
