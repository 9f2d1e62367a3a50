from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Realtime core"

    def ready(self) -> None:
        from django.core.signals import request_finished

        from realtime import db, lifecycle, runs

        lifecycle.on_shutdown("stop runs", runs.shutdown)
        request_finished.connect(db.close_request_thread_connections)
