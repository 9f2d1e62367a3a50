"""Admin lists: long titles are cut so the latency columns stay on screen."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from chat.models import Conversation, Message
from rooms.models import Room, RoomMessage

pytestmark = pytest.mark.django_db

LONG = "A very long conversation title that goes on " * 4


@pytest.fixture
def admin_client() -> Client:
    admin = get_user_model().objects.create_superuser("root", password="pass-Word-123")
    client = Client()
    client.force_login(admin)
    return client


def test_the_message_list_cuts_long_conversation_titles(admin_client):
    owner = get_user_model().objects.create_user("alice")
    conversation = Conversation.objects.create(owner=owner, title=LONG)
    Message.objects.create(conversation=conversation, role="assistant", content="x", ttft_ms=123)
    body = admin_client.get("/admin/chat/message/").content.decode()
    assert LONG.strip() not in body
    assert LONG[:39] + "…" in body
    assert "column-ttft_ms" in body and "column-tokens_per_second" in body


def test_the_conversation_list_cuts_long_titles_and_still_sorts_by_title(admin_client):
    owner = get_user_model().objects.create_user("alice")
    Conversation.objects.create(owner=owner, title=LONG)
    response = admin_client.get("/admin/chat/conversation/?o=2")
    assert response.status_code == 200
    assert LONG[:39] + "…" in response.content.decode()


def test_the_room_message_list_cuts_long_room_names(admin_client):
    owner = get_user_model().objects.create_user("alice")
    room = Room.objects.create(name="R" * 100, slug="long", owner=owner)
    RoomMessage.objects.create(room=room, author=owner, role="user", content="hi")
    body = admin_client.get("/admin/rooms/roommessage/?o=2").content.decode()
    assert "R" * 100 not in body and "R" * 29 + "…" in body
    assert "column-ttft_ms" in body
