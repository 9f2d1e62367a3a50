"""The conversation menu's endpoints: model and system prompt, export, share links."""

from __future__ import annotations

import json
import urllib.request

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import AsyncClient

from chat.models import Conversation, Message
from realtime import llm
from realtime.model_catalog import catalog
from tests.consumers.conftest import connect, make_user_with_token

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def fresh_catalog():
    catalog.reset()
    yield
    catalog.reset()


@sync_to_async
def login_client(username: str) -> tuple:
    user = get_user_model().objects.create_user(username, password="pass-Word-123")
    client = AsyncClient()
    return user, client


async def signed_in(username: str) -> tuple:
    user, client = await login_client(username)
    await client.aforce_login(user)
    return user, client


@sync_to_async
def conversation_with_messages(owner, **fields) -> Conversation:
    conversation = Conversation.objects.create(owner=owner, title="Plans", **fields)
    Message.objects.create(conversation=conversation, role="user", content="Hello there")
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="Hi!\n\n```python\nprint(1)\n```",
        model="gpt-4o",
        ttft_ms=120.0,
        tokens=9,
        tokens_per_second=45.0,
        total_ms=320.0,
    )
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="partial",
        status="cancelled",
        model="gpt-4o",
    )
    return conversation


@sync_to_async
def reload(conversation: Conversation) -> Conversation:
    return Conversation.objects.get(pk=conversation.pk)


JSON = {"Accept": "application/json"}


@sync_to_async
def fakeai_requests(fakeai_url: str) -> list[dict]:
    """The chat request bodies fakeai received, newest last."""
    url = fakeai_url.removesuffix("/v1") + "/_fakeai/requests"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


# --- model and system prompt ------------------------------------------------------------
async def test_models_merge_the_upstream_list_with_the_allow_list(settings):
    _, client = await signed_in("alice")
    settings.CHAT_MODELS = ["gpt-4o", "not-listed-upstream"]
    response = await client.get("/chat/models/")
    assert response.status_code == 200
    # The default first; allow-listed models the service does not list are left out.
    assert response.json() == {"models": ["fakeai", "gpt-4o"], "default": "fakeai"}


async def test_models_without_an_allow_list_are_what_the_upstream_lists(settings):
    _, client = await signed_in("alice")
    settings.CHAT_MODELS = []
    response = await client.get("/chat/models/")
    assert response.json()["models"] == ["fakeai", "gpt-4o", "gpt-4o-mini"]


async def test_an_unreachable_model_service_still_offers_the_allow_list(settings):
    _, client = await signed_in("alice")
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"
    settings.CHAT_MODELS = ["gpt-4o", "o3"]
    llm.reset_clients()
    response = await client.get("/chat/models/")
    assert response.status_code == 200
    assert response.json()["models"] == ["fakeai", "gpt-4o", "o3"]


async def test_models_need_a_login():
    assert (await AsyncClient().get("/chat/models/")).status_code == 401


async def test_picking_a_model_before_the_first_message_creates_the_conversation():
    alice, client = await signed_in("alice")
    response = await client.post("/chat/settings/", {"model": "gpt-4o"}, headers=JSON)
    assert response.status_code == 200
    data = response.json()
    conversation = await sync_to_async(Conversation.objects.get)(pk=data["conversation_id"])
    assert conversation.owner_id == alice.pk and conversation.model == "gpt-4o"
    assert data["url"] == f"/chat/{conversation.pk}/"


async def test_a_model_not_offered_is_refused(settings):
    alice, client = await signed_in("alice")
    conversation = await conversation_with_messages(alice)
    response = await client.post(
        f"/chat/{conversation.pk}/settings/", {"model": "gpt-5-secret"}, headers=JSON
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    assert (await reload(conversation)).model == ""


async def test_system_prompt_is_saved_and_too_long_ones_are_refused(settings):
    settings.CHAT_MAX_SYSTEM_PROMPT_CHARS = 20
    alice, client = await signed_in("alice")
    conversation = await conversation_with_messages(alice)
    url = f"/chat/{conversation.pk}/settings/"
    response = await client.post(url, {"system_prompt": "  Answer in French. "})
    assert response.status_code == 302 and response.url == f"/chat/{conversation.pk}/"
    assert (await reload(conversation)).system_prompt == "Answer in French."
    response = await client.post(url, {"system_prompt": "x" * 21}, headers=JSON)
    assert response.status_code == 413
    assert (await reload(conversation)).system_prompt == "Answer in French."


async def test_the_model_and_system_prompt_reach_the_upstream(fakeai_url, drain_replies):
    user, token = await make_user_with_token("alice")
    conversation = await sync_to_async(Conversation.objects.create)(
        owner=user, model="gpt-4o", system_prompt="You are a pirate."
    )
    client = await connect(token)
    await client.send({"content": "ahoy", "conversation_id": conversation.pk})
    await client.receive_until("complete")
    await client.close()
    log = await fakeai_requests(fakeai_url)
    assert log[-1]["model"] == "gpt-4o"
    assert log[-1]["messages"][0] == {"role": "system", "content": "You are a pirate."}
    assert log[-1]["messages"][-1] == {"role": "user", "content": "ahoy"}


async def test_another_users_conversation_settings_are_404():
    alice, _ = await signed_in("alice")
    _, bob_client = await signed_in("bob")
    conversation = await conversation_with_messages(alice)
    for fields in ({"model": "gpt-4o"}, {"system_prompt": "leak"}):
        response = await bob_client.post(f"/chat/{conversation.pk}/settings/", fields)
        assert response.status_code == 404
    saved = await reload(conversation)
    assert (saved.model, saved.system_prompt) == ("", "")


# --- export ----------------------------------------------------------------------------------
async def test_json_export_has_every_message_with_status_timestamps_and_metrics():
    alice, client = await signed_in("alice")
    conversation = await conversation_with_messages(alice, system_prompt="Be brief.")
    response = await client.get(f"/chat/{conversation.pk}/export.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == f'attachment; filename="plans-{conversation.pk}.json"'
    data = json.loads(response.content)
    assert data["conversation"]["title"] == "Plans"
    assert data["conversation"]["system_prompt"] == "Be brief."
    assert data["conversation"]["model"] == "fakeai"  # the site default
    roles = [(m["role"], m["status"]) for m in data["messages"]]
    assert roles == [("user", "complete"), ("assistant", "complete"), ("assistant", "cancelled")]
    reply = data["messages"][1]
    assert reply["content"].startswith("Hi!") and reply["model"] == "gpt-4o"
    assert reply["metrics"]["ttft_ms"] == 120.0 and reply["metrics"]["tokens"] == 9
    assert reply["created_at"].startswith("20") and "T" in reply["created_at"]


async def test_markdown_export_reads_as_a_transcript():
    alice, client = await signed_in("alice")
    conversation = await conversation_with_messages(alice)
    response = await client.get(f"/chat/{conversation.pk}/export.md")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    text = response.content.decode()
    assert text.startswith("# Plans\n")
    assert "## You · " in text and "Hello there" in text
    assert "## Assistant · " in text and "· gpt-4o · TTFT 120 ms" in text
    assert "```python\nprint(1)\n```" in text
    assert "partial\n\n*(stopped)*" in text


async def test_another_users_conversation_cannot_be_exported_or_shared():
    alice, _ = await signed_in("alice")
    _, bob_client = await signed_in("bob")
    conversation = await conversation_with_messages(alice)
    for path in ("export.md", "export.json"):
        assert (await bob_client.get(f"/chat/{conversation.pk}/{path}")).status_code == 404
    assert (await bob_client.post(f"/chat/{conversation.pk}/share/")).status_code == 404
    await sync_to_async(Conversation.objects.filter(pk=conversation.pk).update)(
        share_token="A" * 32
    )
    assert (await bob_client.post(f"/chat/{conversation.pk}/share/revoke/")).status_code == 404
    assert (await reload(conversation)).share_token == "A" * 32


async def test_export_needs_a_login():
    response = await AsyncClient().get("/chat/1/export.json")
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")


# --- share links -----------------------------------------------------------------------------
async def test_a_share_link_is_readable_signed_out_and_dies_when_revoked():
    alice, client = await signed_in("alice")
    conversation = await conversation_with_messages(alice)
    response = await client.post(f"/chat/{conversation.pk}/share/")
    assert response.status_code == 302
    token = (await reload(conversation)).share_token
    assert token and len(token) == 32

    shared = await AsyncClient().get(f"/share/{token}/")
    body = shared.content.decode()
    assert shared.status_code == 200
    assert shared["X-Robots-Tag"] == "noindex, nofollow"
    assert '<meta name="robots" content="noindex, nofollow">' in body
    assert "script-src 'self'" in shared["Content-Security-Policy"]
    assert "no-store" in shared["Cache-Control"]
    assert "Hello there" in body and '<span class="hl-nb">print</span>' in body
    # Read-only, and nothing of the owner: no composer, sidebar, retry, name.
    for absent in ("composer", "sidebar", "data-retry", "alice", "csrfmiddlewaretoken"):
        assert absent not in body, absent

    # Sharing again keeps the same link; revoking kills it at once.
    await client.post(f"/chat/{conversation.pk}/share/")
    assert (await reload(conversation)).share_token == token
    await client.post(f"/chat/{conversation.pk}/share/revoke/")
    assert (await AsyncClient().get(f"/share/{token}/")).status_code == 404
    await client.post(f"/chat/{conversation.pk}/share/")
    assert (await reload(conversation)).share_token != token


async def test_unknown_share_tokens_are_404():
    for token in ("A" * 32, "short", "../../etc"):
        assert (await AsyncClient().get(f"/share/{token}/")).status_code == 404


async def test_sharing_does_not_reorder_the_conversation_list():
    alice, client = await signed_in("alice")
    conversation = await conversation_with_messages(alice)
    before = (await reload(conversation)).updated_at
    await client.post(f"/chat/{conversation.pk}/share/")
    await client.post(f"/chat/{conversation.pk}/settings/", {"system_prompt": "x"})
    assert (await reload(conversation)).updated_at == before
