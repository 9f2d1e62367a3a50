"""Tests for fakeai, driven through the real ``openai`` client where possible."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from openai import AsyncOpenAI

from fakeai import Behaviour, Fault, create_app, resolve_behaviour
from fakeai.behaviour import parse_fault, parse_model_suffix
from fakeai.replies import count_prompt_tokens, reply_tokens, tokenize

FAST = Behaviour(ttft_ms=0, tokens_per_second=0, tokens=12)
HI = [{"role": "user", "content": "hi"}]


@pytest_asyncio.fixture
async def http() -> AsyncIterator[TestClient]:
    """fakeai on a free port plus a raw aiohttp client for /_fakeai endpoints."""
    client = TestClient(TestServer(create_app(FAST)))
    await client.start_server()
    yield client
    await client.close()


@pytest_asyncio.fixture
async def ai(http: TestClient) -> AsyncIterator[AsyncOpenAI]:
    client = AsyncOpenAI(api_key="x", base_url=str(http.make_url("/v1")), max_retries=0, timeout=5)
    yield client
    await client.close()


async def stats(http: TestClient) -> dict[str, int]:
    resp = await http.get("/_fakeai/stats")
    return await resp.json()


async def wait_for_stats(http: TestClient, **expected: int) -> dict[str, int]:
    """Poll stats (bounded) until they match; disconnects are seen asynchronously."""
    current: dict[str, int] = {}
    for _ in range(100):
        current = await stats(http)
        if all(current[k] == v for k, v in expected.items()):
            return current
        await asyncio.sleep(0.02)
    raise AssertionError(f"stats never reached {expected}: {current}")


async def collect(stream: Any, into: list[str]) -> None:
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            into.append(chunk.choices[0].delta.content)


# --- replies.py -----------------------------------------------------------------


def test_reply_is_deterministic_lossless_and_padded_to_target() -> None:
    messages = [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second question"},
    ]
    tokens = reply_tokens(messages, 15)
    text = "".join(tokens)
    assert tokens == reply_tokens(messages, 15)
    assert len(tokens) == 15
    assert text.startswith("Echo: second question (turn 2) alpha bravo ")
    assert tokenize(text) == tokens
    assert all(t.strip() for t in tokens)  # no whitespace-only tokens


def test_reply_never_truncates_the_echo() -> None:
    tokens = reply_tokens([{"role": "user", "content": "one two three four"}], 2)
    assert "".join(tokens) == "Echo: one two three four (turn 1)"


def test_tokenize_round_trips_odd_whitespace() -> None:
    for text in ["", "  ", " lead", "trail  ", "a\nb\t c", "x"]:
        assert "".join(tokenize(text)) == text


def test_reply_reads_content_part_lists() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "parts"}]}]
    assert "".join(reply_tokens(messages, 0)) == "Echo: parts (turn 1)"


def test_count_prompt_tokens_is_chars_over_four_min_one() -> None:
    messages = [{"role": "user", "content": "x" * 9}, {"role": "assistant", "content": ""}]
    assert count_prompt_tokens(messages) == 3 + 1


# --- behaviour.py ---------------------------------------------------------------


def test_behaviour_precedence_defaults_then_suffix_then_headers() -> None:
    defaults = Behaviour(ttft_ms=150, tokens_per_second=40, tokens=40)
    resolved = resolve_behaviour(
        defaults,
        "gpt-4o-mini:ttft=200,tps=50,fault=cut-5",
        {"x-fakeai-tps": "7", "X-Fakeai-Fault": "500x2"},
    )
    assert resolved == Behaviour(
        ttft_ms=200, tokens_per_second=7, tokens=40, fault=Fault("500", times=2)
    )
    assert resolve_behaviour(defaults, "fakeai", {}) == defaults


def test_fault_header_none_clears_suffix_fault() -> None:
    resolved = resolve_behaviour(FAST, "fakeai:fault=hang", {"X-Fakeai-Fault": "none"})
    assert resolved.fault is None


def test_parse_fault_syntax() -> None:
    assert parse_fault("429") == Fault("429", retry_after=1.0)
    assert parse_fault("429-retry=0.1x3") == Fault("429", retry_after=0.1, times=3)
    assert parse_fault("hang") == Fault("hang", tokens=None)
    assert parse_fault("hang-4") == Fault("hang", tokens=4)
    assert parse_fault("cut-5x1") == Fault("cut", tokens=5, times=1)
    assert parse_fault("malformed-2") == Fault("malformed", tokens=2)
    assert parse_fault("error-3") == Fault("error", tokens=3)
    assert parse_fault("401") == Fault("401")
    for bad in ["cut", "404", "hang-x", "cut-1y2"]:
        with pytest.raises(ValueError):
            parse_fault(bad)


def test_model_suffix_rejects_unknown_keys_and_bad_numbers() -> None:
    with pytest.raises(ValueError):
        parse_model_suffix("fakeai:speed=3")
    with pytest.raises(ValueError):
        parse_model_suffix("fakeai:tps=-1")
    assert parse_model_suffix("plain-model") == {}


# --- streaming ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_stream_yields_expected_text_then_usage(ai: AsyncOpenAI) -> None:
    stream = await ai.chat.completions.create(
        model="fakeai",
        messages=HI,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    expected = reply_tokens(HI, 12)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].delta.content for c in chunks[1:-2]] == expected
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12
    assert chunks[-1].usage.total_tokens == 12 + count_prompt_tokens(HI)
    assert {c.model for c in chunks} == {"fakeai"}


@pytest.mark.asyncio
async def test_stream_without_include_usage_has_no_usage_chunk(ai: AsyncOpenAI) -> None:
    stream = await ai.chat.completions.create(model="fakeai", messages=HI, stream=True)
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


@pytest.mark.asyncio
async def test_header_overrides_model_suffix_token_count(ai: AsyncOpenAI) -> None:
    stream = await ai.chat.completions.create(
        model="fakeai:tokens=30",
        messages=HI,
        stream=True,
        extra_headers={"X-Fakeai-Tokens": "8"},
    )
    got: list[str] = []
    await collect(stream, got)
    assert got == reply_tokens(HI, 8)


@pytest.mark.asyncio
async def test_max_tokens_caps_reply_with_length_finish(ai: AsyncOpenAI) -> None:
    result = await ai.chat.completions.create(model="fakeai", messages=HI, max_tokens=5)
    assert result.choices[0].message.content == "".join(reply_tokens(HI, 12)[:5])
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None and result.usage.completion_tokens == 5


@pytest.mark.asyncio
async def test_non_streaming_completion(ai: AsyncOpenAI) -> None:
    result = await ai.chat.completions.create(model="fakeai:tokens=9", messages=HI)
    assert result.object == "chat.completion"
    assert result.choices[0].message.content == "".join(reply_tokens(HI, 9))
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None and result.usage.completion_tokens == 9


@pytest.mark.asyncio
async def test_ttft_is_honoured_and_tokens_are_paced(ai: AsyncOpenAI) -> None:
    started = time.monotonic()
    stream = await ai.chat.completions.create(
        model="fakeai:ttft=300,tps=20,tokens=6", messages=HI, stream=True
    )
    arrivals: list[float] = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
    assert 0.3 <= arrivals[0] < 1.0
    # 5 more tokens at 20/s => the last one is due 0.25 s after the first.
    assert arrivals[-1] - arrivals[0] >= 0.24


# --- faults ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_429_raises_rate_limit_error_with_retry_after(ai: AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await ai.chat.completions.create(model="fakeai:fault=429", messages=HI)
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.RateLimitError) as caught:
        await ai.chat.completions.create(
            model="fakeai", messages=HI, extra_headers={"X-Fakeai-Fault": "429-retry=0.1"}
        )
    assert caught.value.response.headers["retry-after"] == "0.1"


@pytest.mark.asyncio
async def test_500_raises_internal_server_error(ai: AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        await ai.chat.completions.create(model="fakeai:fault=500", messages=HI, stream=True)


@pytest.mark.asyncio
async def test_fault_times_k_fails_only_first_k_identical_requests(ai: AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        await ai.chat.completions.create(model="fakeai:fault=429x1", messages=HI, stream=True)
    stream = await ai.chat.completions.create(model="fakeai:fault=429x1", messages=HI, stream=True)
    got: list[str] = []
    await collect(stream, got)
    assert got == reply_tokens(HI, 12)


@pytest.mark.asyncio
async def test_cut_gives_n_tokens_then_connection_error(ai: AsyncOpenAI) -> None:
    stream = await ai.chat.completions.create(model="fakeai:fault=cut-3", messages=HI, stream=True)
    got: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        await collect(stream, got)
    assert got == reply_tokens(HI, 12)[:3]


@pytest.mark.asyncio
async def test_malformed_gives_n_tokens_then_json_error(ai: AsyncOpenAI) -> None:
    stream = await ai.chat.completions.create(
        model="fakeai:fault=malformed-4", messages=HI, stream=True
    )
    got: list[str] = []
    with pytest.raises(json.JSONDecodeError):
        await collect(stream, got)
    assert got == reply_tokens(HI, 12)[:4]


@pytest.mark.asyncio
async def test_error_gives_n_tokens_then_an_error_in_the_stream(ai: AsyncOpenAI) -> None:
    stream = await ai.chat.completions.create(
        model="fakeai:fault=error-2", messages=HI, stream=True
    )
    got: list[str] = []
    with pytest.raises(openai.APIError, match="fakeai injected fault"):
        await collect(stream, got)
    assert got == reply_tokens(HI, 12)[:2]


@pytest.mark.asyncio
async def test_401_raises_authentication_error(ai: AsyncOpenAI) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        await ai.chat.completions.create(model="fakeai:fault=401", messages=HI, stream=True)
    assert caught.value.code == "invalid_api_key"


@pytest.mark.asyncio
async def test_hang_times_out_and_counts_client_disconnect(
    ai: AsyncOpenAI, http: TestClient
) -> None:
    with pytest.raises(openai.APITimeoutError):
        await ai.chat.completions.create(
            model="fakeai:fault=hang", messages=HI, stream=True, timeout=0.5
        )
    await wait_for_stats(http, client_disconnects=1, active=0)


@pytest.mark.asyncio
async def test_hang_after_n_tokens_times_out_mid_stream(ai: AsyncOpenAI, http: TestClient) -> None:
    stream = await ai.chat.completions.create(
        model="fakeai:fault=hang-2", messages=HI, stream=True, timeout=0.5
    )
    got: list[str] = []
    with pytest.raises(openai.APITimeoutError):
        await collect(stream, got)
    assert got == reply_tokens(HI, 12)[:2]
    await wait_for_stats(http, client_disconnects=1, active=0)


@pytest.mark.asyncio
async def test_closing_stream_early_counts_client_disconnect(
    ai: AsyncOpenAI, http: TestClient
) -> None:
    stream = await ai.chat.completions.create(
        model="fakeai:tps=5,tokens=50", messages=HI, stream=True
    )
    got: list[str] = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            got.append(chunk.choices[0].delta.content)
        if len(got) == 2:
            break
    await stream.close()
    final = await wait_for_stats(http, client_disconnects=1, active=0)
    assert final["completed"] == 0
    assert got == reply_tokens(HI, 50)[:2]


# --- bookkeeping endpoints ------------------------------------------------------


@pytest.mark.asyncio
async def test_requests_log_records_history_and_auth(ai: AsyncOpenAI, http: TestClient) -> None:
    history = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    await ai.chat.completions.create(model="fakeai", messages=history)
    await ai.chat.completions.create(model="fakeai:tokens=3", messages=HI)
    log = await (await http.get("/_fakeai/requests")).json()
    assert [entry["messages"] for entry in log] == [history, HI]
    assert log[-1]["model"] == "fakeai:tokens=3"
    assert log[-1]["_fakeai"]["authorization"] is True


@pytest.mark.asyncio
async def test_stats_count_and_reset(ai: AsyncOpenAI, http: TestClient) -> None:
    await ai.chat.completions.create(model="fakeai", messages=HI)
    with pytest.raises(openai.RateLimitError):
        await ai.chat.completions.create(model="fakeai:fault=429x1", messages=HI)
    current = await stats(http)
    assert (current["requests"], current["completed"], current["active"]) == (2, 1, 0)
    await http.post("/_fakeai/reset")
    assert await stats(http) == {
        "requests": 0,
        "completed": 0,
        "client_disconnects": 0,
        "active": 0,
        "faults": 0,
    }
    assert await (await http.get("/_fakeai/requests")).json() == []
    # The xK counter was reset too, so the fault fires again.
    with pytest.raises(openai.RateLimitError):
        await ai.chat.completions.create(model="fakeai:fault=429x1", messages=HI)


@pytest.mark.asyncio
async def test_models_list(ai: AsyncOpenAI) -> None:
    models = [m async for m in ai.models.list()]
    assert "fakeai" in [m.id for m in models]
    assert {m.owned_by for m in models} == {"fakeai"}


@pytest.mark.asyncio
async def test_empty_messages_is_bad_request(ai: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await ai.chat.completions.create(model="fakeai", messages=[])
    assert caught.value.param == "messages"


@pytest.mark.asyncio
async def test_non_json_body_is_400_invalid_request(http: TestClient) -> None:
    resp = await http.post("/v1/chat/completions", data=b"{nope")
    assert resp.status == 400
    body = await resp.json()
    assert body["error"]["type"] == "invalid_request_error"


@pytest.mark.asyncio
async def test_bad_control_in_model_is_bad_request(ai: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        await ai.chat.completions.create(model="fakeai:fault=explode", messages=HI)
