from django.apps import AppConfig
from django.db import connections
from django.db.migrations.recorder import MigrationRecorder
from django.db.models.signals import post_migrate

SEARCH_MIGRATION = "0004_search"


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from chat.spoken import record_spoken_turn
        from realtime import history

        # Voice turns land in the chat history (voice never imports chat).
        history.register(record_spoken_turn)
        post_migrate.connect(repair_search_index, sender=self)


def repair_search_index(*, using: str = "default", **kwargs) -> None:
    """SQLite drops a table's triggers when a migration rebuilds the table: put them back."""
    from chat.search import ensure_sqlite_index

    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    # Not after migrating back to before the search existed.
    if ("chat", SEARCH_MIGRATION) in MigrationRecorder(connection).applied_migrations():
        ensure_sqlite_index(connection)
