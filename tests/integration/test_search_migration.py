"""The search migration indexes the messages and titles that already exist."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from chat.search import search_conversations

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]

BEFORE_SEARCH = [("chat", "0003_message_html")]


def migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


@pytest.fixture
def before_search():
    """The schema as it was before search; back to the latest afterwards."""
    executor = migrate(BEFORE_SEARCH)
    yield executor.loader.project_state(BEFORE_SEARCH).apps
    latest = MigrationExecutor(connection)
    migrate(latest.loader.graph.leaf_nodes())


def test_existing_messages_and_titles_are_found_after_the_migration(before_search):
    old_apps = before_search
    user_model = old_apps.get_model("auth", "User")
    conversation = old_apps.get_model("chat", "Conversation")
    message = old_apps.get_model("chat", "Message")
    owner = user_model.objects.create(username="historian")
    old = conversation.objects.create(owner_id=owner.pk, title="Ancient scrolls")
    message.objects.create(conversation_id=old.pk, role="user", content="Tell me about papyrus")
    message.objects.create(
        conversation_id=old.pk, role="assistant", content="Papyrus was made from reeds."
    )
    unfinished = conversation.objects.create(owner_id=owner.pk, title="")
    message.objects.create(
        conversation_id=unfinished.pk, role="assistant", content="reeds", status="streaming"
    )

    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(pk=owner.pk)
    hits = search_conversations(user, "reed", limit=10).hits
    assert [hit.conversation.pk for hit in hits] == [old.pk]
    assert "Papyrus was made from" in "".join(text for text, _ in hits[0].snippet)
    assert [hit.conversation.pk for hit in search_conversations(user, "scroll", limit=10).hits] == [
        old.pk
    ]


def search_objects() -> set[str]:
    """The search's FTS5 tables (SQLite) and GIN indexes (PostgreSQL) present."""
    with connection.cursor() as cursor:
        names = set(connection.introspection.table_names(cursor))
        for table in ("chat_message", "chat_conversation"):
            names |= set(connection.introspection.get_constraints(cursor, table))
    return {name for name in names if name.endswith(("_fts", "_fts_words", "_search"))}


def test_the_migration_can_be_reversed(before_search):
    assert search_objects() == set()
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    expected = (
        {"chat_message_search", "chat_conversation_search"}
        if connection.vendor == "postgresql"
        else {"chat_message_fts", "chat_message_fts_words"}
        | {"chat_conversation_fts", "chat_conversation_fts_words"}
    )
    assert search_objects() == expected
