"""Tables and reports shown in the Prefect UI as artifacts, next to the run that made them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact


def publish_table(key: str, rows: list[dict[str, Any]], description: str) -> None:
    """A table artifact; Decimals become numbers and floats are rounded for reading."""
    create_table_artifact(key=key, table=[{k: _cell(v) for k, v in row.items()} for row in rows], description=description)


def publish_markdown(key: str, markdown: str, description: str) -> None:
    create_markdown_artifact(key=key, markdown=markdown, description=description)


def _cell(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, float):
        return round(value, 4)
    if value is None or isinstance(value, (int, str, bool)):
        return value
    return str(value)
