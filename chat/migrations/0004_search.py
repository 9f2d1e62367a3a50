"""Full-text search of conversations: GIN expression indexes on PostgreSQL, FTS5 on SQLite.

On SQLite the FTS5 tables are filled from the existing rows and kept in step by
triggers (chat.search); PostgreSQL indexes the existing rows as it builds the
indexes. Each database skips the other's part.
"""

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.db import migrations
from django.db.models import Q

# chat.search queries these exact expressions: change them together.
PG_INDEXES = {
    "Message": GinIndex(
        SearchVector("content", config="english"),
        condition=~Q(status="streaming"),
        name="chat_message_search",
    ),
    "Conversation": GinIndex(SearchVector("title", config="english"), name="chat_conversation_search"),
}


def create_search_index(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        for model_name, index in PG_INDEXES.items():
            schema_editor.add_index(apps.get_model("chat", model_name), index)
    elif vendor == "sqlite":
        from chat.search import ensure_sqlite_index

        ensure_sqlite_index(schema_editor.connection)


def drop_search_index(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        for model_name, index in PG_INDEXES.items():
            schema_editor.remove_index(apps.get_model("chat", model_name), index)
    elif vendor == "sqlite":
        from chat.search import drop_sqlite_index

        drop_sqlite_index(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("chat", "0003_message_html")]

    operations = [migrations.RunPython(create_search_index, drop_search_index)]
