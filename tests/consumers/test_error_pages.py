"""Error pages (DEBUG=False): the site's layout, a way back, nothing leaked."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.template.loader import get_template
from django.test import Client

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.consumers.error_urls")]


@pytest.fixture(autouse=True)
def production(settings):
    settings.DEBUG = False


@pytest.fixture
def alice_client() -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(get_user_model().objects.create_user("alice", password="pass-Word-123"))
    return client


def page(response) -> str:
    assert response["Content-Type"].startswith("text/html")
    return response.content.decode()


def test_404_is_in_the_layout_with_a_way_back_for_everyone(alice_client):
    anonymous = page(Client().get("/no/such/page"))
    assert 'data-testid="not-found"' in anonymous and 'class="topbar"' in anonymous
    assert 'href="/accounts/login/" data-testid="error-home"' in anonymous
    logged_in = page(alice_client.get("/no/such/page"))
    assert 'href="/chat/" data-testid="error-home"' in logged_in
    assert 'data-testid="username"' in logged_in


def test_403_says_why_in_the_layout_with_a_way_back(alice_client):
    response = alice_client.get("/fail/403")
    assert response.status_code == 403
    body = page(response)
    assert 'data-testid="forbidden-reason">Only the room&#x27;s owner may do that.<' in body
    assert 'href="/chat/" data-testid="error-home"' in body


def test_400_is_in_the_layout_with_a_way_home(alice_client):
    response = alice_client.get("/fail/400")
    assert response.status_code == 400
    body = page(response)
    assert 'data-testid="bad-request"' in body and 'class="topbar"' in body
    assert 'href="/" data-testid="error-home"' in body
    assert "malformed" not in body


def test_500_is_in_the_layout_and_leaks_nothing(alice_client):
    response = alice_client.get("/fail/500")
    assert response.status_code == 500
    body = page(response)
    assert 'data-testid="server-error"' in body and "/static/css/app.css" in body
    assert 'data-testid="error-retry"' in body and 'href="/" data-testid="error-home"' in body
    assert "secret detail" not in body


@pytest.mark.django_db(False)
@pytest.mark.parametrize("name", ["500.html", "400.html"])
def test_500_and_400_render_with_no_context_no_database_and_no_urls(name, settings):
    # Django renders them without a request; the failure may be the database or the URLconf.
    settings.ROOT_URLCONF = "no.such.urlconf"
    html = get_template(name).render()
    assert "<h1" in html and 'href="/"' in html


def test_a_csrf_failure_on_a_page_is_in_the_layout_with_a_way_back():
    response = Client(enforce_csrf_checks=True).post(
        "/accounts/login/", {"username": "x", "password": "y"}
    )
    assert response.status_code == 403
    body = page(response)
    assert 'data-testid="csrf-failure"' in body and 'class="topbar"' in body
    assert 'href="/accounts/login/" data-testid="error-home"' in body


def test_error_pages_have_no_inline_scripts_or_styles(alice_client):
    for url in ("/no/such/page", "/fail/403", "/fail/400", "/fail/500"):
        body = page(alice_client.get(url))
        assert "<script>" not in body and "style=" not in body and "<style" not in body
