"""fetch_headlines against a fake FMP / Polygon news API on loopback: parsing, the time window, the key, and failures."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from openbell.config import NewsSettings
from openbell.llm.news import fetch_headlines
from openbell.llm.prompt import Headline
from tests.fakes.fake_news import FakeNews

NEW_YORK = ZoneInfo("America/New_York")
KEY = "nk-SECRET-4242-do-not-log"
UNTIL = datetime(2024, 1, 5, 9, 0, tzinfo=NEW_YORK)  # the scan: 09:00 New York = 14:00 UTC


@pytest.fixture
def fake() -> Iterator[FakeNews]:
    server = FakeNews(api_key=KEY).start()
    yield server
    server.stop()


def news_settings(fake: FakeNews, provider: str | None, **overrides) -> NewsSettings:
    fields = {"provider": provider, "api_key": KEY, "url_override": fake.url, "per_symbol": 2, "lookback_hours": 24}
    return NewsSettings(**(fields | {"timeout_s": 0.5} | overrides))


def fmp_row(symbol: str, published: str, title: str, **extra) -> dict:
    """A row as FMP sends it: publishedDate is New York wall time without an offset."""
    row = {"symbol": symbol, "publishedDate": published, "title": title, "image": "https://img.example/x.jpg"}
    return row | {"site": "reuters.com", "text": "Body.", "url": f"https://news.example/{title.replace(' ', '-')}"} | extra


def polygon_row(tickers: list[str], published_utc: str, title: str, **extra) -> dict:
    row = {"id": title, "publisher": {"name": "Benzinga", "homepage_url": "https://www.benzinga.com/"}, "title": title}
    row |= {"author": "Staff", "published_utc": published_utc, "article_url": f"https://news.example/{title}"}
    return row | {"tickers": tickers, "keywords": ["earnings"], "insights": []} | extra


def titles(found: dict[str, list[Headline]]) -> dict[str, list[str]]:
    return {symbol: [h.title for h in headlines] for symbol, headlines in found.items()}


# --- FMP ------------------------------------------------------------------------------------------------------------
def test_fmp_headline_is_read_as_new_york_time_with_its_publisher_and_url(fake):
    fake.fmp_articles = [fmp_row("AAPL", "2024-01-05 08:30:00", "Apple beats", publisher="Reuters")]

    found, reason = fetch_headlines(news_settings(fake, "fmp"), ["AAPL"], UNTIL)

    assert reason is None
    assert found == {
        "AAPL": [
            Headline(
                symbol="AAPL",
                published_at=datetime(2024, 1, 5, 13, 30, tzinfo=UTC),
                title="Apple beats",
                source="Reuters",
                url="https://news.example/Apple-beats",
            )
        ]
    }


def test_fmp_source_falls_back_to_the_site_without_a_publisher(fake):
    fake.fmp_articles = [fmp_row("AAPL", "2024-01-05 08:30:00", "Apple beats")]

    found, _ = fetch_headlines(news_settings(fake, "fmp"), ["AAPL"], UNTIL)

    assert found["AAPL"][0].source == "reuters.com"


def test_fmp_keeps_only_headlines_published_in_the_lookback_window_before_the_scan(fake):
    fake.fmp_articles = [
        fmp_row("AAPL", "2024-01-05 09:00:01", "after the scan"),
        fmp_row("AAPL", "2024-01-05 09:00:00", "at the scan"),
        fmp_row("AAPL", "2024-01-04 09:00:00", "exactly 24 h before"),
        fmp_row("AAPL", "2024-01-04 08:59:59", "too old"),
    ]

    found, _ = fetch_headlines(news_settings(fake, "fmp", per_symbol=5), ["AAPL"], UNTIL)

    assert titles(found) == {"AAPL": ["at the scan", "exactly 24 h before"]}


def test_fmp_headlines_come_newest_first_and_at_most_per_symbol_for_each_symbol(fake):
    fake.fmp_articles = [
        fmp_row("AAPL", "2024-01-05 06:00:00", "aapl 06"),
        fmp_row("MSFT", "2024-01-04 20:00:00", "msft 20"),
        fmp_row("AAPL", "2024-01-05 08:00:00", "aapl 08"),
        fmp_row("AAPL", "2024-01-05 07:00:00", "aapl 07"),
        fmp_row("MSFT", "2024-01-05 07:30:00", "msft 0730"),
    ]

    found, _ = fetch_headlines(news_settings(fake, "fmp", per_symbol=2), ["AAPL", "MSFT"], UNTIL)

    assert titles(found) == {"AAPL": ["aapl 08", "aapl 07"], "MSFT": ["msft 0730", "msft 20"]}


def test_fmp_leaves_out_symbols_that_were_not_requested_and_symbols_without_news(fake):
    fake.fmp_articles = [
        fmp_row("AAPL", "2024-01-05 08:00:00", "apple"),
        fmp_row("TSLA", "2024-01-05 08:00:00", "tesla, not asked for"),
    ]

    found, reason = fetch_headlines(news_settings(fake, "fmp"), ["aapl", "NVDA"], UNTIL)

    assert (titles(found), reason) == ({"AAPL": ["apple"]}, None)


def test_fmp_repeated_article_is_kept_once(fake):
    fake.fmp_articles = [fmp_row("AAPL", "2024-01-05 08:00:00", "apple")] * 2

    found, _ = fetch_headlines(news_settings(fake, "fmp"), ["AAPL"], UNTIL)

    assert titles(found) == {"AAPL": ["apple"]}


def test_fmp_asks_once_for_all_symbols_over_the_window_dates(fake):
    fetch_headlines(news_settings(fake, "fmp"), ["AAPL", "MSFT"], UNTIL)

    (request,) = fake.requests
    assert request.path == "/stable/news/stock"
    assert {k: request.query[k] for k in ("symbols", "from", "to")} == {
        "symbols": "AAPL,MSFT",
        "from": "2024-01-04",
        "to": "2024-01-05",
    }
    assert int(request.query["limit"]) >= 2 * 2


def test_fmp_key_travels_in_the_apikey_header_and_never_in_the_url(fake):
    fetch_headlines(news_settings(fake, "fmp"), ["AAPL"], UNTIL)

    (request,) = fake.requests
    assert request.headers["apikey"] == KEY
    assert KEY not in request.target
    assert "apikey" not in request.query


def test_fmp_row_that_fails_validation_is_skipped_and_the_rest_kept(fake):
    fake.fmp_articles = [
        fmp_row("AAPL", "yesterday morning", "bad date"),
        {"symbol": "AAPL", "publishedDate": "2024-01-05 08:10:00"},  # no title
        fmp_row("AAPL", "2024-01-05 08:20:00", "   "),
        "not an object",
        fmp_row("AAPL", "2024-01-05 08:00:00", "good"),
    ]

    found, reason = fetch_headlines(news_settings(fake, "fmp", per_symbol=5), ["AAPL"], UNTIL)

    assert (titles(found), reason) == ({"AAPL": ["good"]}, None)


def test_fmp_error_object_instead_of_a_list_is_a_failure(fake):
    fake.fail_next(200, '{"Error Message": "Limit Reach. Please upgrade your plan."}')

    found, reason = fetch_headlines(news_settings(fake, "fmp"), ["AAPL"], UNTIL)

    assert found == {}
    assert "expected a JSON list" in reason and "Limit Reach" in reason


# --- Polygon --------------------------------------------------------------------------------------------------------
def test_polygon_headline_is_parsed_with_its_publisher_and_url(fake):
    fake.polygon_articles = {"AAPL": [polygon_row(["AAPL"], "2024-01-05T13:30:00Z", "Apple beats")]}

    found, reason = fetch_headlines(news_settings(fake, "polygon"), ["AAPL"], UNTIL)

    assert reason is None
    assert found == {
        "AAPL": [
            Headline(
                symbol="AAPL",
                published_at=datetime(2024, 1, 5, 13, 30, tzinfo=UTC),
                title="Apple beats",
                source="Benzinga",
                url="https://news.example/Apple beats",
            )
        ]
    }


def test_polygon_asks_once_per_symbol_for_the_window_in_utc_newest_first(fake):
    fetch_headlines(news_settings(fake, "polygon", per_symbol=3), ["AAPL", "MSFT"], UNTIL)

    assert [r.query["ticker"] for r in fake.requests] == ["AAPL", "MSFT"]
    query = fake.requests[0].query
    assert fake.requests[0].path == "/v2/reference/news"
    assert {k: query[k] for k in ("published_utc.gte", "published_utc.lte", "order", "sort")} == {
        "published_utc.gte": "2024-01-04T14:00:00Z",
        "published_utc.lte": "2024-01-05T14:00:00Z",
        "order": "desc",
        "sort": "published_utc",
    }
    assert int(query["limit"]) >= 3


def test_polygon_key_travels_as_a_bearer_token_and_never_in_the_url(fake):
    fetch_headlines(news_settings(fake, "polygon"), ["AAPL"], UNTIL)

    (request,) = fake.requests
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in request.target
    assert "apiKey" not in request.query


def test_polygon_keeps_the_window_newest_first_capped_and_only_articles_about_the_symbol(fake):
    fake.polygon_articles = {
        "AAPL": [
            polygon_row(["AAPL"], "2024-01-05T14:00:01Z", "after the scan"),
            polygon_row(["AAPL", "MSFT"], "2024-01-05T12:00:00Z", "aapl 12"),
            polygon_row(["MSFT"], "2024-01-05T13:00:00Z", "about msft only"),
            polygon_row(["AAPL"], "2024-01-05T13:00:00Z", "aapl 13"),
            polygon_row(["AAPL"], "2024-01-05T11:00:00Z", "aapl 11, over the cap"),
            polygon_row(["AAPL"], "2024-01-04T13:59:59Z", "too old"),
        ],
        "TSLA": [polygon_row(["TSLA"], "2024-01-05T12:00:00Z", "tesla, not asked for")],
    }

    found, reason = fetch_headlines(news_settings(fake, "polygon", per_symbol=2), ["AAPL"], UNTIL)

    assert (titles(found), reason) == ({"AAPL": ["aapl 13", "aapl 12"]}, None)


def test_polygon_row_that_fails_validation_is_skipped_and_the_rest_kept(fake):
    fake.polygon_articles = {
        "AAPL": [
            polygon_row(["AAPL"], "2024-01-05T13:00:00", "no time zone"),
            polygon_row(["AAPL"], "2024-01-05T12:30:00Z", "", id="empty title"),
            polygon_row(["AAPL"], "2024-01-05T12:00:00Z", "good"),
        ]
    }

    found, reason = fetch_headlines(news_settings(fake, "polygon", per_symbol=5), ["AAPL"], UNTIL)

    assert (titles(found), reason) == ({"AAPL": ["good"]}, None)


def test_polygon_results_that_are_not_a_list_are_a_failure(fake):
    fake.fail_next(200, '{"status": "OK", "results": {"title": "one"}}')

    found, reason = fetch_headlines(news_settings(fake, "polygon"), ["AAPL"], UNTIL)

    assert found == {}
    assert "results" in reason


def test_polygon_timeout_bounds_the_whole_fetch_not_each_symbol(fake):
    fake.answer_late(0.3, times=4)
    started = time.monotonic()

    found, reason = fetch_headlines(news_settings(fake, "polygon", timeout_s=0.5), ["AAPL", "MSFT", "NVDA", "AMD"], UNTIL)

    assert found == {}
    assert "0.5 s" in reason
    assert time.monotonic() - started < 1.0


# --- not configured -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "settings",
    [{"provider": None}, {"provider": "fmp", "api_key": None}, {"provider": "polygon", "api_key": None}],
    ids=["no provider", "fmp without key", "polygon without key"],
)
def test_unconfigured_news_gives_nothing_and_no_reason_without_a_request(fake, settings):
    fake.fmp_articles = [fmp_row("AAPL", "2024-01-05 08:00:00", "apple")]

    result = fetch_headlines(news_settings(fake, **settings), ["AAPL"], UNTIL)

    assert (result, fake.requests) == (({}, None), [])


def test_no_symbols_gives_nothing_without_a_request(fake):
    result = fetch_headlines(news_settings(fake, "fmp"), [], UNTIL)

    assert (result, fake.requests) == (({}, None), [])


def test_scan_time_without_a_time_zone_is_a_reason_not_a_request(fake):
    found, reason = fetch_headlines(news_settings(fake, "fmp"), ["AAPL"], datetime(2024, 1, 5, 9, 0))

    assert (found, fake.requests) == ({}, [])
    assert "time zone" in reason


# --- failures: ({}, reason), never raised, never the key -------------------------------------------------------------
@pytest.mark.parametrize("provider", ["fmp", "polygon"])
def test_server_error_is_a_reason_with_the_status_and_without_the_key(fake, provider):
    fake.fail_next(500, f'{{"error": "internal error while serving key {KEY}"}}')

    found, reason = fetch_headlines(news_settings(fake, provider), ["AAPL"], UNTIL)

    assert found == {}
    assert reason.startswith(f"{provider} news: HTTP 500")
    assert KEY not in reason
    assert "\n" not in reason


@pytest.mark.parametrize("provider", ["fmp", "polygon"])
def test_wrong_key_is_a_401_reason_that_says_what_to_check(fake, provider):
    found, reason = fetch_headlines(news_settings(fake, provider, api_key="wrong-key"), ["AAPL"], UNTIL)

    assert found == {}
    assert "HTTP 401" in reason and "OPENBELL_NEWS__API_KEY" in reason
    assert "wrong-key" not in reason


@pytest.mark.parametrize("provider", ["fmp", "polygon"])
def test_slow_answer_is_a_timeout_reason(fake, provider):
    fake.answer_late(1.0)
    started = time.monotonic()

    found, reason = fetch_headlines(news_settings(fake, provider, timeout_s=0.3), ["AAPL"], UNTIL)

    assert found == {}
    assert "0.3 s" in reason and KEY not in reason
    assert time.monotonic() - started < 0.9


@pytest.mark.parametrize("provider", ["fmp", "polygon"])
def test_garbage_body_is_a_not_json_reason(fake, provider):
    fake.fail_next(200, f"<html><body>Bad gateway for {KEY}</body></html>")

    found, reason = fetch_headlines(news_settings(fake, provider), ["AAPL"], UNTIL)

    assert found == {}
    assert "HTTP 200 but the body is not JSON" in reason
    assert KEY not in reason


def test_unreachable_server_is_a_reason(fake):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    found, reason = fetch_headlines(news_settings(fake, "fmp"), ["AAPL"], UNTIL, transport=httpx.MockTransport(refuse))

    assert found == {}
    assert reason == "fmp news: request failed: ConnectError: [Errno 111] Connection refused"
