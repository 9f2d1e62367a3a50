"""The production profile (docs/deploy.md) as real processes see it."""

from __future__ import annotations

import http.client
import subprocess
from urllib.parse import urlsplit

import pytest

from tests.support import processes

# BEHIND_TLS_PROXY=true is the switch; the rest names the site (docs/deploy.md).
PRODUCTION = {
    "DEBUG": "false",
    "ALLOWED_HOSTS": "chat.example.com,127.0.0.1",
    "CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
    "BEHIND_TLS_PROXY": "true",
    "SECRET_KEY": processes.TEST_SECRET_KEY,
}


def manage_env(tmp_path, fakeai_url: str, **extra: str) -> dict:
    return processes.site_env(
        fakeai_url=fakeai_url, database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}", extra=extra
    )


def run_manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [processes.PYTHON, "manage.py", *args],
        cwd=processes.ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip


def test_a_multi_instance_site_refuses_to_start_without_a_secret_key(tmp_path, fakeai_url):
    env = manage_env(tmp_path, fakeai_url, REDIS_URL="redis://127.0.0.1:6379/0")
    env.pop("SECRET_KEY")

    result = run_manage("check", env=env)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "set SECRET_KEY, the same on every process" in result.stderr


def test_the_production_profile_passes_the_deployment_checklist(tmp_path, fakeai_url):
    env = manage_env(tmp_path, fakeai_url, REDIS_URL="redis://127.0.0.1:6379/0", **PRODUCTION)

    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.fixture(scope="module")
def production_site(tmp_path_factory, fakeai_url):
    db_path = tmp_path_factory.mktemp("production") / "db.sqlite3"
    env = processes.site_env(
        fakeai_url=fakeai_url, database_url=f"sqlite:///{db_path}", extra=PRODUCTION
    )
    with processes.daphne(env=env) as url:
        yield urlsplit(url)


def get(site, path: str, **headers: str) -> http.client.HTTPResponse:
    """One request, redirects not followed, as the TLS proxy would forward it."""
    connection = http.client.HTTPConnection(site.hostname, site.port, timeout=10)
    connection.request("GET", path, headers={"Host": "chat.example.com", **headers})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_behind_the_proxy_plain_http_is_redirected_to_https(production_site):
    response = get(production_site, "/accounts/login/")

    assert response.status == 301
    assert response.getheader("Location") == "https://chat.example.com/accounts/login/"


def test_https_pages_get_hsts_and_secure_cookies(production_site):
    response = get(production_site, "/accounts/login/", **{"X-Forwarded-Proto": "https"})

    assert response.status == 200
    assert response.getheader("Strict-Transport-Security") == (
        "max-age=31536000; includeSubDomains"
    )
    csrf_cookie = response.getheader("Set-Cookie")
    assert csrf_cookie.startswith("csrftoken=") and "Secure" in csrf_cookie
    assert "connect-src 'self' wss://chat.example.com" in response.getheader(
        "Content-Security-Policy"
    )


def test_the_health_check_answers_plain_http_for_the_load_balancer(production_site):
    response = get(production_site, "/healthz")

    assert response.status == 200
