"""Conversation search: one interface over PostgreSQL full-text search and SQLite FTS5."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from chat import search
from chat.models import Conversation, Message
from chat.search import search_conversations, search_terms

pytestmark = [pytest.mark.django_db, pytest.mark.services]


@pytest.fixture
def alice():
    return get_user_model().objects.create_user("alice", password="pass-Word-123")


@pytest.fixture
def bob():
    return get_user_model().objects.create_user("bob", password="pass-Word-123")


def conversation(owner, title="", *messages: str, status=Message.Status.COMPLETE):
    c = Conversation.objects.create(owner=owner, title=title)
    for n, content in enumerate(messages):
        role = Message.Role.USER if n % 2 == 0 else Message.Role.ASSISTANT
        Message.objects.create(conversation=c, role=role, content=content, status=status)
    return c


def found(user, query, **kwargs) -> list[str]:
    page = search_conversations(user, query, limit=kwargs.pop("limit", 20), **kwargs)
    return [hit.conversation.title for hit in page.hits]


def text(parts) -> str:
    return "".join(part for part, _ in parts)


def marked(parts) -> list[str]:
    return [part for part, matched in parts if matched]


def test_finds_by_words_of_a_message_not_in_the_title(alice):
    conversation(alice, "Trip", "Which trains go to Lisbon?", "The night train leaves at ten.")
    conversation(alice, "Cooking", "How long do I boil an egg?", "About seven minutes.")
    assert found(alice, "lisbon") == ["Trip"]
    assert found(alice, "minutes egg") == ["Cooking"]


def test_finds_by_title(alice):
    conversation(alice, "Quarterly budget review", "Let us start.")
    assert found(alice, "budget") == ["Quarterly budget review"]


def test_every_word_must_match(alice):
    conversation(alice, "A", "apples and pears")
    conversation(alice, "B", "apples and plums")
    assert found(alice, "apples pears") == ["A"]
    assert found(alice, "apples") == ["B", "A"]


def test_words_are_stemmed(alice):
    conversation(alice, "Jogging", "I run every morning before work.")
    conversation(alice, "Machines", "The engines were running hot all day.")
    assert found(alice, "running") == ["Machines", "Jogging"]
    assert found(alice, "engine") == ["Machines"]


def test_the_last_word_matches_as_a_prefix_while_typing(alice):
    conversation(alice, "Kubernetes", "How do I scale a deployment?")
    assert found(alice, "deploy") == ["Kubernetes"]
    assert found(alice, "scal deployment") == []  # only the last word is a prefix
    assert found(alice, "scale deplo") == ["Kubernetes"]


def test_never_finds_another_persons_conversations(alice, bob):
    conversation(alice, "Alice's secret", "the password is swordfish")
    conversation(bob, "Bob's", "swordfish recipes")
    assert found(bob, "swordfish") == ["Bob's"]
    assert found(bob, "secret") == []
    assert found(alice, "swordfish") == ["Alice's secret"]


def test_a_streaming_reply_is_searchable_once_it_ends(alice):
    c = conversation(alice, "Live", "a question")
    reply = Message.objects.create(
        conversation=c, role="assistant", content="zebra stripes", status="streaming"
    )
    assert found(alice, "zebra") == []
    Message.objects.filter(pk=reply.pk).update(content="zebra stripes, done", status="complete")
    assert found(alice, "zebra") == ["Live"]


def test_edits_and_deletes_keep_the_index_in_step(alice):
    c = conversation(alice, "Old title", "walrus facts")
    c.title = "Pinnipeds"
    c.save()
    assert found(alice, "pinnipeds") == ["Pinnipeds"]
    assert found(alice, "old title") == []
    Message.objects.filter(conversation=c).update(content="seal facts")
    assert found(alice, "walrus") == []
    assert found(alice, "seal") == ["Pinnipeds"]
    c.delete()
    assert found(alice, "seal") == []


def test_snippet_highlights_the_words_of_the_newest_matching_message(alice):
    conversation(
        alice,
        "Notes",
        "First, about the cathedral in Cologne.",
        "Later: the cathedral bells ring every hour <b>loudly</b>.",
    )
    [hit] = search_conversations(alice, "cathedral", limit=5).hits
    assert "bells" in text(hit.snippet)
    assert [word.lower() for word in marked(hit.snippet)] == ["cathedral"]
    # Parts of text, never HTML: the templates escape them.
    assert "loudly" in text(hit.snippet)
    assert not text(hit.snippet).startswith(search.ELLIPSIS)
    assert hit.title == (("Notes", False),)


def test_title_matches_are_highlighted(alice):
    conversation(alice, "Planning the garden", "seeds")
    [hit] = search_conversations(alice, "garden", limit=5).hits
    assert marked(hit.title) == ["garden"]
    assert text(hit.title) == "Planning the garden"
    assert hit.snippet == ()


def test_results_page_newest_first_with_a_cursor(alice):
    for n in range(7):
        conversation(alice, f"C{n}", f"common word number {n}")
    first = search_conversations(alice, "common", limit=3)
    assert [h.conversation.title for h in first.hits] == ["C6", "C5", "C4"]
    second = search_conversations(alice, "common", limit=3, cursor=first.next_cursor)
    assert [h.conversation.title for h in second.hits] == ["C3", "C2", "C1"]
    last = search_conversations(alice, "common", limit=3, cursor=second.next_cursor)
    assert [h.conversation.title for h in last.hits] == ["C0"]
    assert last.next_cursor is None


HOSTILE = [
    "",
    "   ",
    '"',
    "'",
    "''",
    '"unbalanced',
    "*",
    "run*",
    "-",
    "-run",
    "NEAR",
    "NEAR(run walk)",
    "run NEAR walk",
    "AND",
    "OR",
    "NOT",
    "run OR walk",
    "content:run",
    "conversation_id:1",
    "^run",
    "run & walk | !jog",
    "run:*",
    "(run",
    "run)",
    "\\",
    "%",
    "_",
    "'; DROP TABLE chat_message; --",
    "<->",
    "a" * 5000,
    "word " * 200,
    "ünïcödé 東京 🙂",
    "\x00",
]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_do_not_error(alice, query):
    conversation(alice, "Running", "run walk jog NEAR the river")
    search_conversations(alice, query, limit=5)


def test_operators_are_searched_as_words(alice):
    conversation(alice, "Ops", "alpha beta")
    conversation(alice, "Near", "NEAR and far")
    assert found(alice, "alpha OR gamma") == []  # OR is a word (a stop word on PostgreSQL)
    assert found(alice, '"alpha') == ["Ops"]
    assert found(alice, "-alpha") == ["Ops"]
    assert found(alice, "far NEAR") == ["Near"]


def test_search_terms_keep_only_words():
    words = ["run", "fast", "near", "x", "content", "y"]
    assert search_terms('Run* "fast" -NEAR(x) content:y') == words
    assert search_terms("a_b") == ["a", "b"]
    assert len(search_terms("w " * 100)) == search.MAX_TERMS


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_postgresql_finds_messages_through_the_gin_index(alice):
    conversation(alice, "Indexed", "pelican")
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        try:
            backend = search.backend_for("default")
            query = backend.matching(Conversation.objects.filter(owner=alice), ["pelican"])
            plan = query.explain()
        finally:
            cursor.execute("RESET enable_seqscan")
    assert "chat_message_search" in plan
    assert "Seq Scan on chat_message" not in plan


@pytest.mark.skipif("connection.vendor != 'sqlite'")
@pytest.mark.django_db(transaction=True)
def test_sqlite_index_is_repaired_after_a_migration_rebuilds_the_table(alice):
    conversation(alice, "Before", "otter")
    # What Django does on SQLite to alter a table: copy it, drop the old one
    # (and with it, its triggers).
    with connection.schema_editor() as editor:
        editor._remake_table(Message)
    conversation(alice, "Meanwhile", "otter")
    assert found(alice, "otter") == ["Before"]

    repaired = search.ensure_sqlite_index(connection)
    assert repaired == ["chat_message_fts", "chat_message_fts_words"]
    assert found(alice, "otter") == ["Meanwhile", "Before"]
    conversation(alice, "After", "otter")
    assert found(alice, "otter") == ["After", "Meanwhile", "Before"]
    assert search.ensure_sqlite_index(connection) == []
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO chat_message_fts (chat_message_fts) VALUES ('integrity-check')")
