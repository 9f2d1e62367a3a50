from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Realtime core"

    def ready(self) -> None:
        from realtime import lifecycle, metrics, runs

        lifecycle.on_shutdown("stop runs", runs.shutdown)
        # After the runs: their end is counted before the process's gauges are dropped.
        lifecycle.on_shutdown("forget this process's metrics", metrics.forget_this_process)
