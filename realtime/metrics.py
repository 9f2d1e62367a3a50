"""Prometheus metrics of the realtime core, and their text exposition.

The core records them at its seams (a model stream in `realtime.llm`, a run in
`realtime.runs`, a socket in `realtime.consumers`), so every app built on the
core is measured the same way without code of its own.

Each process keeps its own metrics and is scraped on its own. Processes that
cannot be reached one by one (several sharing one listening socket) set
PROMETHEUS_MULTIPROC_DIR before starting: prometheus_client then keeps the
values in files there and any process answers for all of them
(docs/deploy.md). Gauges are summed over live processes in that mode.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder

# --- the model stream (realtime.llm.LatencyMetrics) -------------------------------------
TIME_TO_FIRST_TOKEN = Histogram(
    "realtime_llm_time_to_first_token_seconds",
    "Time from a model request to its first content token, retries included.",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30),
)
STREAM_DURATION = Histogram(
    "realtime_llm_stream_seconds",
    "Time from a model request to the end of its answer, however it ended.",
    buckets=(0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300),
)
TOKEN_GAP = Histogram(
    "realtime_llm_token_gap_seconds",
    "Time between two consecutive content tokens of one answer.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TOKENS = Counter(
    "realtime_llm_tokens_total",
    "Content tokens received from the model (its rate is tokens per second).",
)
RETRIES = Counter(
    "realtime_llm_retries_total",
    "Model requests retried before their first token, by the error that caused the retry.",
    ["code"],
)

# --- runs (realtime.runs) -------------------------------------------------------------
RUNS = Counter(
    "realtime_runs_total",
    "Runs (e.g. chat replies) that ended, by final status: complete, cancelled or error.",
    ["status"],
)
RUN_ERRORS = Counter(
    "realtime_run_errors_total",
    "Runs that ended on an error, by its code; `abandoned` counts cancelled runs nobody read.",
    ["code"],
)
RUNS_IN_FLIGHT = Gauge(
    "realtime_runs_in_flight",
    "Runs going on now.",
    multiprocess_mode="livesum",
)

# --- voice (voice.conversation) ------------------------------------------------------
VOICE_TO_VOICE = Histogram(
    "realtime_voice_to_voice_seconds",
    "From the end of the person's speech (its audio's arrival) to the answer's first audio sent.",
    buckets=(0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 2.5, 3, 4, 6, 10),
)
VOICE_ECHO_IGNORED = Counter(
    "realtime_voice_echo_ignored",
    "Speech heard during an answer that the echo gate judged to be the answer's own echo.",
)

# --- sockets (realtime.consumers) -----------------------------------------------------
OPEN_SOCKETS = Gauge(
    "realtime_open_sockets",
    "WebSockets open now, by route.",
    ["route"],
    multiprocess_mode="livesum",
)


def count_run_end(status: str, error_code: str) -> None:
    """Count a run's outcome once it is decided."""
    RUNS.labels(status=status).inc()
    if error_code:
        RUN_ERRORS.labels(code=error_code).inc()


P = ParamSpec("P")
R = TypeVar("R")


def tracks_run_in_flight(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Count calls of a coroutine function in RUNS_IN_FLIGHT while they run, however they end."""

    @functools.wraps(func)
    async def counted(*args: P.args, **kwargs: P.kwargs) -> R:
        RUNS_IN_FLIGHT.inc()
        try:
            return await func(*args, **kwargs)
        finally:
            RUNS_IN_FLIGHT.dec()

    return counted


# --- exposition -----------------------------------------------------------------------
def multiprocess_dir() -> str | None:
    """The directory shared by every process's metrics, if the processes share one."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition(accept: str) -> tuple[bytes, str]:
    """(body, content type) of the metrics, in the format the scraper accepts."""
    encoder, content_type = choose_encoder(accept)
    if multiprocess_dir() is None:
        return encoder(REGISTRY), content_type
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return encoder(registry), content_type


async def forget_this_process() -> None:
    """At shutdown: drop this process's gauges from the shared directory (its counters stay)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(os.getpid())
