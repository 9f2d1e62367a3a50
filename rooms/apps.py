from django.apps import AppConfig


class RoomsConfig(AppConfig):
    name = "rooms"
    verbose_name = "Rooms"

    def ready(self) -> None:
        from realtime import dashboard

        dashboard.register("Rooms", latency_samples)


def latency_samples(since):
    from realtime.dashboard import stored_series
    from rooms.models import RoomMessage

    return stored_series(
        RoomMessage.objects.filter(role=RoomMessage.Role.ASSISTANT),
        time_field="created_at",
        fields=[
            ("ttft_ms", "AI time to first token", "ms"),
            ("tokens_per_second", "AI tokens per second", "tok/s"),
        ],
        since=since,
    )
