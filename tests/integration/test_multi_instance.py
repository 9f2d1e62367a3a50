"""Two daphne processes sharing PostgreSQL and Redis, as behind a load balancer.

These always run against the PostgreSQL and Redis on 127.0.0.1 (present on every
machine and in CI), whatever mode the rest of the suite runs in.
"""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import redis

from tests.support import processes, services
from tests.support.chat_socket import recv, recv_until, ws_connect
from tests.support.chat_tokens import assert_tokens_in_order

PG_ADMIN_URL = services.PG_ADMIN_URL
DB_NAME = services.pg_database("realtime_multi_instance_test")
REDIS_URL = services.redis_url("cluster")
SLOW_MODEL = "fakeai:ttft=50,tps=30,tokens=90"


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
        yield first, second, token
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


def test_reply_started_on_one_instance_resumes_on_the_other(cluster):
    first, second, token = cluster
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
    first, second, token = cluster
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
    first, _, token = cluster
    with ws_connect(first, token) as ws:
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            with pytest.raises(TimeoutError):
                ws.recv(timeout=deadline - time.monotonic())
        ws.send(json.dumps({"type": "ping"}))
        assert recv(ws)["type"] == "pong"


def database_connections() -> int:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        return admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (DB_NAME,)
        ).fetchone()[0]


def test_database_connections_stay_within_the_pools_however_many_requests(cluster):
    # Each HTTP request runs on a thread of its own: a connection kept per
    # thread would add one per request. Each process keeps at most its pool.
    first, second, token = cluster

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
