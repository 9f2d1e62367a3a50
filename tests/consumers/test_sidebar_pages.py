"""The sidebar's endpoints: more conversations (keyset pages) and search results."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from chat.models import Conversation, Message

pytestmark = [pytest.mark.django_db, pytest.mark.services]

LINK_ID = re.compile(r'data-testid="conversation-link" data-conversation-id="(\d+)"')
RESULT_ID = re.compile(r'data-testid="search-result" data-conversation-id="(\d+)"')


@pytest.fixture
def alice():
    return get_user_model().objects.create_user("alice", password="pass-Word-123")


@pytest.fixture
def alice_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def make_conversations(owner, count: int) -> list[int]:
    """`count` conversations, the last made the most recent; their ids newest first."""
    ids = [Conversation.objects.create(owner=owner, title=f"C{n}").pk for n in range(count)]
    return ids[::-1]


def test_the_page_lists_one_page_and_the_rest_loads_page_by_page(alice, alice_client, settings):
    settings.CHAT_SIDEBAR_PAGE_CONVERSATIONS = 4
    newest_first = make_conversations(alice, 10)
    body = alice_client.get("/chat/").content.decode()
    assert [int(i) for i in LINK_ID.findall(body)] == newest_first[:4]
    after = re.search(r'data-testid="conversation-more" data-after="([^"]+)"', body)[1]

    seen = newest_first[:4]
    while after:
        page = alice_client.get("/chat/conversations/", {"after": after}).json()
        seen += [int(i) for i in LINK_ID.findall(page["html"])]
        after = page["next"]
    assert seen == newest_first


def test_conversations_updated_meanwhile_are_not_skipped_or_repeated(alice, alice_client, settings):
    settings.CHAT_SIDEBAR_PAGE_CONVERSATIONS = 3
    newest_first = make_conversations(alice, 6)
    first = alice_client.get("/chat/").content.decode()
    after = re.search(r'data-after="([^"]+)"', first)[1]
    # The newest one gets a message: it moves up, and the next page is unchanged.
    Conversation.objects.get(pk=newest_first[0]).save()
    page = alice_client.get("/chat/conversations/", {"after": after}).json()
    assert [int(i) for i in LINK_ID.findall(page["html"])] == newest_first[3:]
    assert page["next"] is None


def test_no_more_marker_when_everything_fits(alice, alice_client):
    make_conversations(alice, 3)
    assert 'data-testid="conversation-more"' not in alice_client.get("/chat/").content.decode()


@pytest.mark.parametrize("after", ["x", "1_", "_1", "1-2", "9" * 30 + "_1", "１_1"])
def test_a_malformed_cursor_is_a_400(alice_client, after):
    for url in ("/chat/conversations/", "/chat/search/"):
        response = alice_client.get(url, {"after": after, "q": "x"})
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_event"


def test_the_endpoints_need_a_login():
    for url in ("/chat/conversations/", "/chat/search/?q=x"):
        response = Client().get(url)
        assert response.status_code == 302 and response.url.startswith("/accounts/login/")


def test_search_results_show_only_the_persons_own_conversations(alice, alice_client):
    bob = get_user_model().objects.create_user("bob", password="pass-Word-123")
    mine = Conversation.objects.create(owner=alice, title="Mine")
    Message.objects.create(conversation=mine, role="user", content="the heron flew")
    theirs = Conversation.objects.create(owner=bob, title="Bob's heron")
    Message.objects.create(conversation=theirs, role="user", content="heron heron")
    page = alice_client.get("/chat/search/", {"q": "heron"}).json()
    assert [int(i) for i in RESULT_ID.findall(page["html"])] == [mine.pk]
    assert page["count"] == 1 and page["next"] is None
    assert "<mark>heron</mark>" in page["html"]


def test_search_results_escape_what_people_and_the_model_wrote(alice, alice_client):
    c = Conversation.objects.create(owner=alice, title="<img src=x onerror=alert(1)> title")
    Message.objects.create(
        conversation=c, role="user", content="<script>alert('kestrel')</script> kestrel"
    )
    html = alice_client.get("/chat/search/", {"q": "kestrel"}).json()["html"]
    assert "<script>" not in html and "<img" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_search_pages_with_a_cursor(alice, alice_client, settings):
    settings.CHAT_SEARCH_PAGE_RESULTS = 2
    for n in range(5):
        c = Conversation.objects.create(owner=alice, title=f"T{n}")
        Message.objects.create(conversation=c, role="user", content="shared puffin")
    found, after = [], ""
    while True:
        page = alice_client.get("/chat/search/", {"q": "puffin", "after": after}).json()
        found += RESULT_ID.findall(page["html"])
        if not page["next"]:
            break
        after = page["next"]
    assert len(found) == len(set(found)) == 5


@pytest.mark.parametrize("q", ["", '"', "NEAR(", "-", "*", "a" * 10_000, "'; --"])
def test_hostile_queries_answer_200(alice_client, q):
    response = alice_client.get("/chat/search/", {"q": q})
    assert response.status_code == 200
    assert response.json()["count"] == 0
