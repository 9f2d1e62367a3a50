from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Realtime core"

    def ready(self) -> None:
        from realtime import lifecycle, runs

        lifecycle.on_shutdown("stop runs", runs.shutdown)
