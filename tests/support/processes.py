"""Start real fakeai and daphne processes for integration, CLI and browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import psycopg
import redis

from tests.support import services

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
# Processes sharing Redis must share a key; settings refuse to start without one.
TEST_SECRET_KEY = "test-only-secret-key-shared-by-the-instances-of-one-test-cluster"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, *, process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Poll until the URL answers; fail at once if the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def fakeai(*, ttft_ms: int = 0, tps: int = 0, tokens: int = 12) -> Iterator[str]:
    """A fakeai server; yields its base URL ending in /v1."""
    port = free_port()
    process = subprocess.Popen(
        [PYTHON, "-m", "fakeai", "--port", str(port),
         "--ttft-ms", str(ttft_ms), "--tps", str(tps), "--tokens", str(tokens)],
        cwd=ROOT,
    )  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v1/models", process=process)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(process)


def site_env(*, fakeai_url: str, database_url: str, extra: dict | None = None) -> dict:
    """The environment of a site's processes; with REDIS_URL in `extra` they share a key."""
    env = {k: v for k, v in os.environ.items() if k not in {"OPENAI_API_KEY", "REDIS_URL"}}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "realtime_site.settings",
            "OPENAI_BASE_URL": fakeai_url,
            "FAKEAI_URL": fakeai_url,
            "DATABASE_URL": database_url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    if env.get("REDIS_URL"):
        env.setdefault("SECRET_KEY", TEST_SECRET_KEY)
    return env


def manage(*args: str, env: dict) -> str:
    """Run a management command against the site's environment; return stdout."""
    result = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout


def create_user(username: str, *, env: dict, password: str = "pass-Word-123") -> None:
    """Create a user in the site's database."""
    manage(
        "shell", "--no-imports", "-c",
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_user({username!r}, password={password!r})",
        env=env,
    )  # fmt: skip


def create_user_with_token(username: str, *, env: dict, password: str = "pass-Word-123") -> str:
    """Create a user in the site's database; return a new API token for it."""
    create_user(username, env=env, password=password)
    return manage("create_api_token", username, env=env).strip()


@contextmanager
def daphne(*, env: dict, port: int | None = None, stderr: IO | None = None) -> Iterator[str]:
    """A real daphne process serving the site; yields http://127.0.0.1:PORT.

    Its log goes to `stderr` (an open file) if given, else to the test run's.
    """
    port = port or free_port()
    process = subprocess.Popen(
        [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
         "realtime_site.asgi:application"],
        cwd=ROOT, env=env, stderr=stderr,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    _servers[url] = process
    try:
        wait_for_http(f"{url}/healthz", process=process)
        yield url
    finally:
        _servers.pop(url, None)
        stop(process)


_servers: dict[str, subprocess.Popen] = {}


def pid_of(url: str) -> int:
    """The pid of the daphne serving `url` (to signal or kill it)."""
    return _servers[url].pid


def is_running(url: str) -> bool:
    """True while the daphne serving `url` has not exited."""
    return _servers[url].poll() is None


@contextmanager
def site_for_this_pass(
    tmp: Path, *, fakeai_url: str, name: str, extra: dict | None = None
) -> Iterator[tuple[str, dict, Path]]:
    """A migrated daphne in the suite's current mode; yields (url, env, its log's path).

    SQLite and the in-memory layer, or, in the services pass (DATABASE_URL set),
    a fresh PostgreSQL database of its own (`name`) and the pass's Redis (flushed).
    """
    extra = dict(extra or {})
    pg_name = None
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        pg_name = services.pg_database(name)
        with psycopg.connect(services.PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {pg_name}")
        database_url = f"{services.PG_URL}/{pg_name}"
        extra["REDIS_URL"] = os.environ["REDIS_URL"]
        redis.Redis.from_url(extra["REDIS_URL"]).flushdb()
    else:
        database_url = f"sqlite:///{tmp / 'db.sqlite3'}"
    env = site_env(fakeai_url=fakeai_url, database_url=database_url, extra=extra)
    manage("migrate", "--noinput", env=env)
    log_path = tmp / "daphne.log"
    try:
        with log_path.open("w") as log, daphne(env=env, stderr=log) as url:
            yield url, env, log_path
    finally:
        if pg_name is not None:
            with psycopg.connect(services.PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")
