"""/metrics: who may read it, and what a reply, a socket and a run do to the numbers.

Replies go through the real app to a real fakeai process; the numbers are read
from /metrics as Prometheus reads them.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import AsyncClient

from accounts.services import create_api_token
from realtime import runs
from tests.consumers.conftest import connect, make_user_with_token, raw_socket
from tests.support.metrics import Samples

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.services]

METRICS_TOKEN = "metrics-scraper-secret"
SLOW = "fakeai:ttft=0,tps=40,tokens=60"


@pytest.fixture(autouse=True)
def metrics_token(settings):
    settings.METRICS_TOKEN = METRICS_TOKEN


async def scrape() -> Samples:
    response = await AsyncClient().get(
        "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert response.status_code == 200
    return Samples(response.content.decode())


@pytest.fixture
async def alice(drain_replies):
    return await make_user_with_token("alice")


@pytest.fixture
async def staff_client() -> AsyncClient:
    staff = await get_user_model().objects.acreate_user(
        "operator", password="pass-Word-123", is_staff=True
    )
    client = AsyncClient()
    await client.aforce_login(staff)
    return client


# --- who may read it --------------------------------------------------------------------
async def test_a_scraper_with_the_metrics_token_reads_prometheus_text():
    response = await AsyncClient().get(
        "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "no-store" in response["Cache-Control"]
    names = Samples(response.content.decode()).names()
    assert {"realtime_runs_in_flight", "realtime_llm_tokens_total"} <= names


async def test_a_staff_session_reads_the_metrics(staff_client):
    response = await staff_client.get("/metrics")
    assert response.status_code == 200
    assert "realtime_runs_in_flight" in Samples(response.content.decode()).names()


async def test_a_staff_session_reads_them_with_no_metrics_token_configured(staff_client, settings):
    settings.METRICS_TOKEN = ""
    assert (await staff_client.get("/metrics")).status_code == 200


async def test_anonymous_is_refused():
    response = await AsyncClient().get("/metrics")
    assert response.status_code == 403
    assert b"realtime_" not in response.content


async def test_a_logged_in_user_who_is_not_staff_is_refused(alice):
    user, _ = alice
    client = AsyncClient()
    await client.aforce_login(user)
    assert (await client.get("/metrics")).status_code == 403


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {METRICS_TOKEN}x", f"Bearer {METRICS_TOKEN[:-1]}", f"Basic {METRICS_TOKEN}", ""],
)
async def test_a_wrong_metrics_token_is_refused(authorization):
    response = await AsyncClient().get("/metrics", headers={"Authorization": authorization})
    assert response.status_code == 403


async def test_with_no_metrics_token_configured_no_bearer_is_accepted(settings):
    settings.METRICS_TOKEN = ""
    for authorization in ("Bearer ", "Bearer", "Bearer none"):
        response = await AsyncClient().get("/metrics", headers={"Authorization": authorization})
        assert response.status_code == 403


async def test_a_staff_users_api_token_is_not_a_metrics_token():
    staff = await get_user_model().objects.acreate_user("ops", is_staff=True)
    _, api_token = await sync_to_async(create_api_token)(user=staff, name="scraper")
    response = await AsyncClient().get("/metrics", headers={"Authorization": f"Bearer {api_token}"})
    assert response.status_code == 403


# --- what a reply moves -----------------------------------------------------------------
async def test_a_reply_moves_the_counters_and_histograms_by_its_own_amounts(alice):
    _, token = alice
    before = await scrape()
    chat = await connect(token)
    await chat.send({"content": "count me"})
    complete = (await chat.receive_until("complete"))[-1]
    await chat.close()
    await runs.wait_all()
    after = await scrape()

    tokens = complete["total_tokens"]
    assert tokens > 2
    assert after.minus(before, "realtime_runs_total", status="complete") == 1
    assert after.minus(before, "realtime_runs_total", status="error") == 0
    assert after.minus(before, "realtime_runs_total", status="cancelled") == 0
    assert after.minus(before, "realtime_llm_tokens_total") == tokens
    assert after.minus(before, "realtime_llm_time_to_first_token_seconds_count") == 1
    assert after.minus(before, "realtime_llm_stream_seconds_count") == 1
    # One gap between each two tokens.
    assert after.minus(before, "realtime_llm_token_gap_seconds_count") == tokens - 1
    # The histograms hold the times the reply reported (rounded there to 0.01 ms).
    ttft_s = after.minus(before, "realtime_llm_time_to_first_token_seconds_sum")
    total_s = after.minus(before, "realtime_llm_stream_seconds_sum")
    assert ttft_s == pytest.approx(complete["metrics"]["ttft_ms"] / 1000, abs=1e-5)
    assert total_s == pytest.approx(complete["metrics"]["total_ms"] / 1000, abs=1e-5)
    gaps_s = after.minus(before, "realtime_llm_token_gap_seconds_sum")
    assert 0 <= gaps_s <= total_s - ttft_s


async def test_a_failed_reply_counts_as_an_error_by_code_with_its_retry(alice, settings):
    settings.OPENAI_MODEL = "fakeai:fault=500"
    settings.LLM_MAX_RETRIES = 1
    _, token = alice
    before = await scrape()
    chat = await connect(token)
    await chat.send({"content": "fail me"})
    error = (await chat.receive_until("error"))[-1]
    await chat.close()
    await runs.wait_all()
    after = await scrape()

    assert error["code"] == "upstream_error"
    assert after.minus(before, "realtime_runs_total", status="error") == 1
    assert after.minus(before, "realtime_run_errors_total", code="upstream_error") == 1
    assert after.minus(before, "realtime_llm_retries_total", code="upstream_error") == 1
    assert after.minus(before, "realtime_llm_time_to_first_token_seconds_count") == 0
    assert after.minus(before, "realtime_llm_stream_seconds_count") == 1


async def test_a_cancelled_reply_counts_as_cancelled_not_as_an_error(alice, settings):
    settings.OPENAI_MODEL = SLOW
    _, token = alice
    before = await scrape()
    chat = await connect(token)
    await chat.send({"content": "stop me"})
    await chat.receive_until("token")
    await chat.send({"type": "cancel"})
    await chat.receive_until("cancelled")
    await chat.close()
    await runs.wait_all()
    after = await scrape()

    assert after.minus(before, "realtime_runs_total", status="cancelled") == 1
    assert after.minus(before, "realtime_runs_total", status="complete") == 0
    assert after.total("realtime_run_errors_total") == before.total("realtime_run_errors_total")


# --- gauges -----------------------------------------------------------------------------
async def test_open_sockets_count_a_chat_socket_until_it_closes(alice):
    _, token = alice
    before = (await scrape())("realtime_open_sockets", route="chat")
    first, second = await connect(token), await connect(token)
    assert (await scrape())("realtime_open_sockets", route="chat") == before + 2
    await first.close()
    assert (await scrape())("realtime_open_sockets", route="chat") == before + 1
    await second.close()
    assert (await scrape())("realtime_open_sockets", route="chat") == before


async def test_a_refused_anonymous_socket_leaves_open_sockets_as_they_were():
    before = (await scrape())("realtime_open_sockets", route="chat")
    communicator = raw_socket([(b"origin", b"http://testserver")])
    await communicator.connect()
    assert (await communicator.receive_output(timeout=5))["code"] == 4401
    await communicator.disconnect()
    assert (await scrape())("realtime_open_sockets", route="chat") == before


async def test_runs_in_flight_count_a_reply_until_it_ends(alice, settings):
    settings.OPENAI_MODEL = SLOW
    _, token = alice
    before = (await scrape())("realtime_runs_in_flight")
    chat = await connect(token)
    await chat.send({"content": "long one"})
    await chat.receive_until("token")
    assert (await scrape())("realtime_runs_in_flight") == before + 1
    await chat.send({"type": "cancel"})
    await chat.receive_until("cancelled")
    await runs.wait_all()
    assert (await scrape())("realtime_runs_in_flight") == before
    await chat.close()


async def test_a_reply_whose_socket_closed_stays_in_flight_until_it_ends(alice, settings):
    settings.OPENAI_MODEL = SLOW  # 1.5 s: still going when the socket has closed
    _, token = alice
    before = await scrape()
    chat = await connect(token)
    await chat.send({"content": "outlive the socket"})
    await chat.receive_until("token")
    await chat.close()
    during = await scrape()
    await runs.wait_all()
    after = await scrape()

    assert during.minus(before, "realtime_open_sockets", route="chat") == 0
    assert during.minus(before, "realtime_runs_in_flight") == 1
    assert after.minus(before, "realtime_runs_in_flight") == 0
    assert after.minus(before, "realtime_runs_total", status="complete") == 1
