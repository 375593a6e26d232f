"""The paper venue: `PaperBroker` simulates executions on replayed minute bars, with books kept in DuckDB."""

from openbell.venues.paper.broker import PaperBroker

__all__ = ["PaperBroker"]
