"""Every response under /api/ is JSON, errors included; pages keep HTML."""

from __future__ import annotations

import json
import logging

import pytest
from django.test import AsyncClient, Client

from tests.consumers.conftest import make_user_with_token

pytestmark = pytest.mark.django_db(transaction=True)


def error_of(response) -> dict:
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"type", "code", "message", "retryable"}
    assert body["type"] == "error"
    return body


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def test_an_unknown_api_path_is_a_json_404():
    response = await AsyncClient().get("/api/no-such-thing")
    assert response.status_code == 404
    assert error_of(response) == {
        "type": "error",
        "code": "not_found",
        "message": "Not found.",
        "retryable": False,
    }


async def test_a_non_numeric_id_in_an_api_path_is_a_json_404():
    response = await AsyncClient().get("/api/chat/stream/abc/")
    assert (response.status_code, error_of(response)["code"]) == (404, "not_found")


def test_the_sync_handler_answers_json_too():
    response = Client().get("/api/no-such-thing")
    assert (response.status_code, error_of(response)["code"]) == (404, "not_found")


async def test_pages_outside_the_api_keep_html_errors():
    response = await AsyncClient().get("/no-such-page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


async def test_a_wrong_method_is_a_json_405_naming_the_allowed_one():
    response = await AsyncClient().get("/api/chat/stream")
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response["X-Content-Type-Options"] == "nosniff"  # the other layers' headers stay
    assert error_of(response) == {
        "type": "error",
        "code": "method_not_allowed",
        "message": "GET is not allowed here; use POST.",
        "retryable": False,
    }


async def test_anonymous_is_a_json_401_that_says_how_to_authenticate():
    response = await AsyncClient().post(
        "/api/chat/stream", data={"content": "hi"}, content_type="application/json"
    )
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert error_of(response)["code"] == "unauthorized"


async def test_a_csrf_failure_under_the_api_is_a_json_403_saying_why():
    user, _ = await make_user_with_token("alice")
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(user)
    response = await client.post(
        "/api/chat/stream", data={"content": "hi"}, content_type="application/json"
    )
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "csrf_failed"
    assert error["message"] == "CSRF check failed: CSRF cookie not set."


async def test_a_csrf_failure_on_a_page_keeps_djangos_page():
    user, _ = await make_user_with_token("alice")
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(user)
    response = await client.post("/accounts/logout/")
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")


async def test_a_body_over_the_upload_limit_is_a_json_413_and_one_warning(settings, caplog):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    _, token = await make_user_with_token("alice")
    body = json.dumps({"content": "x" * 2000})
    with caplog.at_level(logging.WARNING):
        response = await AsyncClient().post(
            "/api/chat/stream", data=body, content_type="application/json", headers=bearer(token)
        )
    assert response.status_code == 413
    assert error_of(response)["code"] == "too_large"
    # Django alone logs this as a security ERROR with a traceback.
    assert [r.levelname for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert not any(r.exc_info for r in caplog.records)


async def test_a_form_over_the_upload_limit_from_a_browser_is_a_json_413(settings):
    # The CSRF check reads a form body before any view does.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    user, _ = await make_user_with_token("alice")
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(user)
    response = await client.post("/api/chat/stream", data={"content": "x" * 2000})
    assert response.status_code == 413
    assert error_of(response)["code"] == "too_large"


@pytest.mark.urls("tests.consumers.broken_urls")
@pytest.mark.parametrize("debug", [False, True])
async def test_a_bug_in_an_api_view_is_a_json_500_and_the_traceback_stays_in_the_log(
    settings, caplog, debug
):
    settings.DEBUG = debug
    with caplog.at_level(logging.ERROR):
        response = await AsyncClient(raise_request_exception=False).get("/api/broken")
    assert response.status_code == 500
    assert error_of(response) == {
        "type": "error",
        "code": "internal_error",
        "message": "The server failed to answer; try again.",
        "retryable": True,
    }
    assert b"secret detail" not in response.content
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[0] is RuntimeError]
    assert [r.getMessage() for r in logged] == ["Internal Server Error: /api/broken"]


@pytest.mark.urls("tests.consumers.broken_urls")
async def test_a_bug_on_a_page_keeps_an_html_500():
    response = await AsyncClient(raise_request_exception=False).get("/broken")
    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
