"""Helpers for the Alpaca adapter tests: the trade date, New York moments, keys and settings for the fake."""

from __future__ import annotations

from datetime import date, datetime, time

from pydantic import SecretStr

from openbell import calendar
from openbell.config import LIVE_CONFIRMATION, AlpacaSettings, BrokerSettings, Settings

DAY = date(2025, 3, 7)  # a Friday session; the previous session is Thursday 2025-03-06
API_KEY = "PKTEST7QX2ZKEYID"
SECRET_KEY = "sEcReT-9f8e7d6c5b4a-ALPACA"
FAST = {"timeout_s": 0.5, "retry_wait_s": 0.05, "cancel_wait_s": 0.5}  # keeps the timeout scenarios short


def at(hhmm: str, day: date = DAY) -> datetime:
    """A moment of `day`, New York time."""
    hour, minute = map(int, hhmm.split(":"))
    return datetime.combine(day, time(hour, minute), tzinfo=calendar.NEW_YORK)


def alpaca_settings(url: str | None, *, live: bool = False, confirmed: bool = False, **keys) -> Settings:
    """Settings for the Alpaca broker on `url`; paper unless `live` (confirmed or not)."""
    fields = {"api_key": SecretStr(API_KEY), "secret_key": SecretStr(SECRET_KEY), "url_override": url} | keys
    return Settings(
        trading_mode="live" if live else "paper",
        live_confirmation=LIVE_CONFIRMATION if confirmed else None,
        broker=BrokerSettings(kind="alpaca", alpaca=AlpacaSettings(**fields)),
    )
