"""Fixtures for the LLM package: the fake OpenAI server, fast settings pointed at it, a migrated store."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from openbell.config import LlmSettings
from openbell.store import Store
from tests.fakes.fake_openai import API_KEY, FakeOpenAI


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(api_key=API_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def llm_settings(fake) -> Callable[..., LlmSettings]:
    """LlmSettings on the fake with short timeouts and backoffs; keyword arguments change fields."""

    def make(**changes) -> LlmSettings:
        fields = {
            "model": "fake-model",
            "base_url": fake.url,
            "api_key": API_KEY,
            "timeout_s": 0.5,
            "budget_s": 3.0,
            "retry_backoff_s": 0.05,
        }
        return LlmSettings(**(fields | changes))

    return make


@pytest.fixture
def store(tmp_path) -> Store:
    db = Store(tmp_path / "openbell.ducklake")
    db.migrate()
    return db
