"""The replay venue: `ParquetReplaySource` serves recorded daily and minute bars from Parquet files."""

from openbell.venues.replay.source import ParquetReplaySource

__all__ = ["ParquetReplaySource"]
