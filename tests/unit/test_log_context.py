"""Log ids and formats: what one log line carries in plain text and in JSON."""

from __future__ import annotations

import contextvars
import json
import logging
import sys

import pytest
from django.http import HttpResponse, StreamingHttpResponse
from django.test import RequestFactory

from realtime import log_context
from realtime.log_context import (
    ContextFilter,
    JsonFormatter,
    PlainFormatter,
    RequestIdMiddleware,
)


def record(message: str = "reply finished message_id=7", *, exc_info=None, **extra):
    """A record as the handler sees it: built, then passed through the ids filter."""
    made = logging.LogRecord("chat.services", logging.INFO, __file__, 1, message, (), exc_info)
    made.__dict__.update(extra)
    ContextFilter().filter(made)
    return made


def in_own_context(work):
    """Run `work` in a copy of the context, so ids bound there stay there."""
    return contextvars.copy_context().run(work)


def test_a_json_line_has_time_level_logger_message_and_the_ids():
    def work():
        log_context.bind(request_id="req-1")
        log_context.bind(run_id="reply:7")
        return json.loads(JsonFormatter().format(record()))

    line = in_own_context(work)
    assert line["message"] == "reply finished message_id=7"
    assert line["level"] == "INFO"
    assert line["logger"] == "chat.services"
    assert line["request_id"] == "req-1"
    assert line["run_id"] == "reply:7"
    assert line["time"].endswith("+00:00")
    assert isinstance(line["pid"], int)


def test_a_json_line_outside_any_request_has_no_id_fields():
    line = in_own_context(lambda: json.loads(JsonFormatter().format(record())))
    assert not {"request_id", "socket_id", "run_id"} & line.keys()


def test_a_json_line_carries_the_traceback_and_extra_fields():
    try:
        raise ValueError("boom")
    except ValueError:
        failed = record("save failed", exc_info=sys.exc_info(), attempt=2)
    line = json.loads(JsonFormatter().format(failed))
    assert "ValueError: boom" in line["exc_info"]
    assert line["attempt"] == 2


def test_a_json_line_leaves_out_the_request_object_django_attaches():
    line = json.loads(JsonFormatter().format(record(request=RequestFactory().get("/?token=x"))))
    assert "request" not in line
    assert "token=x" not in json.dumps(line)


def test_a_plain_line_has_the_ids_after_the_message_and_before_a_traceback():
    def work():
        log_context.bind(socket_id="s1")
        try:
            raise ValueError("boom")
        except ValueError:
            return PlainFormatter().format(record("follower failed", exc_info=sys.exc_info()))

    first, *rest = in_own_context(work).splitlines()
    assert first.endswith(" INFO chat.services follower failed socket_id=s1")
    assert rest[0] == "Traceback (most recent call last):"


def test_an_id_given_in_extra_wins_over_the_context():
    def work():
        log_context.bind(run_id="reply:1")
        return record(run_id="reply:2").run_id

    assert in_own_context(work) == "reply:2"


def test_a_fresh_context_keeps_the_log_ids_and_nothing_else():
    other = contextvars.ContextVar("other", default="unset")

    def work():
        other.set("set")
        log_context.bind(socket_id="s1")
        return log_context.fresh_context()

    fresh = in_own_context(work)
    assert fresh.run(log_context.current_ids) == {"socket_id": "s1"}
    assert fresh.run(other.get) == "unset"


@pytest.mark.parametrize(
    "incoming", ["3f2b8c1e-4c1d-4a55-9a8e-0d6f0c2b7e11", "a", "trace.7:span-9_x", "A" * 128]
)
def test_a_well_formed_incoming_request_id_is_kept(incoming):
    request = RequestFactory().get("/", HTTP_X_REQUEST_ID=incoming)
    assert log_context.request_id_for(request) == incoming


@pytest.mark.parametrize(
    "incoming", ["", "A" * 129, "two words", "line\nbreak", "-leading-dash", "<script>", "é"]
)
def test_a_malformed_incoming_request_id_is_replaced_by_a_new_one(incoming):
    request = RequestFactory().get("/", HTTP_X_REQUEST_ID=incoming)
    replaced = log_context.request_id_for(request)
    assert replaced != incoming
    assert len(replaced) == 32 and int(replaced, 16) >= 0


# --- the request id middleware ----------------------------------------------------------
def streaming_view(*, is_async: bool):
    """A view whose response logs a line while it is being sent."""

    async def body():
        logging.getLogger("chat.views").info("streaming a reply")
        yield b"data: {}\n\n"

    def view(request):
        return StreamingHttpResponse(body())

    async def async_view(request):
        return view(request)

    return async_view if is_async else view


@pytest.mark.parametrize("is_async", [True, False], ids=["async chain", "sync chain"])
async def test_lines_logged_while_a_response_streams_carry_its_request_id(caplog, is_async):
    caplog.handler.addFilter(ContextFilter())
    caplog.set_level(logging.INFO)
    middleware = RequestIdMiddleware(streaming_view(is_async=is_async))
    request = RequestFactory().get("/api/chat/stream", HTTP_X_REQUEST_ID="stream-1")

    response = await middleware(request) if is_async else middleware(request)
    assert [chunk async for chunk in response.streaming_content] == [b"data: {}\n\n"]

    (streamed,) = [r for r in caplog.records if r.getMessage() == "streaming a reply"]
    assert streamed.request_id == "stream-1"
    assert response["X-Request-ID"] == "stream-1"


def test_the_request_id_is_gone_once_a_sync_request_is_done():
    middleware = RequestIdMiddleware(lambda request: HttpResponse("ok"))

    def work():
        middleware(RequestFactory().get("/", HTTP_X_REQUEST_ID="done-1"))
        return log_context.current_ids()

    assert in_own_context(work) == {}
