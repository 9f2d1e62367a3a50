"""Log lines of the real app: the request, socket or run each belongs to, and no content.

Records are captured with the same ids filter the console handler has.
"""

from __future__ import annotations

import json
import logging

import pytest
from django.test import AsyncClient, Client

from realtime import runs
from realtime.log_context import ContextFilter
from tests.consumers.conftest import connect, make_user_with_token

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]

HEX_ID = 32


@pytest.fixture
def logs(caplog):
    caplog.handler.addFilter(ContextFilter())
    caplog.set_level(logging.INFO)
    return caplog


def lines(caplog, starting: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(starting)]


def only(caplog, starting: str) -> logging.LogRecord:
    found = lines(caplog, starting)
    assert len(found) == 1, [r.getMessage() for r in caplog.records]
    return found[0]


@pytest.fixture
async def alice(drain_replies):
    return await make_user_with_token("alice")


async def post_sse(token: str, content: str, **headers):
    """POST a message over SSE and read the reply to its end; return the response."""
    response = await AsyncClient().post(
        "/api/chat/stream",
        data=json.dumps({"content": content}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}", **headers},
    )
    body = b"".join([chunk async for chunk in response.streaming_content])
    assert b'"type":"complete"' in body
    return response


# --- HTTP: request ids ----------------------------------------------------------------
def test_a_well_formed_incoming_request_id_is_echoed_back():
    response = Client().get("/healthz", headers={"X-Request-ID": "lb-7f3a.12"})
    assert response["X-Request-ID"] == "lb-7f3a.12"


def test_a_request_without_a_usable_id_gets_a_new_one_each_time():
    first = Client().get("/healthz")["X-Request-ID"]
    second = Client().get("/healthz", headers={"X-Request-ID": "no spaces please"})["X-Request-ID"]
    assert len(first) == len(second) == HEX_ID
    assert first != second


async def test_a_requests_log_lines_carry_its_request_id(alice, logs):
    _, token = alice
    response = await post_sse(token, "tag me", **{"X-Request-ID": "req-42"})
    await runs.wait_all()

    assert response["X-Request-ID"] == "req-42"
    started = only(logs, "reply started")
    access = only(logs, "request method=POST path=/api/chat/stream status=200")
    assert started.request_id == access.request_id == "req-42"


def test_health_checks_write_no_access_line(logs):
    Client().get("/healthz")
    assert lines(logs, "request ") == []


# --- sockets and runs -----------------------------------------------------------------
async def test_a_replys_log_lines_carry_its_run_id_and_not_the_starters_id(alice, logs):
    _, token = alice
    chat = await connect(token)
    await chat.send({"content": "follow my run"})
    complete = (await chat.receive_until("complete"))[-1]
    await chat.close()
    await runs.wait_all()

    finished = only(logs, "reply finished")
    assert finished.run_id == f"reply:{complete['message_id']}"
    assert not hasattr(finished, "socket_id")
    started = only(logs, "reply started")
    assert len(started.socket_id) == HEX_ID
    assert not hasattr(started, "run_id")


async def test_a_retry_before_the_first_token_is_logged_with_the_socket_id(alice, logs, settings):
    settings.OPENAI_MODEL = f"retry-log-{id(logs)}:fault=429-retry=0.05x1"
    _, token = alice
    chat = await connect(token)
    await chat.send({"content": "retry me"})
    await chat.receive_until("complete")
    await chat.close()
    await runs.wait_all()

    retry = only(logs, "llm retry")
    assert retry.socket_id == only(logs, "reply started").socket_id


async def test_two_sockets_log_under_different_ids(alice, logs):
    _, token = alice
    for content in ("first socket", "second socket"):
        chat = await connect(token)
        await chat.send({"content": content})
        await chat.receive_until("complete")
        await chat.close()
    await runs.wait_all()

    first, second = lines(logs, "reply started")
    assert first.socket_id != second.socket_id


# --- content ----------------------------------------------------------------------------
async def test_message_content_never_reaches_the_log_at_info(alice, logs):
    canary = "zebra-canary-4711"
    _, token = alice
    await post_sse(token, f"over sse {canary}")
    chat = await connect(token)
    await chat.send({"content": f"over the socket {canary}"})
    complete = (await chat.receive_until("complete"))[-1]
    await chat.close()
    await runs.wait_all()

    assert canary in complete["content"]  # the model echoed it: its output is covered too
    assert len(logs.records) >= 4
    for logged in logs.records:
        assert canary not in logged.getMessage()
        assert canary not in json.dumps(logged.__dict__, default=str)
