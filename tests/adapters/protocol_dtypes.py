"""The MarketData protocol's frame dtypes, spelled out for the adapters' tests apart from openbell's own column_dtype."""

from __future__ import annotations

MINUTE_DTYPES = {
    "symbol": "str",
    "ts": "datetime64[us, America/New_York]",
    "open": "float64",
    "high": "float64",
    "low": "float64",
    "close": "float64",
    "volume": "int64",
}
DAILY_DTYPES = {("date" if k == "ts" else k): ("object" if k == "ts" else v) for k, v in MINUTE_DTYPES.items()}
