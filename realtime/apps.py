from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Realtime core"

    def ready(self) -> None:
        from realtime import lifecycle, llm, runs

        lifecycle.on_shutdown("stop runs", runs.shutdown)
        # After the runs: their cleanup closes their model requests first.
        lifecycle.on_shutdown("close the model client", llm.close_client)
