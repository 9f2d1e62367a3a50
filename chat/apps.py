from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from chat.spoken import record_spoken_turn
        from realtime import history

        # Voice turns land in the chat history (voice never imports chat).
        history.register(record_spoken_turn)
