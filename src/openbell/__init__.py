"""openbell: a day-trading system run as scheduled Prefect jobs."""

__version__ = "0.1.0"
