"""A daphne on PostgreSQL keeps no database connection for HTTP requests that have ended.

Django runs each ASGI request's sync code on a thread of its own; with
CONN_MAX_AGE its connection outlived the request until garbage collection, and
a burst of API calls held dozens of PostgreSQL connections (the fuzz tests hit
"too many clients"). Always runs against the PostgreSQL on 127.0.0.1.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from tests.support import processes, services

DB_NAME = services.pg_database("realtime_connections_test")


@pytest.fixture(scope="module")
def site_on_postgres(fakeai_url):
    with psycopg.connect(services.PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DB_NAME}")
    env = processes.site_env(fakeai_url=fakeai_url, database_url=f"{services.PG_URL}/{DB_NAME}")
    processes.manage("migrate", "--noinput", env=env)
    token = processes.create_user_with_token("conn", env=env)
    with processes.daphne(env=env) as url:
        yield url, token
    with psycopg.connect(services.PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


def open_connections() -> int:
    with psycopg.connect(services.PG_ADMIN_URL) as admin:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
        return admin.execute(query, (DB_NAME,)).fetchone()[0]


def api_call(url: str, token: str) -> int:
    """An API request whose token is checked in the request's own thread."""
    request = urllib.request.Request(
        f"{url}/api/chat/stream/1/?after=x", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as refused:
        return refused.code


def test_api_requests_that_ended_hold_no_database_connection(site_on_postgres):
    url, token = site_on_postgres
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: api_call(url, token), range(40)))
    assert statuses == [400] * 40

    # The last requests' connections close just after their responses are sent.
    deadline = time.monotonic() + 5
    while (count := open_connections()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert count == 0
