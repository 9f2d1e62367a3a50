"""Pages: login required, ownership, signup, tokens."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.models import ApiToken
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice():
    return get_user_model().objects.create_user("alice", password="pass-Word-123")


@pytest.fixture
def alice_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def test_chat_requires_login():
    response = Client().get("/chat/")
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")


def test_chat_page_shows_own_history_with_sanitized_html(alice, alice_client):
    conversation = Conversation.objects.create(owner=alice, title="Mine")
    Message.objects.create(conversation=conversation, role="user", content="<b>hi</b>")
    Message.objects.create(
        conversation=conversation, role="assistant", content="**bold** <script>x</script>"
    )
    response = alice_client.get(f"/chat/{conversation.pk}/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "&lt;b&gt;hi&lt;/b&gt;" in body
    assert "<strong>bold</strong>" in body
    assert "<script>x</script>" not in body


def test_someone_elses_conversation_is_404(alice):
    bob = get_user_model().objects.create_user("bob", password="pass-Word-123")
    conversation = Conversation.objects.create(owner=alice, title="Private")
    client = Client()
    client.force_login(bob)
    assert client.get(f"/chat/{conversation.pk}/").status_code == 404
    assert client.post(f"/chat/{conversation.pk}/delete/").status_code == 404
    assert client.post(f"/chat/{conversation.pk}/rename/", {"title": "x"}).status_code == 404
    assert Conversation.objects.get(pk=conversation.pk).title == "Private"


def test_owner_can_rename_and_delete(alice, alice_client):
    conversation = Conversation.objects.create(owner=alice, title="Old")
    alice_client.post(f"/chat/{conversation.pk}/rename/", {"title": "New"})
    assert Conversation.objects.get(pk=conversation.pk).title == "New"
    alice_client.post(f"/chat/{conversation.pk}/delete/")
    assert not Conversation.objects.filter(pk=conversation.pk).exists()


def test_signup_creates_a_user_and_logs_in():
    client = Client()
    response = client.post(
        "/accounts/signup/",
        {"username": "carol", "password1": "a-Long-pass-42", "password2": "a-Long-pass-42"},
    )
    assert response.status_code == 302 and response.url == "/chat/"
    assert client.get("/chat/").status_code == 200


def test_token_is_shown_once_after_a_redirect_and_stored_hashed(alice, alice_client):
    response = alice_client.post("/accounts/tokens/", {"name": "laptop"}, follow=True)
    assert response.redirect_chain == [("/accounts/tokens/", 302)]
    raw = response.context["new_key"]
    assert raw.startswith("rt_") and raw in response.content.decode()
    token = ApiToken.objects.get(user=alice)
    assert token.key_hash != raw
    reload = alice_client.get("/accounts/tokens/")
    assert raw not in reload.content.decode()
    assert ApiToken.objects.filter(user=alice).count() == 1  # reloading minted nothing


def test_token_can_be_revoked_only_by_its_owner(alice, alice_client):
    alice_client.post("/accounts/tokens/", {"name": "laptop"})
    token = ApiToken.objects.get(user=alice)
    bob = get_user_model().objects.create_user("bob", password="pass-Word-123")
    bob_client = Client()
    bob_client.force_login(bob)
    bob_client.post("/accounts/tokens/", {"revoke": token.pk})
    assert ApiToken.objects.filter(pk=token.pk).exists()
    alice_client.post("/accounts/tokens/", {"revoke": token.pk})
    assert not ApiToken.objects.filter(pk=token.pk).exists()


def test_health_check():
    assert Client().get("/healthz").json() == {"status": "ok"}


def test_revoking_a_malformed_token_id_is_a_400(alice_client):
    assert alice_client.post("/accounts/tokens/", {"revoke": "abc"}).status_code == 400


def test_the_old_tokens_address_redirects(alice_client):
    response = alice_client.get("/chat/tokens/")
    assert response.status_code == 301 and response.url == "/accounts/tokens/"


def make_history(owner, count: int) -> list[Message]:
    conversation = Conversation.objects.create(owner=owner, title="Long")
    return [
        Message.objects.create(
            conversation=conversation,
            role="user" if number % 2 == 0 else "assistant",
            content=f"message {number}",
        )
        for number in range(count)
    ]


def shown_texts(html: str) -> list[str]:
    return re.findall(r"message (\d+)", html)


def test_a_long_conversation_opens_on_its_newest_page(settings, alice, alice_client):
    settings.CHAT_PAGE_MESSAGES = 10
    history = make_history(alice, 25)
    body = alice_client.get(f"/chat/{history[0].conversation_id}/").content.decode()
    assert shown_texts(body) == [str(n) for n in range(15, 25)]
    assert f'data-before="{history[15].pk}"' in body


def test_older_pages_load_in_order_until_the_first_message(settings, alice, alice_client):
    settings.CHAT_PAGE_MESSAGES = 10
    history = make_history(alice, 25)
    url = f"/chat/{history[0].conversation_id}/messages/"

    second = alice_client.get(url, {"before": history[15].pk}).json()
    third = alice_client.get(url, {"before": second["oldest_id"]}).json()

    assert shown_texts(second["html"]) == [str(n) for n in range(5, 15)]
    assert second["has_more"] is True and second["oldest_id"] == history[5].pk
    assert shown_texts(third["html"]) == [str(n) for n in range(0, 5)]
    assert third["has_more"] is False
    assert "<p>message 1</p>" in third["html"]  # assistant messages as stored HTML


def test_older_messages_of_someone_elses_conversation_are_404(alice):
    history = make_history(alice, 3)
    bob = get_user_model().objects.create_user("bob", password="pass-Word-123")
    client = Client()
    client.force_login(bob)
    url = f"/chat/{history[0].conversation_id}/messages/"
    assert client.get(url, {"before": history[2].pk}).status_code == 404


@pytest.mark.parametrize("before", ["", "abc", "-1", "１２"])
def test_older_messages_need_a_message_id(alice, alice_client, before):
    history = make_history(alice, 3)
    url = f"/chat/{history[0].conversation_id}/messages/"
    response = alice_client.get(url, {"before": before})
    assert response.status_code == 400 and response.json()["code"] == "invalid_event"
