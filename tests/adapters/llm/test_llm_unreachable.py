"""An LLM server that is not there: the real openai client against a closed loopback port falls back at once.

Every connection attempt is counted through Python's `socket.connect` audit event, so the tests see
the attempts of the openai SDK and of our own retries alike, without touching either.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date

import pytest

from openbell.config import LlmSettings
from openbell.core.ranking import GapVolumeRanker
from openbell.llm.audit import record_calls
from openbell.llm.client import ChatClient, ChatFailed
from openbell.llm.ranker import LlmRanker
from tests.adapters.llm.test_llm_ranker import scan

DAY = date(2025, 3, 7)
TOP_N = 2
QUANT = GapVolumeRanker()
MESSAGES = [{"role": "user", "content": '{"candidates": [{"symbol": "AAA"}], "top_n": 1}'}]

_watched: dict[int, list[tuple]] = {}  # port -> the connect() calls made to it


def _count_connects(event: str, args: tuple) -> None:
    if event == "socket.connect" and isinstance(args[1], tuple) and (calls := _watched.get(args[1][1])) is not None:
        calls.append(args[1])


sys.addaudithook(_count_connects)  # an audit hook stays for the process: it only counts ports a test watches


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound, then closed), its connection attempts counted in `_watched`."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _watched[port] = []
    yield port
    del _watched[port]


def settings_for(port: int, **changes) -> LlmSettings:
    """The defaults a user gets (a 120 s budget, 1 s first backoff), pointed at `port`."""
    return LlmSettings(**({"model": "llama3.1", "base_url": f"http://127.0.0.1:{port}/v1"} | changes))


def test_a_refused_connection_falls_back_to_the_quant_ranking_after_one_attempt(closed_port, store):
    llm = LlmRanker(settings_for(closed_port), trade_date=DAY, run_id="run-1", fallback=QUANT)

    picks = llm.rank(scan(), TOP_N)

    assert len(_watched[closed_port]) == 1  # neither the SDK nor our retries tried again
    assert [p.symbol for p in picks] == [p.symbol for p in QUANT.rank(scan(), TOP_N)]
    reason = llm.outcome.fallback_reason
    assert reason.startswith(
        f"LLM unavailable: connection refused: no LLM server listens at http://127.0.0.1:{closed_port}/v1"
    )
    assert "(1 attempt in" in reason
    record_calls(store, llm.outcome.calls)
    assert store.query("SELECT attempt, status, error FROM llm_calls") == [
        (
            1,
            "error",
            f"connection refused: no LLM server listens at http://127.0.0.1:{closed_port}/v1 "
            "(start it, or check OPENBELL_LLM__BASE_URL)",
        )
    ]


def test_the_client_does_not_retry_a_refused_connection_however_much_time_is_left(closed_port):
    client = ChatClient(settings_for(closed_port, timeout_s=5.0, retry_backoff_s=0.01))

    with pytest.raises(ChatFailed, match=r"^connection refused: .* \(1 attempt in") as failed:
        client.complete(MESSAGES, time.monotonic() + 60)

    assert len(failed.value.attempts) == 1
    assert len(_watched[closed_port]) == 1


class _HangsUp:
    """A loopback server that accepts each connection and closes it without a word, counting them."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:  # closed: the test is over
                return
            self.accepted += 1
            connection.close()

    def close(self) -> None:
        self.listener.close()


def test_a_dropped_connection_is_still_retried_within_the_deadline():
    server = _HangsUp()
    client = ChatClient(settings_for(server.port, timeout_s=0.5, retry_backoff_s=0.05))
    try:
        with pytest.raises(ChatFailed, match=r"^connection failed: ") as failed:
            client.complete(MESSAGES, time.monotonic() + 1.5)
    finally:
        client.close()
        server.close()

    assert len(failed.value.attempts) >= 2
    assert server.accepted == len(failed.value.attempts)
