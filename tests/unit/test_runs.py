"""Runs end with exactly one terminal event, whatever is cancelled when.

A scripted producer stands in for an app: each test pauses it at the step
where a cancel, a second cancel, a failing save or the process shutting down
can land, and checks what readers get.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import channel_layers

from realtime import runs, streams
from realtime.runs import Outcome, Status, StopReason

pytestmark = pytest.mark.asyncio


@pytest.fixture(autouse=True)
def fresh_state(settings):
    settings.REDIS_URL = ""
    settings.RUN_ORPHAN_GRACE_SECONDS = 30
    settings.RUN_SAVE_TIMEOUT_SECONDS = 5
    channel_layers.backends.clear()
    streams.reset_streams()
    yield
    streams.reset_streams()


class Scripted:
    """A producer that emits `tokens` events, then waits where a test tells it to."""

    def __init__(self, *, tokens: int = 2) -> None:
        self.tokens = tokens
        self.produced = asyncio.Event()
        self.release = asyncio.Event()  # set to let production finish
        self.in_cleanup = asyncio.Event()
        self.cleanup_done = asyncio.Event()
        self.cleanup_blocks = False
        self.in_save = asyncio.Event()
        self.save_blocks = False
        self.save_fails = False
        self.saved: list[Outcome] = []
        self.terminal_fails = False

    async def produce(self, run: runs.Run) -> None:
        try:
            for index in range(self.tokens):
                await run.emit({"type": "token", "index": index})
            self.produced.set()
            await self.release.wait()
        finally:
            self.in_cleanup.set()
            if self.cleanup_blocks:
                await asyncio.sleep(3600)  # like closing an upstream that hangs
            self.cleanup_done.set()

    async def save(self, run: runs.Run, outcome: Outcome) -> None:
        self.in_save.set()
        if self.save_blocks:
            await asyncio.sleep(3600)
        if self.save_fails:
            raise RuntimeError("database unavailable")
        self.saved.append(outcome)

    def terminal_event(self, run: runs.Run, outcome: Outcome) -> dict:
        if self.terminal_fails:
            raise ValueError("cannot build it")
        return {"type": "end", "status": outcome.status.value, "code": outcome.error_code}


async def start(producer: Scripted, key: str = "run:1") -> runs.Run:
    return await runs.start(key=key, producer=producer)


async def read_all(key: str = "run:1") -> list[dict]:
    return [event async for batch in runs.follow(key) for _, event in batch]


async def ended(run: runs.Run) -> None:
    await asyncio.wait_for(asyncio.shield(run.task), timeout=5)


async def test_a_finished_producer_ends_with_one_complete_event():
    producer = Scripted()
    producer.release.set()
    run = await start(producer)
    await ended(run)
    assert await read_all() == [
        {"type": "token", "index": 0},
        {"type": "token", "index": 1},
        {"type": "end", "status": "complete", "code": ""},
    ]
    assert producer.saved == [Outcome(Status.COMPLETE)]
    assert runs.running() == []


async def test_the_control_watcher_ends_by_message_not_by_cancel():
    # A cancelled channels_redis receive can drop another socket's message.
    producer = Scripted()
    run = await start(producer)
    await producer.produced.wait()
    [watcher] = [t for t in asyncio.all_tasks() if t.get_name() == "run-control:run:1"]
    producer.release.set()
    await run.task
    assert watcher.done() and not watcher.cancelled()


async def test_cancel_from_the_control_channel_ends_it_as_cancelled():
    producer = Scripted()
    run = await start(producer)
    await producer.produced.wait()
    assert await runs.cancel("run:1") is True
    await ended(run)
    assert (await read_all())[-1] == {"type": "end", "status": "cancelled", "code": ""}
    assert await runs.cancel("run:1") is False  # not running any more


async def test_a_second_cancel_during_the_producers_cleanup_still_publishes_the_end():
    producer = Scripted()
    producer.cleanup_blocks = True
    run = await start(producer)
    await producer.produced.wait()
    run.request_stop(StopReason.CANCEL)
    await producer.in_cleanup.wait()
    run.request_stop(StopReason.SHUTDOWN)  # lands inside the producer's cleanup
    await ended(run)
    assert (await read_all())[-1] == {"type": "end", "status": "cancelled", "code": ""}
    assert producer.saved == [Outcome(Status.CANCELLED, stop=StopReason.CANCEL)]


async def test_cancels_during_the_final_save_do_not_skip_the_end():
    producer = Scripted()
    producer.release.set()
    save_started = asyncio.Event()
    real_save = producer.save

    async def slow_save(run, outcome):
        save_started.set()
        await asyncio.sleep(0.05)
        await real_save(run, outcome)

    producer.save = slow_save
    run = await start(producer)
    await save_started.wait()
    run.task.cancel()
    await asyncio.sleep(0.01)
    run.task.cancel()
    await ended(run)
    assert (await read_all())[-1] == {"type": "end", "status": "complete", "code": ""}
    assert producer.saved == [Outcome(Status.COMPLETE)]


async def test_shutdown_after_a_user_cancel_keeps_the_cancel():
    producer = Scripted()
    producer.cleanup_blocks = True
    run = await start(producer)
    await producer.produced.wait()
    await runs.cancel("run:1")
    await producer.in_cleanup.wait()
    await runs.shutdown(timeout_s=5)
    assert run.task.done()
    assert (await read_all())[-1]["status"] == "cancelled"


async def test_shutdown_ends_a_running_producer_as_interrupted():
    producer = Scripted()
    run = await start(producer)
    await producer.produced.wait()
    await runs.shutdown(timeout_s=5)
    assert run.task.done()
    assert (await read_all())[-1] == {"type": "end", "status": "error", "code": "interrupted"}


async def test_the_abandon_timer_racing_a_cancel_gives_one_end(settings):
    settings.RUN_ORPHAN_GRACE_SECONDS = 0
    producer = Scripted()
    producer.cleanup_blocks = True
    run = await start(producer)
    await producer.produced.wait()
    await runs.detach("run:1")  # the only reader leaves: abandon at once
    await producer.in_cleanup.wait()
    await runs.cancel("run:1")  # arrives while the abandoned run cleans up
    await ended(run)
    events = await read_all()
    assert [e["type"] for e in events].count("end") == 1
    assert events[-1] == {"type": "end", "status": "cancelled", "code": "abandoned"}


async def test_a_returning_reader_keeps_an_orphaned_run_alive(settings):
    settings.RUN_ORPHAN_GRACE_SECONDS = 0.2
    producer = Scripted()
    run = await start(producer)
    await producer.produced.wait()
    await runs.detach("run:1")
    await runs.attach("run:1")
    await asyncio.sleep(0.4)  # past the grace period: the run must still be going
    assert not run.task.done()
    producer.release.set()
    await ended(run)
    assert (await read_all())[-1]["status"] == "complete"


async def test_a_failing_save_still_publishes_the_end():
    producer = Scripted()
    producer.release.set()
    producer.save_fails = True
    run = await start(producer)
    await ended(run)
    assert (await read_all())[-1] == {"type": "end", "status": "complete", "code": ""}


async def test_a_save_that_hangs_is_given_up_after_the_timeout(settings):
    settings.RUN_SAVE_TIMEOUT_SECONDS = 0.1
    producer = Scripted()
    producer.release.set()
    producer.save_blocks = True
    run = await start(producer)
    await ended(run)
    assert (await read_all())[-1]["type"] == "end"


async def test_a_failing_terminal_event_builder_gives_a_generic_error_end():
    producer = Scripted()
    producer.release.set()
    producer.terminal_fails = True
    run = await start(producer)
    await ended(run)
    last = (await read_all())[-1]
    assert (last["type"], last["code"], last["retryable"]) == ("error", "internal_error", True)


async def test_a_producer_error_ends_the_run_with_its_code():
    class Failing(Scripted):
        async def produce(self, run):
            await run.emit({"type": "token", "index": 0})
            raise runs.RunError("upstream_error", "The model failed.", retryable=True)

    run = await start(Failing())
    await ended(run)
    assert await read_all() == [
        {"type": "token", "index": 0},
        {"type": "end", "status": "error", "code": "upstream_error"},
    ]


async def test_an_unexpected_exception_is_logged_and_ends_the_run(caplog):
    class Broken(Scripted):
        async def produce(self, run):
            raise KeyError("bug")

    run = await start(Broken())
    await ended(run)
    assert (await read_all())[-1] == {"type": "end", "status": "error", "code": "internal_error"}
    assert any("run failed" in r.getMessage() and r.exc_info for r in caplog.records)
