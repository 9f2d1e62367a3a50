from django.apps import AppConfig


class VoiceConfig(AppConfig):
    name = "voice"
    verbose_name = "Voice"

    def ready(self) -> None:
        from realtime import lifecycle
        from voice import realtime

        lifecycle.on_shutdown("close voice sessions", realtime.close_all_sessions)
