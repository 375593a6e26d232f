"""Market data for scans, ranking and simulated fills: the MarketData protocol and its sources."""

from openbell.marketdata.base import MarketData
from openbell.marketdata.replay import ParquetReplaySource
from openbell.marketdata.synthetic import SyntheticMarket, generate_synthetic_market

__all__ = ["MarketData", "ParquetReplaySource", "SyntheticMarket", "generate_synthetic_market"]
