"""The models a conversation may pick: merged, cached, and a failing service tolerated."""

from __future__ import annotations

import asyncio

import pytest

from realtime import llm, wire
from realtime.model_catalog import FAILURE_RETRY_SECONDS, ModelCatalog, merge


def test_the_default_comes_first_then_the_allow_list_as_the_service_lists_it():
    listed = ["gpt-4o", "gpt-4o-mini", "whisper-1"]
    assert merge(listed, allowed=["o3", "gpt-4o"], default="gpt-4o-mini") == [
        "gpt-4o-mini",
        "gpt-4o",
    ]


def test_without_an_allow_list_everything_listed_is_offered_sorted():
    assert merge(["b", "a"], allowed=[], default="a") == ["a", "b"]


def test_a_service_that_could_not_be_asked_leaves_the_allow_list_or_the_default():
    assert merge(None, allowed=["o3", "gpt-4o"], default="gpt-4o") == ["gpt-4o", "o3"]
    assert merge(None, allowed=[], default="gpt-4o") == ["gpt-4o"]


class FakeService:
    def __init__(self) -> None:
        self.calls = 0
        self.fail = False
        self.models = ["m1"]

    async def __call__(self) -> list[str]:
        self.calls += 1
        await asyncio.sleep(0.01)
        if self.fail:
            raise llm.LLMError(wire.UPSTREAM_ERROR, "down", retryable=True)
        return list(self.models)


@pytest.fixture
def clock():
    now = [1000.0]
    return now


async def test_the_list_is_cached_for_the_configured_time(settings, clock):
    settings.CHAT_MODELS_CACHE_SECONDS = 300
    service = FakeService()
    catalog = ModelCatalog(service, clock=lambda: clock[0])
    assert await catalog.listed() == ["m1"]
    service.models = ["m1", "m2"]
    clock[0] += 299
    assert await catalog.listed() == ["m1"]
    clock[0] += 2
    assert await catalog.listed() == ["m1", "m2"]
    assert service.calls == 2


async def test_concurrent_callers_share_one_request(settings, clock):
    service = FakeService()
    catalog = ModelCatalog(service, clock=lambda: clock[0])
    results = await asyncio.gather(*(catalog.listed() for _ in range(5)))
    assert results == [["m1"]] * 5 and service.calls == 1


async def test_a_failure_is_kept_briefly_then_asked_again(settings, clock):
    settings.CHAT_MODELS_CACHE_SECONDS = 300
    settings.CHAT_MODELS = ["a", "b"]
    settings.OPENAI_MODEL = "b"
    service = FakeService()
    service.fail = True
    catalog = ModelCatalog(service, clock=lambda: clock[0])
    assert await catalog.offered() == ["b", "a"]
    clock[0] += FAILURE_RETRY_SECONDS - 1
    assert await catalog.listed() is None and service.calls == 1
    service.fail = False
    service.models = ["b"]
    clock[0] += 2
    assert await catalog.offered() == ["b"]
    assert service.calls == 2
