"""HTTP side of fakeai: routes, request validation, pacing and fault injection.

Timing is computed against a monotonic schedule anchored at request arrival,
so TTFT and tokens/s stay accurate under load instead of drifting with
accumulated sleeps.
"""

import asyncio
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fakeai import realtime, wire
from fakeai.behaviour import HEADER_FAULT, Behaviour, Fault, resolve_behaviour
from fakeai.replies import count_prompt_tokens, reply_tokens

REQUEST_LOG_SIZE = 50
MODEL_IDS = ("fakeai", "gpt-4o-mini", "gpt-4o")
_MODELS_CREATED = 1_700_000_000
_DISCONNECT_POLL_S = 0.1


@dataclass
class ServerState:
    """Counters and logs exposed under ``/_fakeai/`` for tests."""

    requests: int = 0
    completed: int = 0
    client_disconnects: int = 0
    active: int = 0
    faults: int = 0
    fault_counts: dict[tuple[str, str], int] = field(default_factory=dict)
    request_log: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=REQUEST_LOG_SIZE)
    )
    # In-flight chat handlers, cancelled on shutdown so hung streams can't
    # hold the process open for aiohttp's graceful-shutdown timeout.
    handlers: set[asyncio.Task[Any]] = field(default_factory=set)
    shutting_down: bool = False

    def reset(self) -> None:
        """Zero counters, xK fault counters and the request log."""
        self.requests = self.completed = self.client_disconnects = self.faults = 0
        self.fault_counts.clear()
        self.request_log.clear()

    def stats(self) -> dict[str, int]:
        """Return the public counters."""
        return {
            "requests": self.requests,
            "completed": self.completed,
            "client_disconnects": self.client_disconnects,
            "active": self.active,
            "faults": self.faults,
        }


DEFAULTS_KEY = web.AppKey("fakeai_defaults", Behaviour)
STATE_KEY = web.AppKey("fakeai_state", ServerState)


class _ServerAbort:
    """Marks a request whose connection fakeai itself closed (cut fault)."""

    def __init__(self) -> None:
        self.aborted = False


def _error(
    status: int,
    message: str,
    type_: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.Response(
        status=status,
        body=wire.dumps(wire.error_body(message, type_, code, param)),
        content_type="application/json",
        headers=headers,
    )


async def _sleep_until(deadline: float) -> None:
    delay = deadline - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


async def _wait_for_disconnect(request: web.Request) -> None:
    """Block until the client goes away, then raise ConnectionResetError.

    With ``handler_cancellation`` (TestServer, ``python -m fakeai``) the
    handler is cancelled instead; polling covers runners without it.
    """
    while True:
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("client disconnected")
        await asyncio.sleep(_DISCONNECT_POLL_S)


def _fault_response(fault: Fault) -> web.Response | None:
    if fault.kind == "429":
        retry = f"{fault.retry_after:g}"
        return _error(
            429,
            "Rate limit reached (fakeai injected fault).",
            "requests",
            "rate_limit_exceeded",
            headers={
                "Retry-After": retry,
                "retry-after-ms": f"{fault.retry_after * 1000:g}",
            },
        )
    if fault.kind == "500":
        return _error(500, "The server had an error (fakeai injected fault).", "server_error")
    if fault.kind == "401":
        return _error(
            401,
            "Incorrect API key provided (fakeai injected fault).",
            "invalid_request_error",
            "invalid_api_key",
        )
    return None


def _active_fault(
    state: ServerState, behaviour: Behaviour, model: str, request: web.Request
) -> Fault | None:
    fault = behaviour.fault
    if fault is None or fault.times is None:
        return fault
    key = (model, request.headers.get(HEADER_FAULT, ""))
    count = state.fault_counts.get(key, 0) + 1
    state.fault_counts[key] = count
    return fault if count <= fault.times else None


def _max_tokens(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _validate(body: Any) -> web.Response | None:
    if not isinstance(body, dict):
        return _error(400, "Request body must be a JSON object.", "invalid_request_error")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error(
            400,
            "'messages' must be a non-empty array.",
            "invalid_request_error",
            param="messages",
        )
    if not all(isinstance(m, dict) for m in messages):
        return _error(
            400,
            "Each message must be an object.",
            "invalid_request_error",
            param="messages",
        )
    if not isinstance(body.get("model", "fakeai"), str):
        return _error(400, "'model' must be a string.", "invalid_request_error", param="model")
    return None


@dataclass
class _Plan:
    """Everything a reply needs once the request has been validated."""

    started: float  # loop.time() at request arrival
    completion_id: str
    created: int
    model: str
    tokens: list[str]
    finish_reason: str
    usage: dict[str, int]
    behaviour: Behaviour
    fault: Fault | None
    include_usage: bool

    def token_time(self, index: int) -> float:
        """Loop time at which content token ``index`` is due."""
        tps = self.behaviour.tokens_per_second
        offset = index / tps if tps > 0 else 0.0
        return self.started + self.behaviour.ttft_ms / 1000 + offset

    @property
    def tokens_before_fault(self) -> int:
        if self.fault is None or self.fault.tokens is None:
            return len(self.tokens)
        return min(self.fault.tokens, len(self.tokens))


async def _stream(request: web.Request, plan: _Plan, abort: _ServerAbort) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    frames = wire.ChunkFrames(plan.completion_id, plan.created, plan.model)
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    loop = asyncio.get_running_loop()
    limit = plan.tokens_before_fault
    # The role frame goes out together with the first content token, so the
    # client-observed TTFT is exactly the configured delay.
    pending = [frames.role()]
    index = 0
    await _sleep_until(plan.token_time(0))
    while index < limit:
        await _sleep_until(plan.token_time(index))
        now = loop.time()
        # If we woke late, send everything already due in one write.
        while index < limit and plan.token_time(index) <= now:
            pending.append(frames.content(plan.tokens[index]))
            index += 1
        await resp.write(b"".join(pending))
        pending = []
    if pending:
        await resp.write(b"".join(pending))

    fault = plan.fault
    if fault is not None and fault.kind == "hang":
        await _wait_for_disconnect(request)
    if fault is not None and fault.kind == "cut":
        abort.aborted = True
        if request.transport is not None:
            request.transport.close()  # flushes written frames, then FIN
        return resp
    if fault is not None and fault.kind == "malformed":
        await resp.write(wire.MALFORMED_FRAME)
        await resp.write_eof()
        return resp
    if fault is not None and fault.kind == "error":
        await resp.write(wire.error_frame("The server had an error (fakeai injected fault)."))
        await resp.write_eof()
        return resp

    tail = [frames.finish(plan.finish_reason)]
    if plan.include_usage:
        tail.append(frames.usage(plan.usage))
    tail.append(wire.DONE_FRAME)
    await resp.write(b"".join(tail))
    await resp.write_eof()
    state.completed += 1
    return resp


async def _complete(request: web.Request, plan: _Plan, abort: _ServerAbort) -> web.Response:
    limit = plan.tokens_before_fault
    await _sleep_until(plan.token_time(max(limit - 1, 0)))
    fault = plan.fault
    if fault is not None and fault.kind == "hang":
        await _wait_for_disconnect(request)
    if fault is not None and fault.kind == "cut":
        abort.aborted = True
        if request.transport is not None:
            request.transport.close()
        return web.Response()  # never reaches the client
    if fault is not None and fault.kind == "malformed":
        return web.Response(body=b"{not json", content_type="application/json")
    if fault is not None and fault.kind == "error":
        return _error(500, "The server had an error (fakeai injected fault).", "server_error")
    body = wire.chat_completion(
        plan.completion_id,
        plan.created,
        plan.model,
        "".join(plan.tokens),
        plan.finish_reason,
        plan.usage,
    )
    request.app[STATE_KEY].completed += 1
    return web.Response(body=wire.dumps(body), content_type="application/json")


async def _chat(request: web.Request, started: float, abort: _ServerAbort) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    try:
        body = json.loads(await request.read())
    except ValueError:
        return _error(400, "Request body is not valid JSON.", "invalid_request_error")
    if isinstance(body, dict):
        entry = dict(body)
        entry["_fakeai"] = {"authorization": request.headers.get("Authorization") is not None}
        state.request_log.append(entry)
    invalid = _validate(body)
    if invalid is not None:
        return invalid

    model: str = body.get("model", "fakeai")
    try:
        behaviour = resolve_behaviour(request.app[DEFAULTS_KEY], model, request.headers)
    except ValueError as exc:
        return _error(400, str(exc), "invalid_request_error", param="model")
    fault = _active_fault(state, behaviour, model, request)
    if fault is not None:
        state.faults += 1
        response = _fault_response(fault)
        if response is not None:
            return response
        if fault.kind == "hang" and fault.tokens is None:
            await _wait_for_disconnect(request)

    messages = body["messages"]
    tokens = reply_tokens(messages, behaviour.tokens)
    finish_reason = "stop"
    cap = _max_tokens(body)
    if cap is not None and len(tokens) > cap:
        tokens, finish_reason = tokens[:cap], "length"
    stream_options = body.get("stream_options")
    plan = _Plan(
        started=started,
        completion_id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=model,
        tokens=tokens,
        finish_reason=finish_reason,
        usage=wire.usage(count_prompt_tokens(messages), len(tokens)),
        behaviour=behaviour,
        fault=fault,
        include_usage=isinstance(stream_options, dict)
        and stream_options.get("include_usage") is True,
    )
    if body.get("stream") is True:
        return await _stream(request, plan, abort)
    return await _complete(request, plan, abort)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions`` (streaming and non-streaming)."""
    started = asyncio.get_running_loop().time()
    state = request.app[STATE_KEY]
    state.requests += 1
    state.active += 1
    abort = _ServerAbort()
    task = asyncio.current_task()
    if task is not None:
        state.handlers.add(task)
    try:
        return await _chat(request, started, abort)
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the client disconnects.
        if not (abort.aborted or state.shutting_down):
            state.client_disconnects += 1
        raise
    except ConnectionResetError:
        if not abort.aborted:
            state.client_disconnects += 1
        return web.Response(status=499)  # unsendable; aiohttp drops it quietly
    finally:
        state.active -= 1
        if task is not None:
            state.handlers.discard(task)


async def _cancel_handlers(app: web.Application) -> None:
    state = app[STATE_KEY]
    state.shutting_down = True
    for task in list(state.handlers):
        task.cancel()


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/models``."""
    data = [
        {"id": model_id, "object": "model", "created": _MODELS_CREATED, "owned_by": "fakeai"}
        for model_id in MODEL_IDS
    ]
    return web.Response(
        body=wire.dumps({"object": "list", "data": data}), content_type="application/json"
    )


async def get_stats(request: web.Request) -> web.Response:
    """``GET /_fakeai/stats``: request counters for tests."""
    return web.json_response(request.app[STATE_KEY].stats())


async def reset_state(request: web.Request) -> web.Response:
    """``POST /_fakeai/reset``: zero counters, xK fault counters and the logs (Realtime's too)."""
    state = request.app[STATE_KEY]
    state.reset()
    request.app[realtime.STATE_KEY].reset()
    return web.json_response(state.stats())


async def get_requests(request: web.Request) -> web.Response:
    """``GET /_fakeai/requests``: last chat bodies received, newest last.

    Each body gains a ``_fakeai`` key with request metadata
    (``authorization``: whether an Authorization header was sent).
    """
    return web.json_response(list(request.app[STATE_KEY].request_log))


def _register_routes(app: web.Application) -> None:
    """The single place where routes are declared (the Realtime handlers are in realtime.py)."""
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/realtime", realtime.realtime_socket)
    app.router.add_get("/_fakeai/realtime/stats", realtime.get_stats)
    app.router.add_get("/_fakeai/realtime/events", realtime.get_events)
    app.router.add_get("/_fakeai/realtime/audio/{item_id}", realtime.get_audio)
    app.router.add_get("/_fakeai/stats", get_stats)
    app.router.add_post("/_fakeai/reset", reset_state)
    app.router.add_get("/_fakeai/requests", get_requests)


def create_app(defaults: Behaviour) -> web.Application:
    """Build the fakeai application; ``defaults`` are the per-process controls.

    Run it with ``handler_cancellation=True`` (TestServer does) so client
    disconnects cancel in-flight handlers promptly.
    """
    app = web.Application()
    app[DEFAULTS_KEY] = defaults
    app[STATE_KEY] = ServerState()
    app.on_shutdown.append(_cancel_handlers)
    realtime.setup(app, defaults)
    _register_routes(app)
    return app
