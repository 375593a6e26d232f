"""The chat client end to end: the real openai client over a loopback socket to the fake OpenAI server."""

from __future__ import annotations

import time

import pytest

from openbell.llm.client import ChatClient, ChatFailed
from openbell.llm.prompt import REPLY_SCHEMA
from tests.fakes.fake_openai import API_KEY, FakeOpenAI, dribble, slow, status, text

MESSAGES = [
    {"role": "system", "content": "Rank the candidates."},
    {"role": "user", "content": '{"candidates": [{"symbol": "AAA"}, {"symbol": "BBB"}], "top_n": 1}'},
]


def deadline_in(seconds: float) -> float:
    return time.monotonic() + seconds


def test_asks_for_the_json_schema_by_default_and_returns_the_reply(fake, llm_settings):
    client = ChatClient(llm_settings())

    reply, attempts = client.complete(MESSAGES, deadline_in(3))

    sent = fake.requests[0]
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "ranking", "strict": True, "schema": REPLY_SCHEMA},
    }
    assert sent["model"] == "fake-model" and sent["messages"] == MESSAGES
    assert sent["temperature"] == 0.0 and sent["max_tokens"] == 2000
    assert '"symbol": "BBB"' in reply
    (attempt,) = attempts
    assert attempt.error is None and attempt.text == reply and attempt.response_format == "json_schema"
    assert (attempt.prompt_tokens, attempt.completion_tokens) == (1200, 150)
    assert attempt.latency_ms > 0 and attempt.requested_at.utcoffset().total_seconds() == 0


def test_a_server_without_structured_output_gets_json_mode_and_the_downgrade_is_remembered(llm_settings):
    lacking = FakeOpenAI(json_schema=False).start()
    try:
        client = ChatClient(llm_settings(base_url=lacking.url))

        _, first = client.complete(MESSAGES, deadline_in(3))
        _, second = client.complete(MESSAGES, deadline_in(3))
    finally:
        lacking.stop()

    assert [a.response_format for a in first] == ["json_schema", "json_object"]
    assert first[0].error.startswith("400 response_format json_schema not supported")
    assert [a.response_format for a in second] == ["json_object"]
    assert [r.get("response_format") for r in lacking.requests] == [
        {"type": "json_schema", "json_schema": {"name": "ranking", "strict": True, "schema": REPLY_SCHEMA}},
        {"type": "json_object"},
        {"type": "json_object"},
    ]


def test_a_server_without_any_json_mode_is_asked_without_a_response_format(llm_settings):
    bare = FakeOpenAI(json_schema=False, json_object=False).start()
    try:
        client = ChatClient(llm_settings(base_url=bare.url))

        _, attempts = client.complete(MESSAGES, deadline_in(3))
    finally:
        bare.stop()

    assert [a.response_format for a in attempts] == ["json_schema", "json_object", "none"]
    assert "response_format" not in bare.requests[-1]


def test_a_fixed_json_schema_setting_does_not_downgrade(llm_settings):
    lacking = FakeOpenAI(json_schema=False).start()
    try:
        client = ChatClient(llm_settings(base_url=lacking.url, structured_output="json_schema"))

        with pytest.raises(ChatFailed, match="400 response_format json_schema not supported") as failed:
            client.complete(MESSAGES, deadline_in(3))
    finally:
        lacking.stop()

    assert len(failed.value.attempts) == 1


def test_a_429_is_retried_after_the_retry_after_header(fake, llm_settings):
    fake.script(status(429, "Rate limit reached", {"Retry-After": "0.4"}))
    client = ChatClient(llm_settings())
    started = time.monotonic()

    reply, attempts = client.complete(MESSAGES, deadline_in(3))

    assert time.monotonic() - started >= 0.4  # waited as told, not just the 0.05 s backoff
    assert [a.error for a in attempts] == ["429 rate limited: Rate limit reached", None]
    assert reply and fake.request_count == 2


def test_a_retry_after_longer_than_the_time_left_fails_at_once(fake, llm_settings):
    fake.script(status(429, "Rate limit reached", {"Retry-After": "30"}))
    client = ChatClient(llm_settings())
    started = time.monotonic()

    with pytest.raises(ChatFailed, match=r"429 rate limited: Rate limit reached \(1 attempt in"):
        client.complete(MESSAGES, deadline_in(3))

    assert time.monotonic() - started < 1.0
    assert fake.request_count == 1


def test_503_twice_then_success_is_retried_with_growing_backoff(fake, llm_settings):
    fake.script(status(503, "overloaded"), status(503, "overloaded"))
    sleeps: list[float] = []
    client = ChatClient(llm_settings(retry_backoff_s=0.05), sleep=lambda s: (sleeps.append(s), time.sleep(s)))

    reply, attempts = client.complete(MESSAGES, deadline_in(3))

    assert [a.error for a in attempts] == ["503 server error: overloaded", "503 server error: overloaded", None]
    assert sleeps == [0.05, 0.1]
    assert '"picks"' in reply


def test_a_500_is_retried(fake, llm_settings):
    fake.script(status(500, "internal error"))
    client = ChatClient(llm_settings())

    _, attempts = client.complete(MESSAGES, deadline_in(3))

    assert [a.error for a in attempts] == ["500 server error: internal error", None]


def test_slow_replies_are_cut_off_and_retried_until_the_deadline(fake, llm_settings):
    fake.script(*[slow(5)] * 10)
    client = ChatClient(llm_settings(timeout_s=0.5, retry_backoff_s=0.05))
    started = time.monotonic()

    with pytest.raises(ChatFailed, match=r"timeout after 0.5 s \(\d attempts in \d\.\d s\)") as failed:
        client.complete(MESSAGES, started + 2.0)

    assert time.monotonic() < started + 2.0 + 0.25
    attempts = failed.value.attempts
    assert len(attempts) >= 3
    assert all(a.error == "timeout after 0.5 s" and a.text is None for a in attempts)
    assert all(400 <= a.latency_ms < 900 for a in attempts)


def test_a_request_never_waits_past_the_deadline(fake, llm_settings):
    fake.script(slow(5))
    client = ChatClient(llm_settings(timeout_s=30))
    started = time.monotonic()

    with pytest.raises(ChatFailed, match=r"timeout after 0.6 s"):
        client.complete(MESSAGES, started + 0.6)

    assert time.monotonic() - started < 0.6 + 0.25


def test_a_reply_that_trickles_in_is_cut_off_at_the_deadline(fake, llm_settings):
    fake.script(dribble(5), dribble(5), dribble(5))  # each read gets a byte in time: only a hard limit stops it
    client = ChatClient(llm_settings(timeout_s=0.5))
    started = time.monotonic()

    with pytest.raises(ChatFailed, match=r"timeout after 0.5 s"):
        client.complete(MESSAGES, started + 1.2)

    assert time.monotonic() - started < 1.2 + 0.3


def test_a_wrong_key_fails_at_once_without_retrying(fake, llm_settings):
    client = ChatClient(llm_settings(api_key="sk-wrong-key-0000"))
    started = time.monotonic()

    with pytest.raises(ChatFailed, match=r"^401 unauthorized: .*check OPENBELL_LLM__API_KEY") as failed:
        client.complete(MESSAGES, deadline_in(3))

    assert time.monotonic() - started < 1.0
    assert len(failed.value.attempts) == 1 and fake.requests == []


def test_the_api_key_never_appears_in_errors_even_when_the_server_echoes_it(llm_settings):
    echoing = FakeOpenAI(api_key="a-different-key").start()  # answers 401 quoting the key it was sent
    try:
        client = ChatClient(llm_settings(base_url=echoing.url))

        with pytest.raises(ChatFailed) as failed:
            client.complete(MESSAGES, deadline_in(3))
    finally:
        echoing.stop()

    assert "Incorrect API key provided: ***" in str(failed.value)
    assert API_KEY not in str(failed.value)
    assert all(API_KEY not in (a.error or "") for a in failed.value.attempts)
    assert API_KEY not in repr(client.__dict__.get("base_url"))


def test_other_client_errors_fail_at_once_with_the_servers_message(fake, llm_settings):
    fake.script(status(404, "The model `nope` does not exist"))
    client = ChatClient(llm_settings())

    with pytest.raises(ChatFailed, match=r"404 not found: The model `nope` does not exist"):
        client.complete(MESSAGES, deadline_in(3))

    assert fake.request_count == 1


def test_a_reply_is_returned_as_sent_even_when_it_is_not_json(fake, llm_settings):
    fake.script(text("Sure! Here are my picks: AAA"))
    client = ChatClient(llm_settings())

    reply, _ = client.complete(MESSAGES, deadline_in(3))

    assert reply == "Sure! Here are my picks: AAA"


def test_the_recorded_base_url_drops_credentials_in_the_url(llm_settings, fake):
    client = ChatClient(llm_settings(base_url=f"http://user:pw@127.0.0.1:{fake.port}/v1/?key=abc"))

    assert client.base_url == f"http://127.0.0.1:{fake.port}/v1"
