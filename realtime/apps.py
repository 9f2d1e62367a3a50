from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Realtime core"

    def ready(self) -> None:
        from realtime import channel_layer, lifecycle, llm, metrics, runs

        lifecycle.on_shutdown("stop runs", runs.shutdown)
        # After the runs: their cleanup closes their model requests first.
        lifecycle.on_shutdown("close the model client", llm.close_client)
        # After the runs: their end is counted before the process's gauges are dropped.
        lifecycle.on_shutdown("forget this process's metrics", metrics.forget_this_process)
        # After the runs: each stops its control listener through the layer's reader.
        lifecycle.on_shutdown("stop the channel layer's reader", channel_layer.stop_reader)
