"""Runs: work that produces a stream of events and outlives the socket that started it.

A run is a task that belongs to no connection. Its producer (an app object:
a chat reply, a room's AI turn) emits events into the run's stream
(realtime.streams); readers on any process follow the stream, and can leave
and come back. Each run listens on a channel-layer **control channel** for
`run.cancel` (from any process), and for readers leaving and returning
(`run.detach` / `run.attach`): when the last reader leaves and none returns
within RUN_ORPHAN_GRACE_SECONDS, the run is stopped as abandoned.

Whatever stops a run, and whenever (a cancel during the producer's cleanup,
a second cancel during the final save, the process shutting down), it ends
with exactly one terminal event: the outcome is decided once, the producer's
`save` runs shielded with a timeout, and the terminal event is published
after it regardless. Readers never wait on a run that is gone.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Protocol

from channels.layers import get_channel_layer
from django.conf import settings

from realtime import channel_layer, log_context, metrics, wire
from realtime.streams import get_streams

logger = logging.getLogger(__name__)

CONTROL_CANCEL = "run.cancel"
CONTROL_ATTACH = "run.attach"
CONTROL_DETACH = "run.detach"
CONTROL_END = "run.end"  # from the run itself, to its own watcher
WATCHER_STOP_SECONDS = 2.0


class StopReason(enum.StrEnum):
    """Why a run was stopped before its producer finished."""

    CANCEL = "cancel"  # someone asked, on any process
    ABANDONED = wire.ABANDONED  # nobody read it for RUN_ORPHAN_GRACE_SECONDS
    SHUTDOWN = "shutdown"  # this process is stopping


class RunError(Exception):
    """A failure that ends a run, with the protocol error code readers get."""

    def __init__(self, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


class Status(enum.StrEnum):
    COMPLETE = "complete"
    CANCELLED = "cancelled"
    ERROR = "error"


# Reported as 0 from the start, so the first run of each status is seen as an increase.
for _status in Status:
    metrics.RUNS.labels(status=_status.value)


@dataclass(frozen=True)
class Outcome:
    """How a run ended: decided once, then saved and published."""

    status: Status
    error: RunError | None = None
    stop: StopReason | None = None

    @property
    def error_code(self) -> str:
        """The code stored with the run's result: the error's, or why it was stopped."""
        if self.error is not None:
            return self.error.code
        return self.stop.value if self.stop is StopReason.ABANDONED else ""


INTERRUPTED = RunError(wire.INTERRUPTED, "The server stopped.", retryable=True)
FAILED = RunError(wire.INTERNAL_ERROR, "The reply failed.", retryable=True)


class Producer(Protocol):
    """What an app gives `start`: how to produce a run's events and how to end it."""

    async def produce(self, run: Run) -> None:
        """Emit events with `run.emit`; raise RunError to fail. Cancelled to stop."""

    async def save(self, run: Run, outcome: Outcome) -> None:
        """Store the result (shielded, within RUN_SAVE_TIMEOUT_SECONDS). May raise."""

    def terminal_event(self, run: Run, outcome: Outcome) -> dict:
        """The run's last event; must not fail or wait."""

    # Optional: `async def ended(self, run, outcome)`, called once the terminal
    # event is out (e.g. to free a lease and start what waited for this run).


class Run:
    """A running producer: its stream key, its control channel, its task, its readers."""

    def __init__(
        self, key: str, control_channel: str, producer: Producer, *, abandon_when_unread: bool
    ) -> None:
        self.key = key
        self.control_channel = control_channel
        self.producer = producer
        self.stop: StopReason | None = None
        self.task: asyncio.Task | None = None
        self._streams = get_streams()
        self._abandon_when_unread = abandon_when_unread
        self._readers = 1  # the starter follows what it started
        self._orphan_timer: asyncio.TimerHandle | None = None

    def control(self, kind: str) -> None:
        """Act on a control message: `cancel`, or a reader joining or leaving."""
        if kind == CONTROL_CANCEL:
            self.request_stop(StopReason.CANCEL)
        elif kind == CONTROL_ATTACH:
            self._readers += 1
            self._cancel_orphan_timer()
        elif kind == CONTROL_DETACH:
            self._readers -= 1
            if self._readers <= 0 and self._orphan_timer is None and self._abandon_when_unread:
                self._orphan_timer = asyncio.get_running_loop().call_later(
                    settings.RUN_ORPHAN_GRACE_SECONDS, self.request_stop, StopReason.ABANDONED
                )

    def _cancel_orphan_timer(self) -> None:
        if self._orphan_timer is not None:
            self._orphan_timer.cancel()
            self._orphan_timer = None

    async def emit(self, event: dict) -> int:
        """Append an event to the run's stream; return its sequence number."""
        return await self._streams.append(self.key, event)

    def request_stop(self, reason: StopReason) -> None:
        """Stop the producer; the first reason given is the one that counts."""
        if self.stop is None:
            self.stop = reason
        if self.task is not None:
            self.task.cancel()


_running: dict[str, Run] = {}


async def start(
    *, key: str, producer: Producer, abandon_when_unread: bool = True, name: str | None = None
) -> Run:
    """Open the run's stream and start its task; readers can follow once this returns.

    The starter counts as the first reader (it follows what it started).
    """
    # The default prefix matters: channels_redis receives every process-local
    # channel through one loop keyed on that prefix.
    control = await get_channel_layer().new_channel()
    streams = get_streams()
    await streams.open(key, control_channel=control)
    run = Run(key, control, producer, abandon_when_unread=abandon_when_unread)
    # A fresh context: the task must not inherit the request's thread-sensitive
    # executor, which is gone once the request (or socket) that started it ends.
    run.task = asyncio.create_task(
        _drive(run),
        name=name or f"run:{key}",
        context=contextvars.Context(),
    )
    streams.bind(key, run.task)
    _running[key] = run
    run.task.add_done_callback(lambda _: _running.pop(key, None))
    return run


@metrics.tracks_run_in_flight
async def _drive(run: Run) -> None:
    log_context.bind(run_id=run.key)
    watcher = asyncio.create_task(
        _watch_control(run),
        name=f"run-control:{run.key}",
        context=contextvars.Context(),
    )
    watcher.add_done_callback(_log_watcher_failure)
    try:
        await run.producer.produce(run)
        outcome = Outcome(Status.COMPLETE)
    except asyncio.CancelledError:
        outcome = _stopped(run.stop)
    except RunError as exc:
        outcome = Outcome(Status.ERROR, exc)
    except Exception:
        logger.exception("run failed key=%s", run.key)
        outcome = Outcome(Status.ERROR, FAILED)
    # From here on a cancel cannot skip the terminal event.
    await _regardless_of_cancel(_stop_watcher(run, watcher))
    metrics.count_run_end(outcome.status.value, outcome.error_code)
    await _regardless_of_cancel(_end(run, outcome))
    run._cancel_orphan_timer()


def _stopped(reason: StopReason | None) -> Outcome:
    if reason in (StopReason.CANCEL, StopReason.ABANDONED):
        return Outcome(Status.CANCELLED, stop=reason)
    return Outcome(Status.ERROR, INTERRUPTED, stop=reason)


async def _end(run: Run, outcome: Outcome) -> None:
    try:
        async with asyncio.timeout(settings.RUN_SAVE_TIMEOUT_SECONDS):
            await run.producer.save(run, outcome)
    except Exception:
        # Readers still get the terminal event; the app's stored state is
        # whatever its last successful save left (its `save` documents that).
        logger.exception("saving a finished run failed key=%s", run.key)
    try:
        terminal = run.producer.terminal_event(run, outcome)
    except Exception:
        logger.exception("building a run's terminal event failed key=%s", run.key)
        terminal = wire.error(FAILED.code, FAILED.message)
    await get_streams().finish(run.key, terminal)
    ended = getattr(run.producer, "ended", None)
    if ended is not None:
        try:
            await ended(run, outcome)
        except Exception:
            logger.exception("a run's end hook failed key=%s", run.key)


async def _regardless_of_cancel(work: Awaitable[None]) -> None:
    """Await `work` to its end even if this task is cancelled meanwhile (any number of times)."""
    task = asyncio.ensure_future(work)
    current = asyncio.current_task()
    while True:
        try:
            await asyncio.shield(task)
            return
        except asyncio.CancelledError:
            if task.done():
                task.result()  # its own cancellation or error, not ours
                return
            if current is not None:
                current.uncancel()


def _log_watcher_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("run control watcher failed", exc_info=task.exception())


async def _watch_control(run: Run) -> None:
    """Hand the run the control messages other processes send it, until `run.end`."""
    layer = get_channel_layer()
    try:
        while run.stop is None:
            message = await layer.receive(run.control_channel)
            if message.get("type") == CONTROL_END:
                return
            run.control(message.get("type"))
    finally:
        run._cancel_orphan_timer()


async def _stop_watcher(run: Run, watcher: asyncio.Task) -> None:
    """End the watcher with a message, cancelling it only if that fails.

    With channels_redis's own layer (still a CHANNEL_LAYER_BACKEND choice),
    cancelling a receive on a process-local channel can drop a message meant
    for another socket of this process (django/channels_redis#366).
    """
    await channel_layer.stop_by_message(
        get_channel_layer(),
        watcher,
        run.control_channel,
        {"type": CONTROL_END},
        timeout_s=WATCHER_STOP_SECONDS,
        what=f"a run's control watcher key={run.key}",
    )


# --- from any process ----------------------------------------------------------------
def follow(key: str, *, after: int = -1) -> AsyncIterator[list[tuple[int, dict]]]:
    """Batches of (seq, event) of a run after `after`, live, through its terminal event.

    A reader that keeps up gets one event per batch; one that fell behind gets
    its whole backlog at once (to send as one frame). Raises
    realtime.streams.StreamGone if the run is unknown here or its producer died.
    """
    return get_streams().read_batches(key, after=after)


async def is_live(key: str) -> bool:
    """True while some process runs `key`."""
    return await get_streams().control_channel(key) is not None


async def cancel(key: str) -> bool:
    """Ask the run, on whichever process, to stop; False if it is not running."""
    return await _control(key, CONTROL_CANCEL)


async def attach(key: str) -> None:
    """A reader (re)joined: the run is not abandoned."""
    await _control(key, CONTROL_ATTACH)


async def detach(key: str) -> None:
    """A reader left: with none left for RUN_ORPHAN_GRACE_SECONDS, the run stops."""
    await _control(key, CONTROL_DETACH)


async def _control(key: str, kind: str) -> bool:
    run = _running.get(key)
    if run is not None:
        # Ours: no trip through the channel layer, whose receive can drop a
        # message when another receiver on this process is cancelled.
        run.control(kind)
        return True
    control = await get_streams().control_channel(key)
    if control is None:
        return False
    await get_channel_layer().send(control, {"type": kind})
    return True


# --- this process ----------------------------------------------------------------------
def running() -> list[Run]:
    """The runs of this process."""
    return list(_running.values())


async def wait_all(timeout_s: float = 10.0) -> None:
    """Wait for this process's runs to end (tests)."""
    tasks = [run.task for run in _running.values() if run.task is not None]
    if tasks:
        await asyncio.wait(tasks, timeout=timeout_s)


async def shutdown(timeout_s: float = 5.0) -> None:
    """Stop every run of this process; each saves and publishes its end as `interrupted`."""
    runs = list(_running.values())
    for run in runs:
        run.request_stop(StopReason.SHUTDOWN)
    tasks = [run.task for run in runs if run.task is not None]
    if tasks:
        await asyncio.wait(tasks, timeout=timeout_s)
