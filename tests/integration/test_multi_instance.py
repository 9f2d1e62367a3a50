"""Two daphne processes sharing PostgreSQL and Redis, as behind a load balancer.

These always run against the PostgreSQL and Redis on 127.0.0.1 (present on every
machine and in CI), whatever mode the rest of the suite runs in.
"""

from __future__ import annotations

import http.cookiejar
import json
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import psycopg
import pytest
import redis
from websockets.exceptions import ConnectionClosed

from tests.support import processes, services
from tests.support.chat_socket import recv, recv_until, ws_connect
from tests.support.chat_tokens import assert_tokens_in_order

PG_ADMIN_URL = services.PG_ADMIN_URL
DB_NAME = services.pg_database("realtime_multi_instance_test")
REDIS_URL = services.redis_url("cluster")
SLOW_MODEL = "fakeai:ttft=50,tps=30,tokens=90"


class Cluster(NamedTuple):
    """The two instances' URLs, a token of the user "multi", and their environment."""

    first: str
    second: str
    token: str
    env: dict


@pytest.fixture(scope="module")
def cluster(fakeai_url):
    """Two daphne instances on one fresh PostgreSQL database and one Redis."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DB_NAME}")
    redis.Redis.from_url(REDIS_URL).flushdb()
    env = processes.site_env(
        fakeai_url=fakeai_url,
        database_url=f"{services.PG_URL}/{DB_NAME}",
        extra={
            "REDIS_URL": REDIS_URL,
            "OPENAI_MODEL": SLOW_MODEL,
            "DB_POOL_MAX_SIZE": "6",
            "CHAT_RATE_LIMIT_PER_MINUTE": "1000",
        },
    )
    processes.manage("migrate", "--noinput", env=env)
    token = processes.create_user_with_token("multi", env=env)
    with processes.daphne(env=env) as first, processes.daphne(env=env) as second:
        yield Cluster(first, second, token, env)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


def test_reply_started_on_one_instance_resumes_on_the_other(cluster):
    first, second, token, _ = cluster
    with ws_connect(first, token) as ws:
        ws.send(json.dumps({"content": "switch servers"}))
        ack = recv(ws)
        seen = [e for e in recv_until(ws, "token") if e["type"] == "token"]
        while len(seen) < 5:
            seen.append(recv(ws))

    after = seen[-1]["index"]
    with ws_connect(second, token) as ws:
        ws.send(json.dumps({"type": "resume", "message_id": ack["message_id"], "after": after}))
        rest = recv_until(ws, "complete")

    complete = rest[-1]
    text = assert_tokens_in_order(rest, after=after, total=complete["total_tokens"])
    assert complete["content"] == "".join(t["content"] for t in seen) + text
    assert complete["content"].startswith("Echo: switch servers (turn 1)")


def test_cancel_sent_to_another_instance_stops_the_reply(cluster):
    first, second, token, _ = cluster
    with ws_connect(first, token) as origin, ws_connect(second, token) as other:
        origin.send(json.dumps({"content": "cancel me from elsewhere"}))
        ack = recv(origin)
        recv_until(origin, "token")
        other.send(json.dumps({"type": "cancel", "message_id": ack["message_id"]}))
        cancelled = recv_until(origin, "cancelled")[-1]
    assert cancelled["message_id"] == ack["message_id"]
    assert cancelled["content"].startswith("Echo: ")
    assert len(cancelled["content"].split()) < 90
    assert cancelled["metrics"]["tokens"] < 90


def test_idle_socket_over_redis_survives_past_the_redis_client_timeout(cluster):
    # redis-py 8's default 5 s socket timeout killed idle consumers (PITFALLS.md).
    first, _, token, _ = cluster
    with ws_connect(first, token) as ws:
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            with pytest.raises(TimeoutError):
                ws.recv(timeout=deadline - time.monotonic())
        ws.send(json.dumps({"type": "ping"}))
        assert recv(ws)["type"] == "pong"


# --- sockets end with their credentials, on every instance ------------------------------
def close_code(ws) -> int:
    """Read until the server closes the socket; its close code."""
    try:
        while True:
            ws.recv(timeout=15)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else 1006


class BrowserSession:
    """A logged-in browser session on one instance, driven over plain HTTP."""

    def __init__(self, url: str, username: str, password: str = "pass-Word-123") -> None:
        self.url = url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.opener.open(f"{url}/accounts/login/", timeout=10).close()
        self.post("/accounts/login/", {"username": username, "password": password})
        assert self.cookie("sessionid"), "login failed"

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    def post(self, path: str, fields: dict) -> None:
        body = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": self.cookie("csrftoken")})
        self.opener.open(f"{self.url}{path}", data=body.encode(), timeout=10).close()


def test_a_token_revoked_on_one_instance_closes_its_sockets_on_both(cluster):
    first, second, _, _ = cluster
    processes.create_user("revoker", env=cluster.env)
    token = processes.manage("create_api_token", "revoker", env=cluster.env).strip()
    token_id = processes.manage(
        "shell", "--no-imports", "-c",
        "from accounts.models import ApiToken; "
        "print(ApiToken.objects.get(user__username='revoker').pk)",
        env=cluster.env,
    ).strip()  # fmt: skip
    browser = BrowserSession(first, "revoker")

    with ws_connect(first, token) as here, ws_connect(second, token) as there:
        browser.post("/accounts/tokens/", {"revoke": token_id})  # a sync view under daphne

        assert close_code(here) == 4401
        assert close_code(there) == 4401


def test_a_user_deactivated_from_the_shell_loses_their_sockets_on_both_instances(cluster):
    first, second, token, _ = cluster
    processes.create_user("leaver", env=cluster.env)
    leaver_token = processes.manage("create_api_token", "leaver", env=cluster.env).strip()

    with (
        ws_connect(first, leaver_token) as here,
        ws_connect(second, leaver_token) as there,
        ws_connect(second, token) as bystander,
    ):
        processes.manage(
            "shell", "--no-imports", "-c",
            "from django.contrib.auth import get_user_model; "
            "user = get_user_model().objects.get(username='leaver'); "
            "user.is_active = False; user.save()",
            env=cluster.env,
        )  # fmt: skip

        assert close_code(here) == 4401
        assert close_code(there) == 4401
        bystander.send(json.dumps({"type": "ping"}))
        assert recv(bystander)["type"] == "pong"


def database_connections() -> int:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        return admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (DB_NAME,)
        ).fetchone()[0]


def test_database_connections_stay_within_the_pools_however_many_requests(cluster):
    # Each HTTP request runs on a thread of its own: a connection kept per
    # thread would add one per request. Each process keeps at most its pool.
    first, second, token, _ = cluster

    def ask(number: int) -> bytes:
        request = urllib.request.Request(
            (first, second)[number % 2] + "/api/chat/stream",
            data=json.dumps({"content": f"request {number}"}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    with ThreadPoolExecutor(max_workers=30) as pool:
        bodies = list(pool.map(ask, range(30)))
    assert all(b'"type":"complete"' in body for body in bodies)
    assert database_connections() <= 2 * 6


# --- every tab of a person, whichever instance it is on ----------------------------------
@pytest.mark.services
def test_a_message_and_its_live_reply_reach_a_tab_on_the_other_instance(cluster):
    first, second, token, _ = cluster
    with ws_connect(first, token) as sender, ws_connect(second, token) as elsewhere:
        sender.send(json.dumps({"content": "seen from the other server"}))
        ack = recv(sender)

        heard = recv(elsewhere)
        assert heard == {
            "type": "user_message",
            "conversation_id": ack["conversation_id"],
            "title": "seen from the other server",
            "user_message_id": ack["user_message_id"],
            "content": "seen from the other server",
            "message_id": ack["message_id"],
        }
        elsewhere.send(json.dumps({"type": "resume", "message_id": heard["message_id"]}))
        followed = recv_until(elsewhere, "complete")
        sent = recv_until(sender, "complete")

    complete = followed[-1]
    assert complete == sent[-1]
    assert assert_tokens_in_order(followed, total=complete["total_tokens"]) == complete["content"]
    # Live, not replayed at the end: 90 tokens at 30/s arrive in many frames.
    assert len([e for e in followed if e["type"] == "token"]) > 10
    assert "user_message" not in [e["type"] for e in sent]
