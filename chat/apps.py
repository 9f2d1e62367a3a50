from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from chat.spoken import record_spoken_turn
        from realtime import dashboard, history

        # Voice turns land in the chat history (voice never imports chat).
        history.register(record_spoken_turn)
        dashboard.register("Chat", latency_samples)


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
