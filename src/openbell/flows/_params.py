"""Typed flow parameters with descriptions, so the Prefect UI's run form explains itself."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import Field

from openbell.config import RunOptions

TradeDate = Annotated[
    date | None,
    Field(description="The session to trade (New York). Empty: the last session of the replay data, or today when live."),
]
Mode = Annotated[
    Literal["replay", "live"],
    Field(description="replay: a recorded or synthetic day on a simulated clock; live: today on the wall clock."),
]
Symbols = Annotated[
    list[str] | None,
    Field(description="Trade exactly these symbols instead of the scan's ranking (for tests and comparisons)."),
]
Options = Annotated[
    RunOptions | None,
    Field(description="Per-run settings: data files, database, exit levels, allocation. Empty: the defaults."),
]
DryRun = Annotated[bool, Field(description="Decide and log every order, but send none to the broker.")]
