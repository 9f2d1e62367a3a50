"""Pure parts of the LLM boundary: prompt budgeting, metrics, error mapping."""

from __future__ import annotations

import asyncio

import httpx2
import openai
import pytest

from realtime import llm


def turn(role: str, chars: int) -> dict:
    return {"role": role, "content": "x" * chars}


def test_prompt_keeps_system_and_all_turns_within_budget():
    history = [turn("user", 40), turn("assistant", 40), turn("user", 40)]
    prompt = llm.build_prompt(history, system_prompt="be brief", budget_tokens=1000)
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user"]


def test_prompt_drops_oldest_turns_first():
    history = [turn("user", 400), turn("assistant", 400), turn("user", 40), turn("assistant", 40)]
    history.append({"role": "user", "content": "newest"})
    prompt = llm.build_prompt(history, system_prompt="sys", budget_tokens=60)
    assert prompt[0] == {"role": "system", "content": "sys"}
    assert prompt[-1]["content"] == "newest"
    assert all(len(m["content"]) < 400 for m in prompt)


def test_prompt_never_opens_with_an_assistant_turn():
    history = [turn("user", 400), turn("assistant", 10), turn("user", 10)]
    prompt = llm.build_prompt(history, system_prompt="", budget_tokens=20)
    assert [m["role"] for m in prompt] == ["user"]


def test_newest_message_is_kept_even_over_budget():
    prompt = llm.build_prompt([turn("user", 10_000)], system_prompt="sys", budget_tokens=10)
    assert [m["role"] for m in prompt] == ["system", "user"]


def test_metrics_measure_ttft_and_rate():
    metrics = llm.LatencyMetrics()
    metrics.started_at -= 0.5
    metrics.mark_token()
    metrics._first_token_at -= 1.0
    metrics.mark_token()
    metrics.mark_token()
    metrics.finish()
    assert metrics.ttft_ms >= 500
    assert metrics.tokens == 3
    assert 1.5 < metrics.tokens_per_second <= 2.0
    assert set(metrics.as_dict()) >= {"ttft_ms", "total_ms", "tokens", "tokens_per_second"}


def _status_error(cls, status: int, headers: dict | None = None):
    request = httpx2.Request("POST", "http://x/v1/chat/completions")
    response = httpx2.Response(status, headers=headers or {}, request=request)
    return cls("failed", response=response, body=None)


def test_rate_limit_maps_to_retryable_with_retry_after():
    error = llm.map_error(_status_error(openai.RateLimitError, 429, {"retry-after": "2"}))
    assert (error.code, error.retryable, error.retry_after) == ("rate_limited", True, 2.0)


def test_server_error_is_retryable_and_client_error_is_not():
    assert llm.map_error(_status_error(openai.InternalServerError, 503)).code == "upstream_error"
    bad = llm.map_error(_status_error(openai.BadRequestError, 400))
    assert (bad.code, bad.retryable) == ("bad_request", False)


def test_timeouts_and_broken_streams_map_to_their_codes():
    request = httpx2.Request("POST", "http://x")
    assert llm.map_error(openai.APITimeoutError(request=request)).code == "timeout"
    assert llm.map_error(httpx2.ReadTimeout("slow")).code == "timeout"
    assert llm.map_error(httpx2.RemoteProtocolError("cut")).code == "upstream_error"
    assert llm.map_error(ValueError("{not json")).code == "upstream_error"


class _ChunkedResponse:
    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    async def aiter_bytes(self):
        for chunk in self.chunks:
            yield chunk


async def test_sse_lines_are_reassembled_across_network_chunks():
    response = _ChunkedResponse(b'data: {"a"', b": 1}\r\n\r\nda", b"ta: [DONE]\n\n")
    idle = llm._IdleTimeout(30, response)
    lines = [line async for line in llm._sse_lines(response, idle)]
    idle.cancel()
    assert lines == [b'data: {"a": 1}', b"", b"data: [DONE]", b""]


def test_sse_line_parsing():
    assert llm._parse_sse_line(b'data: {"choices": []}') == {"choices": []}
    assert llm._parse_sse_line(b"data: [DONE]") is llm._DONE
    assert llm._parse_sse_line(b": keep-alive comment") is None
    assert llm._parse_sse_line(b"") is None


def test_error_chunk_in_the_stream_is_an_upstream_error():
    with pytest.raises(llm.LLMError) as caught:
        llm._parse_sse_line(b'data: {"error": {"message": "overloaded"}}')
    assert caught.value.code == "upstream_error" and "overloaded" in caught.value.message


class _SilentResponse:
    """A response that sends one chunk, then nothing until it is closed."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()

    async def aiter_bytes(self):
        yield b"data: {}\n"
        await self.closed.wait()
        raise ConnectionError("closed")

    async def aclose(self) -> None:
        self.closed.set()


async def test_a_response_silent_for_the_timeout_is_closed_and_flagged():
    response = _SilentResponse()
    idle = llm._IdleTimeout(0.05, response)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ConnectionError):
        async for _ in llm._sse_lines(response, idle):
            pass
    assert idle.expired
    assert 0.05 <= asyncio.get_running_loop().time() - started < 1


async def test_chunks_keep_a_response_alive_past_the_timeout():
    class Trickle:
        async def aiter_bytes(self):
            for _ in range(6):
                await asyncio.sleep(0.02)
                yield b"data: {}\n"

    response = Trickle()
    idle = llm._IdleTimeout(0.05, response)  # the whole stream takes 0.12 s
    lines = [line async for line in llm._sse_lines(response, idle)]
    idle.cancel()
    assert len(lines) == 6 and not idle.expired
