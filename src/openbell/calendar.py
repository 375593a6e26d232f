"""The NYSE trading calendar (exchange_calendars XNYS): sessions, opens, early closes, holidays.

Every function taking a day raises ConfigError for a day outside FIRST_DAY..LAST_DAY.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache

import exchange_calendars as xcals
import pandas as pd

from openbell.core.exits import EARLY_CLOSE_OFFSET_MIN, ExitPolicy
from openbell.core.types import NEW_YORK
from openbell.errors import ConfigError

_FIRST_YEAR = 2010  # building the calendar from 2010 keeps start-up under half a second
FIRST_DAY = date(_FIRST_YEAR, 1, 1)
LAST_DAY = date(date.today().year + 2, 12, 31)
"""The days this module answers for; any other day is a ConfigError."""
_MARGIN = timedelta(days=31)  # the calendar reaches past both ends, so the first and last days have neighbours


@lru_cache(maxsize=1)
def _xnys() -> xcals.ExchangeCalendar:
    return xcals.get_calendar("XNYS", start=pd.Timestamp(FIRST_DAY - _MARGIN), end=pd.Timestamp(LAST_DAY + _MARGIN))


def _session(day: date) -> pd.Timestamp:
    """`day` for exchange_calendars, which would raise its own DateOutOfBounds outside the calendar's range."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ConfigError(f"{day} is outside the exchange calendar ({FIRST_DAY} to {LAST_DAY}): choose a date in that range")
    return pd.Timestamp(day)


def is_session(day: date) -> bool:
    """True when the NYSE trades on `day`."""
    return bool(_xnys().is_session(_session(day)))


def require_session(day: date) -> None:
    """Raise ConfigError with the reason when `day` is not a trading session."""
    if is_session(day):
        return
    reason = holiday_name(day) or ("a weekend" if day.weekday() >= 5 else "not a trading day")
    nearest = previous_session(day)
    raise ConfigError(f"{day} is not a NYSE session ({reason}); the previous session was {nearest}")


def holiday_name(day: date) -> str | None:
    """The holiday's name when `day` is a weekday the exchange is closed, else None."""
    if day.weekday() >= 5 or is_session(day):
        return None
    cal = _xnys()
    ts = _session(day)
    names = cal.regular_holidays.holidays(ts, ts, return_name=True) if cal.regular_holidays else None
    if names is not None and len(names):
        return str(names.iloc[0])
    return "exchange holiday"


def closed_reason(day: date) -> str | None:
    """Why the exchange is closed on `day` ("Thanksgiving", "weekend"), or None on a session."""
    if is_session(day):
        return None
    return "weekend" if day.weekday() >= 5 else holiday_name(day)


def session_open(day: date) -> datetime:
    return _xnys().session_open(_session(day)).tz_convert(NEW_YORK).to_pydatetime()


def session_close(day: date) -> datetime:
    return _xnys().session_close(_session(day)).tz_convert(NEW_YORK).to_pydatetime()


def is_half_day(day: date) -> bool:
    """True for a session that closes early (e.g. the day after Thanksgiving)."""
    return is_session(day) and session_close(day).time() < time(16, 0)


def previous_session(day: date) -> date:
    """The last session strictly before `day`."""
    return _xnys().date_to_session(_session(day) - timedelta(days=1), direction="previous").date()


def next_session(day: date) -> date:
    """The first session strictly after `day`."""
    return _xnys().date_to_session(_session(day) + timedelta(days=1), direction="next").date()


def sessions_between(start: date, end: date) -> list[date]:
    """Sessions from `start` to `end`, both included."""
    return [ts.date() for ts in _xnys().sessions_in_range(_session(start), _session(end))]


def liquidation_time(
    day: date,
    regular: time = ExitPolicy().liquidation,
    before_early_close: timedelta = timedelta(minutes=EARLY_CLOSE_OFFSET_MIN),
) -> datetime:
    """When the system flattens on `day`: `regular` (New York time), or earlier on a half day.

    On a half day the liquidation moves to `before_early_close` ahead of the early close.
    """
    close = session_close(day)
    planned = datetime.combine(day, regular, tzinfo=NEW_YORK)
    return min(planned, close - before_early_close)
