from django.apps import AppConfig


class VoiceConfig(AppConfig):
    name = "voice"
    verbose_name = "Voice"

    def ready(self) -> None:
        from realtime import dashboard, lifecycle
        from voice import realtime

        lifecycle.on_shutdown("close voice sessions", realtime.close_all_sessions)
        dashboard.register("Voice", latency_samples)


def latency_samples(since):
    from realtime.dashboard import stored_series
    from voice.models import VoiceTurn

    return stored_series(
        VoiceTurn.objects.all(),
        time_field="started_at",
        fields=[
            ("voice_to_voice_ms", "Voice to voice", "ms"),
            ("upstream_ms", "Realtime service to first audio", "ms"),
        ],
        since=since,
    )
