"""A real daphne process: SSE over HTTP, killed and stopped servers, resume after restart."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
import urllib.request

import pytest

from tests.support import processes
from tests.support.chat_socket import recv, recv_until, ws_connect

SLOW_MODEL = "fakeai:ttft=50,tps=25,tokens=60"


@pytest.fixture
def slow_site(tmp_path, fakeai_url):
    """A daphne whose default model streams slowly; yields (env, start) to (re)start it."""
    db_path = tmp_path / "db.sqlite3"
    env = processes.site_env(
        fakeai_url=fakeai_url,
        database_url=f"sqlite:///{db_path}",
        extra={"OPENAI_MODEL": SLOW_MODEL, "REPLY_PERSIST_INTERVAL_MS": "100"},
    )
    processes.manage("migrate", "--noinput", env=env)
    token = processes.create_user_with_token("slow", env=env)
    return env, token, db_path


def message_row(db_path, message_id: int) -> tuple[str, str, str]:
    with sqlite3.connect(db_path) as db:
        return db.execute(
            "select status, error_code, content from chat_message where id = ?", (message_id,)
        ).fetchone()


def test_sse_tokens_reach_the_client_before_the_reply_finishes(slow_site):
    env, token, _ = slow_site
    with processes.daphne(env=env) as url:
        request = urllib.request.Request(
            url + "/api/chat/stream",
            data=json.dumps({"content": "stream over http"}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        arrivals = []
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.headers["Content-Type"] == "text/event-stream"
            assert response.headers["X-Accel-Buffering"] == "no"
            for line in response:
                if line.startswith(b"data: "):
                    arrivals.append((time.monotonic(), json.loads(line[6:])))

    first_token_at = next(t for t, e in arrivals if e["type"] == "token")
    complete_at, complete = arrivals[-1]
    assert complete["type"] == "complete" and complete["done"] is True
    # 60 tokens at 25/s take over two seconds: the first must not wait for the last.
    assert complete_at - first_token_at > 1.0


def test_partial_answer_survives_a_killed_server_and_resume_reports_it(slow_site):
    env, token, db_path = slow_site
    with processes.daphne(env=env) as url, ws_connect(url, token) as ws:
        ws.send(json.dumps({"content": "kill the server"}))
        ack = recv(ws, timeout=10)
        seen = [e for e in recv_until(ws, "token") if e["type"] == "token"]
        while len(seen) < 10:
            seen.append(recv(ws, timeout=10))
        pid = processes.pid_of(url)
        os.kill(pid, signal.SIGKILL)

    status, _, saved = message_row(db_path, ack["message_id"])
    assert status == "streaming"
    assert saved and saved.startswith("Echo: kill the server")

    with processes.daphne(env=env) as url, ws_connect(url, token) as ws:
        ws.send(json.dumps({"type": "resume", "message_id": ack["message_id"], "after": -1}))
        error = recv(ws, timeout=10)
    assert error["type"] == "error" and error["code"] == "interrupted"
    assert error["content"] == saved
    assert message_row(db_path, ack["message_id"])[:2] == ("error", "interrupted")


def test_sigterm_mid_reply_saves_the_partial_answer_as_interrupted(slow_site):
    env, token, db_path = slow_site
    with processes.daphne(env=env) as url, ws_connect(url, token) as ws:
        ws.send(json.dumps({"content": "stop the server"}))
        ack = recv(ws, timeout=10)
        seen = [e for e in recv_until(ws, "token") if e["type"] == "token"]
        os.kill(processes.pid_of(url), signal.SIGTERM)
        received = recv_until(ws, "error")
    status, code, saved = message_row(db_path, ack["message_id"])
    assert (status, code) == ("error", "interrupted")
    assert saved.startswith("".join(e["content"] for e in seen))
    assert received[-1]["code"] == "interrupted" and received[-1]["content"] == saved
