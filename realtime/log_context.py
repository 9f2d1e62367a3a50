"""Ids on every log line: the HTTP request, socket or run a line belongs to.

A context variable holds the ids of the work going on (`bind`); the handler's
`ContextFilter` copies them onto each record, and both formatters print them:
plain text (the default) as `key=value` after the message, JSON lines
(LOG_FORMAT=json) as fields. Requests get theirs from `RequestIdMiddleware`,
sockets from the base consumer, runs from `realtime.runs` (a run's task starts
from an empty context, so its lines carry the run's id alone).

Tasks and threads started from a context inherit its ids (asyncio and
asgiref copy the context). This module is loaded by the logging
configuration, before the app registry: it imports no models.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping

from django.http import HttpRequest, HttpResponse
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from realtime.middleware import SyncAndAsyncMiddleware

# In the order the plain format prints them.
ID_FIELDS = ("request_id", "socket_id", "run_id")

_ids: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "log_ids", default=None
)


def new_id() -> str:
    return uuid.uuid4().hex


def bind(**ids: str) -> None:
    """Put these ids on every later log line of this context (and of what it starts)."""
    _ids.set({**(_ids.get() or {}), **ids})


def current_ids() -> Mapping[str, str]:
    return _ids.get() or {}


def fresh_context() -> contextvars.Context:
    """An empty context but for this one's log ids: for tasks that must inherit nothing else."""
    context = contextvars.Context()
    context.run(_ids.set, _ids.get())
    return context


class ContextFilter(logging.Filter):
    """Copies the context's ids onto each record (an id given in `extra` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = _ids.get()
        if ids:
            for name, value in ids.items():
                record.__dict__.setdefault(name, value)
        return True


class PlainFormatter(logging.Formatter):
    """The default text format, with the record's ids after the message (before a traceback)."""

    def __init__(self, fmt: str = "%(asctime)s %(levelname)s %(name)s %(message)s", **kwargs):
        super().__init__(fmt, **kwargs)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        ids = " ".join(f"{f}={record.__dict__[f]}" for f in ID_FIELDS if f in record.__dict__)
        return f"{line} {ids}" if ids else line


class JsonFormatter(_JsonFormatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, pid, message, the ids,
    any `extra` fields, and `exc_info` with the traceback."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("fmt", "%(levelname)s %(name)s %(process)d %(message)s")
        kwargs.setdefault(
            "rename_fields", {"levelname": "level", "name": "logger", "process": "pid"}
        )
        kwargs.setdefault("timestamp", "time")
        # Django puts the request object on its records: its repr includes the query string.
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "request"])
        super().__init__(**kwargs)


# --- HTTP ---------------------------------------------------------------------------
REQUEST_ID_HEADER = "X-Request-ID"
# What a proxy's id may look like (a UUID, a trace id); anything else is replaced.
_WELL_FORMED_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

access_logger = logging.getLogger("realtime.requests")


def request_id_for(request: HttpRequest) -> str:
    """The incoming X-Request-ID if it is well formed, else a new id."""
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    return incoming if _WELL_FORMED_REQUEST_ID.fullmatch(incoming) else new_id()


class RequestIdMiddleware(SyncAndAsyncMiddleware):
    """Gives each request an id (the proxy's, or a new one), logged and echoed back.

    Every log line of the request carries it, the streaming of an async
    response included, and one line per request (`realtime.requests`) says how
    it went. Put it first: even a redirect by a later middleware gets an id.
    """

    # Polled by load balancers and served for every page: no access line for these.
    quiet_path_prefixes: tuple[str, ...] = ("/healthz", "/static/")

    def call(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        with _request_id_bound(request):
            response = self.get_response(request)
        return self._finish(request, response, started)

    async def acall(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        with _request_id_bound(request):
            response = await self.get_response(request)
        return self._finish(request, response, started)

    def _finish(self, request: HttpRequest, response: HttpResponse, started: float):
        response[REQUEST_ID_HEADER] = request.request_id
        if getattr(response, "is_async", False):
            # Sent after this returns, outside the bound ids.
            response.streaming_content = _streamed_with_id(
                response.streaming_content, request.request_id
            )
        if not request.path.startswith(self.quiet_path_prefixes):
            # Time to the response's start: a stream goes on after it.
            access_logger.info(
                "request method=%s path=%s status=%s duration_ms=%.1f",
                request.method,
                # Escaped: a path can carry line breaks and terminal control codes.
                request.path.encode("unicode_escape").decode("ascii"),
                response.status_code,
                (time.perf_counter() - started) * 1000,
                extra={"request_id": request.request_id},
            )
        return response


@contextlib.contextmanager
def _request_id_bound(request: HttpRequest):
    """The request's id on its log lines, and on nothing after it (threads serve many)."""
    request.request_id = request_id_for(request)
    token = _ids.set({**current_ids(), "request_id": request.request_id})
    try:
        yield
    finally:
        _ids.reset(token)


async def _streamed_with_id(content: AsyncIterator[bytes], request_id: str):
    # Runs in the task that sends the response, which serves this request alone.
    bind(request_id=request_id)
    async for chunk in content:
        yield chunk
