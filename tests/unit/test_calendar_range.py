"""The trading calendar outside its range: one ConfigError line naming the range, never an exchange_calendars error."""

from __future__ import annotations

import sys
import types
from datetime import date, time

import pytest

from openbell import calendar
from openbell.cli import main
from openbell.errors import ConfigError

LAST_YEAR = date.today().year + 2  # the calendar is built through the end of the year after next
RANGE = f"(2010-01-01 to {LAST_YEAR}-12-31)"
PAST_THE_END = date(LAST_YEAR + 1, 1, 2)
BEFORE_2010 = date(2009, 12, 31)
REQUESTED = pytest.param(
    date(2031, 1, 2),
    marks=pytest.mark.skipif(LAST_YEAR >= 2031, reason="the calendar reaches 2031 from 2029 on; PAST_THE_END covers it"),
)

DAY_FUNCTIONS = [
    calendar.is_session,
    calendar.require_session,
    calendar.holiday_name,
    calendar.closed_reason,
    calendar.session_open,
    calendar.session_close,
    calendar.is_half_day,
    calendar.previous_session,
    calendar.next_session,
    calendar.liquidation_time,
]


@pytest.mark.parametrize("day", [REQUESTED, PAST_THE_END, BEFORE_2010])
@pytest.mark.parametrize("function", DAY_FUNCTIONS, ids=lambda f: f.__name__)
def test_a_day_outside_the_calendar_is_one_config_error_line(function, day):
    with pytest.raises(ConfigError) as refused:
        function(day)

    assert str(refused.value) == f"{day} is outside the exchange calendar {RANGE}: choose a date in that range"


@pytest.mark.parametrize(("start", "end"), [(date(2025, 1, 2), PAST_THE_END), (BEFORE_2010, date(2010, 1, 8))])
def test_a_range_reaching_outside_the_calendar_is_a_config_error(start, end):
    with pytest.raises(ConfigError, match=r"is outside the exchange calendar"):
        calendar.sessions_between(start, end)


def test_a_day_inside_the_calendar_still_answers():
    day = date(2025, 3, 4)

    assert calendar.is_session(day)
    calendar.require_session(day)
    assert calendar.session_open(day).time() == time(9, 30)
    assert calendar.previous_session(day) == date(2025, 3, 3)
    assert calendar.closed_reason(date(2025, 12, 25)) == "Christmas"


def test_the_first_and_last_days_of_the_range_have_neighbouring_sessions():
    assert calendar.closed_reason(date(2010, 1, 1)) == "New Year's Day"
    assert calendar.previous_session(date(2010, 1, 4)) == date(2009, 12, 31)
    assert calendar.next_session(date(LAST_YEAR, 12, 31)) > date(LAST_YEAR, 12, 31)
    assert calendar.sessions_between(date(2010, 1, 1), date(2010, 1, 8))[0] == date(2010, 1, 4)


def test_replay_of_a_date_past_the_calendar_ends_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("OPENBELL_DATA__DIR", str(tmp_path))
    started = []  # the trading-day flow, loaded by name, must not start
    monkeypatch.setitem(
        sys.modules, "openbell.flows.trading_day", types.SimpleNamespace(trading_day=lambda **p: started.append(p))
    )

    code = main(["replay", "--date", str(PAST_THE_END)])

    err = capsys.readouterr().err
    assert (code, started) == (2, [])
    assert err == f"openbell: {PAST_THE_END} is outside the exchange calendar {RANGE}: choose a date in that range\n"
