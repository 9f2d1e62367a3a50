"""Shared fixtures: a real fakeai process, a live daphne site, clean per-test state."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.support import processes


@pytest.fixture(scope="session")
def django_db_modify_db_settings(tmp_path_factory) -> None:
    """SQLite's test database is a WAL file, as in production, not shared-cache memory.

    In shared-cache memory a read beside another connection's write fails at
    once with "database table is locked"; the site's own SQLite (WAL) lets
    readers go on beside the writer, and the database threads rely on that.
    """
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        path = tmp_path_factory.mktemp("db") / "test.sqlite3"
        database.setdefault("TEST", {})["NAME"] = str(path)


@pytest.fixture(scope="session")
def fakeai_url() -> str:
    """A fakeai process for the whole run (fast by default; tests slow it per request)."""
    with processes.fakeai(ttft_ms=0, tps=0, tokens=12) as url:
        yield url


@dataclass
class LiveSite:
    url: str
    fakeai_url: str
    env: dict

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)

    def create_user(self, username: str, password: str = "pass-Word-123") -> str:
        """Create a user through manage.py; return a fresh API token for it."""
        return processes.create_user_with_token(username, env=self.env, password=password)


@pytest.fixture(scope="session")
def live_site(tmp_path_factory, fakeai_url) -> LiveSite:
    """A real daphne process on a migrated SQLite file, talking to fakeai."""
    db_path = tmp_path_factory.mktemp("live") / "db.sqlite3"
    env = processes.site_env(fakeai_url=fakeai_url, database_url=f"sqlite:///{db_path}")
    processes.manage("migrate", "--noinput", env=env)
    with processes.daphne(env=env) as url:
        yield LiveSite(url=url, fakeai_url=fakeai_url, env=env)
