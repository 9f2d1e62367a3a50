"""The message tree migration links existing messages in the order they were written."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from chat import selectors
from chat.models import Conversation, Message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]

BEFORE_TREE = [("chat", "0006_highlight_stored_code")]


def migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


@pytest.fixture
def before_tree():
    """The schema as it was before messages had parents; back to the latest afterwards."""
    executor = migrate(BEFORE_TREE)
    yield executor.loader.project_state(BEFORE_TREE).apps
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


def test_each_existing_message_follows_the_one_before_it(before_tree):
    old_apps = before_tree
    owner = old_apps.get_model("auth", "User").objects.create(username="historian")
    conversation = old_apps.get_model("chat", "Conversation")
    message = old_apps.get_model("chat", "Message")
    talks = [conversation.objects.create(owner_id=owner.pk) for _ in range(2)]
    written = {talk.pk: [] for talk in talks}
    start = timezone.now() - timedelta(days=3)
    # Interleaved conversations; two messages written in the same microsecond go by id.
    for n, (talk, role) in enumerate(
        [(talks[0], "user"), (talks[1], "user"), (talks[0], "assistant"), (talks[1], "assistant")]
        + [(talks[0], "user"), (talks[0], "assistant")]
    ):
        row = message.objects.create(conversation_id=talk.pk, role=role, content=f"m{n}")
        at = start + timedelta(minutes=min(n, 4))
        message.objects.filter(pk=row.pk).update(created_at=at)
        written[talk.pk].append(row.pk)

    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    for talk in talks:
        ids = written[talk.pk]
        rows = {m.pk: m for m in Message.objects.filter(conversation_id=talk.pk)}
        assert [rows[pk].parent_id for pk in ids] == [None, *ids[:-1]]
        assert all(rows[pk].chosen_at == rows[pk].created_at for pk in ids)
        page = selectors.message_page(Conversation.objects.get(pk=talk.pk), before=None, limit=50)
        assert [m.pk for m in page.messages] == ids
        assert all(m.versions is None for m in page.messages)
