"""DuckDB storage for openbell's records and the paper broker's books."""

from openbell.store.db import Store
from openbell.store.migrations import DAY_TABLES

__all__ = ["DAY_TABLES", "Store"]
