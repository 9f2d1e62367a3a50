"""The only place that talks to chat completions.

One `AsyncOpenAI` client per process and event loop; `stream_chat` yields
content tokens and fills a `LatencyMetrics`. Failures surface as `LLMError`
with one of a few codes and a `retryable` flag. Retries happen only before the
first token: once text has reached a user, repeating the request would
duplicate it. Prompt budgeting lives here too, beside the call it feeds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field

import aiohttp
import httpx2
import openai
from django.conf import settings

from realtime import log_context, wire
from realtime.metrics import RETRIES, STREAM_DURATION, TIME_TO_FIRST_TOKEN, TOKEN_GAP, TOKENS
from realtime.runs import RunError

logger = logging.getLogger(__name__)


@dataclass
class LatencyMetrics:
    """What one reply cost in time and tokens; stored on the message."""

    ttft_ms: float | None = None
    total_ms: float | None = None
    tokens: int = 0
    tokens_per_second: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    attempts: int = 0
    started_at: float = field(default_factory=time.perf_counter, repr=False)
    _first_token_at: float | None = field(default=None, repr=False)
    _last_token_at: float = field(default=0.0, repr=False)

    def mark_token(self) -> None:
        """Called per token: keep it cheap (one histogram observation, nothing allocated)."""
        now = time.perf_counter()
        if self._first_token_at is None:
            self._first_token_at = now
            self.ttft_ms = round((now - self.started_at) * 1000, 2)
            _observe_ttft(now - self.started_at)
        else:
            _observe_token_gap(now - self._last_token_at)
        self._last_token_at = now
        self.tokens += 1

    def finish(self) -> None:
        now = time.perf_counter()
        if self.total_ms is None:  # the process-wide metrics count each stream once
            STREAM_DURATION.observe(now - self.started_at)
            TOKENS.inc(self.tokens)
        self.total_ms = round((now - self.started_at) * 1000, 2)
        if self._first_token_at is not None and self.tokens > 1:
            streaming_s = now - self._first_token_at
            if streaming_s > 0:
                self.tokens_per_second = round((self.tokens - 1) / streaming_s, 2)

    def as_dict(self) -> dict:
        data = asdict(self)
        data.pop("started_at")
        data.pop("_first_token_at")
        data.pop("_last_token_at")
        return data


# Bound once: these run on the per-token path.
_observe_ttft = TIME_TO_FIRST_TOKEN.observe
_observe_token_gap = TOKEN_GAP.observe


class LLMError(RunError):
    """An upstream failure, already mapped to a protocol error code."""

    def __init__(
        self, code: str, message: str, *, retryable: bool, retry_after: float | None = None
    ):
        super().__init__(code, message, retryable=retryable)
        self.retry_after = retry_after


# --- client ------------------------------------------------------------------------
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = (
    weakref.WeakKeyDictionary()
)


def get_client() -> openai.AsyncOpenAI:
    """The process's client (one per event loop: its connection pool is loop-bound)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        # No read timeout here: aiohttp would re-arm a timer on every chunk of
        # every stream. `stream_chat` enforces LLM_TIMEOUT_SECONDS itself.
        timeout = openai.Timeout(
            None,
            connect=settings.LLM_CONNECT_TIMEOUT_SECONDS,
            pool=settings.LLM_TIMEOUT_SECONDS,
        )
        client = openai.AsyncOpenAI(
            api_key=settings.OPENAI_API_KEY or "fakeai-demo",
            base_url=settings.OPENAI_BASE_URL or None,
            # We retry ourselves, and only before the first token.
            max_retries=0,
            timeout=timeout,
            # aiohttp's C parser and connection pool cost far less CPU per
            # chunk than the default transport under many concurrent streams.
            http_client=openai.DefaultAioHttpClient(
                timeout=timeout,
                limits=httpx2.Limits(
                    max_connections=settings.LLM_MAX_CONNECTIONS,
                    max_keepalive_connections=settings.LLM_MAX_CONNECTIONS,
                    keepalive_expiry=30,
                ),
            ),
        )
        _clients[loop] = client
    return client


async def close_client() -> None:
    """Close this loop's client and its connections (tests; shutdown)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.close()


def reset_clients() -> None:
    """Forget clients so the next call reads settings again (tests change them)."""
    _clients.clear()


# --- error mapping -----------------------------------------------------------------
def _retry_after_seconds(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


UNREACHABLE_MESSAGE = "Cannot reach the model service."


def map_error(exc: BaseException) -> LLMError:
    """Map an openai/transport exception to one of our codes."""
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, openai.RateLimitError):
        return LLMError(
            wire.RATE_LIMITED,
            "The model is rate limited; try again shortly.",
            retryable=True,
            retry_after=_retry_after_seconds(exc),
        )
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code >= 500 or exc.status_code == 409:
            return LLMError(
                wire.UPSTREAM_ERROR,
                f"The model service failed (HTTP {exc.status_code}).",
                retryable=True,
            )
        return LLMError(
            wire.BAD_REQUEST,
            f"The model service refused the request (HTTP {exc.status_code}).",
            retryable=False,
        )
    failure = _transport_failure(exc)
    if failure == "unreachable":
        return LLMError(wire.UPSTREAM_ERROR, UNREACHABLE_MESSAGE, retryable=True)
    if failure == "timeout":
        return LLMError(wire.TIMEOUT, "The model took too long to answer.", retryable=True)
    if failure == "broken":
        return LLMError(
            wire.UPSTREAM_ERROR, "The connection to the model service broke.", retryable=True
        )
    return LLMError(
        wire.UPSTREAM_ERROR,
        "The model service sent a response we could not read.",
        retryable=True,
    )


def _transport_failure(exc: BaseException) -> str | None:
    """What went wrong on the way to the model: unreachable, timeout, broken (or None).

    The aiohttp transport's own exception, somewhere in the chain, tells the
    truth: the transport reports every aiohttp connection error (a refused
    connection, a failed DNS lookup, a server that hung up) as
    httpx2.ConnectTimeout, which the SDK raises as APITimeoutError. A connect
    timeout counts as unreachable (the model never got the request); only a
    wait for an answer that ran out is a timeout.
    """
    causes = _causes(exc)
    reported = next((cause for cause in causes if isinstance(cause, aiohttp.ClientError)), None)
    if reported is not None:
        if isinstance(reported, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
            return "unreachable"
        if isinstance(reported, aiohttp.ServerTimeoutError):
            return "timeout"
        return "broken"
    # Other transports name the failure in their own exception types.
    for failure, types in _FAILURE_TYPES:
        if any(isinstance(cause, types) for cause in causes):
            return failure
    return None


_FAILURE_TYPES = (
    (
        "unreachable",
        (httpx2.ConnectError, httpx2.ConnectTimeout, ConnectionRefusedError, socket.gaierror),
    ),
    ("timeout", (httpx2.TimeoutException, openai.APITimeoutError, TimeoutError)),
    ("broken", (httpx2.TransportError, openai.APIConnectionError, ConnectionError)),
)


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what it was raised from, outermost first (cycles cut)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and not any(current is seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def backoff_seconds(attempt: int, error: LLMError) -> float:
    """How long to wait before retry `attempt` (1, 2, …): `Retry-After`, else jittered doubling."""
    if error.retry_after is not None:
        return min(error.retry_after, settings.LLM_RETRY_MAX_WAIT_SECONDS)
    base = settings.LLM_RETRY_BASE_SECONDS * (2 ** (attempt - 1))
    return min(base * (0.5 + random.random()), settings.LLM_RETRY_MAX_WAIT_SECONDS)


# --- models --------------------------------------------------------------------------
async def list_models() -> list[str]:
    """The ids of the models the model service lists (`GET /models`). Raises LLMError."""
    try:
        async with asyncio.timeout(settings.LLM_TIMEOUT_SECONDS):
            page = await get_client().models.list()
    except Exception as exc:  # noqa: BLE001 - every failure becomes an LLMError
        raise map_error(exc) from exc
    return [model.id for model in page.data if isinstance(model.id, str) and model.id]


# --- streaming -----------------------------------------------------------------------
async def stream_chat(
    messages: Sequence[dict],
    *,
    model: str | None = None,
    metrics: LatencyMetrics | None = None,
    max_tokens: int | None = None,
) -> AsyncIterator[str]:
    """Yield the reply's content tokens as they arrive.

    Raises LLMError. Closing the generator (or cancelling the task reading it)
    closes the upstream HTTP stream, so the provider stops generating.
    """
    metrics = metrics if metrics is not None else LatencyMetrics()
    model = model or settings.OPENAI_MODEL
    attempt = 0
    while True:
        attempt += 1
        metrics.attempts = attempt
        try:
            async with asyncio.timeout(settings.LLM_TIMEOUT_SECONDS):
                response = await _post_stream(messages, model=model, max_tokens=max_tokens)
        except Exception as exc:  # noqa: BLE001 - mapped, then retried or raised
            error = map_error(exc)
            if not error.retryable or attempt > settings.LLM_MAX_RETRIES:
                metrics.finish()
                raise error from exc
            wait = backoff_seconds(attempt, error)
            RETRIES.labels(code=error.code).inc()
            logger.warning("llm retry attempt=%s code=%s wait_s=%.2f", attempt, error.code, wait)
            await asyncio.sleep(wait)
            continue
        break

    finished = False
    idle = _IdleTimeout(settings.LLM_TIMEOUT_SECONDS, response)
    try:
        async for line in _sse_lines(response, idle):
            chunk = _parse_sse_line(line)
            if chunk is None:
                continue
            if chunk is _DONE:
                break
            usage = chunk.get("usage")
            if usage:
                metrics.prompt_tokens = usage.get("prompt_tokens")
                metrics.completion_tokens = usage.get("completion_tokens")
            for choice in chunk.get("choices") or ():
                if choice.get("finish_reason") is not None:
                    finished = True
                text = (choice.get("delta") or {}).get("content")
                if text:
                    # No NUL, no lone surrogate: the text is stored and sent on.
                    text = wire.clean_text(text)
                if text:
                    metrics.mark_token()
                    yield text
    except LLMError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes an LLMError
        if idle.expired:
            raise map_error(TimeoutError()) from exc
        raise map_error(exc) from exc
    finally:
        idle.cancel()
        metrics.finish()
        # Closes the HTTP response: on cancel the provider sees the disconnect.
        await response.aclose()
    if not finished:
        raise LLMError(
            wire.UPSTREAM_ERROR,
            "The model's answer ended before it was finished.",
            retryable=True,
        )


async def _post_stream(
    messages: Sequence[dict], *, model: str, max_tokens: int | None
) -> httpx2.Response:
    """Send the request; return the open streaming response (status already checked).

    The client's generic `post` keeps the SDK's auth, headers and status-error
    mapping but skips its per-request parameter transformation and per-chunk
    model objects, which were most of the CPU a reply cost under load
    (docs/benchmarks.md). We read the SSE lines ourselves.
    """
    body = {
        "model": model,
        "messages": list(messages),
        "stream": True,
        "stream_options": {"include_usage": True},
        settings.LLM_MAX_TOKENS_PARAM: max_tokens or settings.LLM_MAX_OUTPUT_TOKENS,
    }
    return await get_client().post(
        "/chat/completions", cast_to=httpx2.Response, body=body, stream=True
    )


_DONE = object()


class _IdleTimeout:
    """Closes a response that sent nothing for `timeout_s`, with one timer per period.

    Each chunk only records the time; the timer, when it fires, re-arms itself
    for what is left of the period, so a stream costs one timer every
    `timeout_s` instead of one per chunk.
    """

    def __init__(self, timeout_s: float, response: httpx2.Response) -> None:
        self._loop = asyncio.get_running_loop()
        self._timeout_s = timeout_s
        self._response = response
        self.last_chunk_at = self._loop.time()
        self.expired = False
        self._handle = self._loop.call_later(timeout_s, self._check)

    def _check(self) -> None:
        idle_s = self._loop.time() - self.last_chunk_at
        if idle_s < self._timeout_s:
            self._handle = self._loop.call_later(self._timeout_s - idle_s, self._check)
            return
        self.expired = True
        # The pending read then fails, and stream_chat reports a timeout.
        self._closing = self._loop.create_task(self._response.aclose())  # held: not GC-ed

    def cancel(self) -> None:
        self._handle.cancel()


async def _sse_lines(response: httpx2.Response, idle: _IdleTimeout) -> AsyncIterator[bytes]:
    """The response's lines as bytes: no text decoding layer per chunk."""
    pending = b""
    loop = asyncio.get_running_loop()
    async for data in response.aiter_bytes():
        idle.last_chunk_at = loop.time()
        lines = (pending + data).split(b"\n")
        pending = lines.pop()
        for line in lines:
            yield line.rstrip(b"\r")
    if pending:
        yield pending


def _parse_sse_line(line: bytes) -> dict | object | None:
    """One `data:` line of the chat completions stream; None for other lines."""
    if not line.startswith(b"data:"):
        return None
    data = line[5:].strip()
    if data == b"[DONE]":
        return _DONE
    chunk = json.loads(data)
    if not isinstance(chunk, dict):
        raise ValueError("stream chunk is not an object")
    if "error" in chunk:
        error = chunk["error"] or {}
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise LLMError(
            wire.UPSTREAM_ERROR,
            f"The model service reported an error: {message}"[:300],
            retryable=True,
        )
    return chunk


class EarlyStream:
    """Token iterator whose upstream request starts at construction, not on first read.

    Lets a caller overlap its own work (saving the message) with the model's
    time to first token. `aclose()` stops the request whether or not it has
    answered yet.
    """

    def __init__(self, tokens) -> None:
        self._tokens = tokens
        # Nothing of the caller's context but its log ids (see realtime.runs.start).
        self._first = asyncio.create_task(anext(tokens, None), context=log_context.fresh_context())

    def __aiter__(self):
        return self._iterate()

    async def _iterate(self):
        first = await self._first
        if first is None:
            return
        yield first
        async for text in self._tokens:
            yield text

    async def aclose(self) -> None:
        """Stop the upstream request, whether or not it has answered yet."""
        if not self._first.done():
            self._first.cancel()
        await asyncio.gather(self._first, return_exceptions=True)
        await self._tokens.aclose()


# --- prompt budgeting ---------------------------------------------------------------
CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate (about 4 characters a token) that errs high."""
    return MESSAGE_OVERHEAD_TOKENS + (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def build_prompt(history: Sequence[dict], *, system_prompt: str, budget_tokens: int) -> list[dict]:
    """System prompt plus the newest turns that fit the budget.

    Oldest turns go first; the system prompt and the newest message always
    stay, even when they alone exceed the budget (the provider then decides).
    """
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    remaining = budget_tokens - sum(estimate_tokens(m["content"]) for m in system)
    kept: list[dict] = []
    for message in reversed(history):
        cost = estimate_tokens(message["content"])
        if kept and cost > remaining:
            break
        kept.append({"role": message["role"], "content": message["content"]})
        remaining -= cost
    kept.reverse()
    # A prompt should not open with an orphaned assistant turn.
    while len(kept) > 1 and kept[0]["role"] == "assistant":
        kept.pop(0)
    return system + kept
