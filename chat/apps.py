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
        from realtime import dashboard, history

        # Voice turns land in the chat history (voice never imports chat).
        history.register(record_spoken_turn)
        dashboard.register("Chat", latency_samples)
        post_migrate.connect(repair_search_index, sender=self)


def latency_samples(since):
    from chat.models import Message
    from realtime.dashboard import stored_series

    return stored_series(
        Message.objects.filter(role=Message.Role.ASSISTANT),
        time_field="created_at",
        fields=[
            ("ttft_ms", "Time to first token", "ms"),
            ("total_ms", "Whole answer", "ms"),
            ("tokens_per_second", "Tokens per second", "tok/s"),
        ],
        since=since,
    )


def repair_search_index(*, using: str = "default", **kwargs) -> None:
    """SQLite drops a table's triggers when a migration rebuilds the table: put them back."""
    from chat.search import ensure_sqlite_index

    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    # Not after migrating back to before the search existed.
    if ("chat", SEARCH_MIGRATION) in MigrationRecorder(connection).applied_migrations():
        ensure_sqlite_index(connection)
