"""Room fan-out benchmark: how evenly an AI turn's tokens reach every participant of a room.

Run from the repository root:

    python -m bench.room_fanout                  # rooms of 10, 50, 100: Redis + PostgreSQL on 2
                                                 # daphnes (every --fanout x --layer), then embedded
    python -m bench.room_fanout --modes redis-pg --fanout streams,group --layer core
    python -m bench.room_fanout --quick          # smoke: rooms of 4 and 10, 2 turns, 1 combination
    python -m bench.room_fanout --pg-database bench_mine --redis-url redis://127.0.0.1:6379/2

It starts its own fakeai (TTFT 200 ms, 50 tokens/s, 50 tokens), creates users
`bench-<i>` with API tokens and one fresh public room (AI mode "every") per
room size and combination, then for each room size N connects N participants
to `/ws/room/<slug>/` (participant i on daphne i mod K, as a load balancer
would deal them), waits for the presence announcements to settle, and plays
`--turns` AI turns: one participant (a different one each turn, so the turns
alternate between processes) sends a message, and the next turn starts once
every participant has the turn's `ai_complete`.

Combinations, each on freshly started daphnes (settings are read at start):
- `--modes`: `redis-pg` (PostgreSQL `--pg-database`, recreated, and Redis
  `--redis-url`, flushed; `--processes` daphnes, 2 by default) and `embedded`
  (SQLite and the in-memory layer, one daphne, for reference);
- `--fanout` (`ROOM_FANOUT`): `streams`, the AI's tokens reach each process
  once through the core's streams and every local socket reads that copy;
  `group`, each token is `group_send` to the room's group;
- `--layer` (`CHANNEL_LAYER_BACKEND`, Redis mode only): `core`
  (realtime.channel_layer.RedisChannelLayer, channels_redis's core layer with
  one reader per process), `upstream-core` (channels_redis.core.RedisChannelLayer) or `pubsub`
  (channels_redis.pubsub.RedisPubSubChannelLayer), or a dotted path.
What each daphne actually runs with is read back from its settings and shown
beside the row: a setting the site does not know yet is marked.

Measured per AI token, identified by (message_id, index): a frame that
coalesces several tokens carries the last one's index, so it covers the
indices after the previous frame's up to its own, and its arrival time is each
of those tokens' arrival. The client stamps every frame with `time.time()` as
its bytes come off the socket (before any parsing, which happens after the
room's turns), so:
- spread: last participant's receipt minus the first's, per token;
- delay: each receipt minus the token's server `timestamp` (ms, same clock);
  a token that only ever arrived inside a coalesced frame has no timestamp of
  its own and is measured from its frame's, a lower bound (counted apart);
- lost: participant-turns whose concatenated `ai_token` text is not the
  `ai_complete` content (or whose `ai_complete` never came); reordered: token
  frames whose index did not increase;
- CPU% and peak RSS of each daphne during the turns, and this load
  generator's CPU% and event-loop lag: every participant runs in this one
  asyncio process, and a busy client inflates the spread (flagged).

Target: spread p99 < 25 ms in rooms of 100 across 2 processes (Redis +
PostgreSQL), with no token lost or reordered. Results:
bench/results/room_fanout-<UTC time>.json and room_fanout-latest.json (not
replaced by --quick or --site-env runs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake
from websockets.frames import Frame, Opcode

from bench.chat_load import round_robin
from bench.clients import CONNECT_CONCURRENCY, CONNECT_TIMEOUT_S
from bench.harness import (
    ROOT,
    SAMPLE_INTERVAL_S,
    ResourceSampler,
    Server,
    code_version,
    create_users,
    flush_redis,
    machine_info,
    manage,
    print_log_problems,
    server_log_report,
    site_environment,
    start_daphnes,
    start_fakeai,
    write_json,
)
from bench.stats import fmt, pcts, percentile, rnd

TARGET_PARTICIPANTS = 100
TARGET_PROCESSES = 2
TARGET_SPREAD_P99_MS = 25.0
REDIS_PG, EMBEDDED = "redis-pg", "embedded"
LAYERS = {
    "core": "realtime.channel_layer.RedisChannelLayer",
    "upstream-core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}
FANOUTS = ("streams", "group")
# The load generator is "busy" past these: its own queueing is then inside the spread.
CLIENT_CPU_LIMIT_PERCENT = 70.0
CLIENT_LAG_LIMIT_MS = 5.0
LAG_PROBE_INTERVAL_S = 0.005
SETTLE_QUIET_S = 0.5  # no frame for this long: the presence announcements are over
SETTLE_MAX_S = 20.0
PAUSE_BETWEEN_ROOMS_S = 1.0
STAMP = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


# --- parameters -------------------------------------------------------------------
@dataclass(frozen=True)
class Combo:
    """One configuration of the site: its mode, fan-out and channel layer."""

    mode: str
    fanout: str
    layer: str  # a LAYERS name, a dotted path, or "memory" (embedded)

    @property
    def label(self) -> str:
        return f"{self.mode}-{self.fanout}-{self.layer.rsplit('.', 1)[-1]}"

    @property
    def env(self) -> dict[str, str]:
        env = {"ROOM_FANOUT": self.fanout}
        if self.mode == REDIS_PG:
            env["CHANNEL_LAYER_BACKEND"] = LAYERS.get(self.layer, self.layer)
        return env


@dataclass(frozen=True)
class Params:
    participants: list[int]
    turns: int
    ttft_ms: float
    tps: float
    tokens: int
    modes: tuple[str, ...]
    fanouts: tuple[str, ...]
    layers: tuple[str, ...]
    processes: int
    pg_url: str
    pg_database: str
    redis_url: str
    turn_timeout_s: float
    max_seconds: float
    turn_pause_s: float = 0.5
    quick: bool = False
    site_env: dict[str, str] = field(default_factory=dict)

    def combos(self, mode: str) -> list[Combo]:
        layers = self.layers if mode == REDIS_PG else ("memory",)
        return [Combo(mode, fanout, layer) for fanout in self.fanouts for layer in layers]

    def process_count(self, mode: str) -> int:
        return self.processes if mode == REDIS_PG else 1


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def parse_args(argv: list[str] | None = None) -> Params:
    parser = argparse.ArgumentParser(
        prog="python -m bench.room_fanout", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--participants", default="10,50,100", help="comma-separated room sizes")
    parser.add_argument("--turns", type=int, default=5, help="AI turns per room")
    parser.add_argument("--ttft-ms", type=float, default=200.0, help="fakeai time to first token")
    parser.add_argument("--tps", type=float, default=50.0, help="fakeai tokens/second")
    parser.add_argument("--tokens", type=int, default=50, help="fakeai reply length in tokens")
    parser.add_argument(
        "--modes",
        default=f"{REDIS_PG},{EMBEDDED}",
        help="redis-pg (PostgreSQL + Redis, --processes daphnes), embedded (SQLite, in-memory "
        "layer, 1 daphne), or both",
    )
    parser.add_argument(
        "--fanout", default=",".join(FANOUTS), help="ROOM_FANOUT values: streams, group"
    )
    parser.add_argument(
        "--layer",
        default="core,pubsub",
        help="CHANNEL_LAYER_BACKEND in redis-pg mode: core, upstream-core, pubsub or a dotted path",
    )
    parser.add_argument(
        "--processes", type=int, default=TARGET_PROCESSES, help="daphnes in redis-pg mode"
    )
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--pg-database", default="bench_room_fanout")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument(
        "--turn-timeout-s", type=float, default=60.0, help="longest wait for one turn"
    )
    parser.add_argument(
        "--turn-pause-s",
        type=float,
        default=0.5,
        help="pause after every participant has a turn's end, before the next message (the "
        "room's lease is free by then, so the turn runs on the sender's process)",
    )
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="cap on the whole run")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: rooms of 4 and 10, 2 turns, the first mode, fan-out and layer only",
    )
    parser.add_argument(
        "--site-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="what-if: extra setting for every daphne, e.g. STREAM_FLUSH_MS=5 (repeatable)",
    )
    args = parser.parse_args(argv)
    site_env = dict(item.split("=", 1) for item in args.site_env if "=" in item)
    if len(site_env) != len(args.site_env):
        parser.error("--site-env takes NAME=VALUE")
    try:
        participants = [int(n) for n in _csv(args.participants)]
    except ValueError:
        parser.error("--participants takes comma-separated numbers")
    modes, fanouts, layers = _csv(args.modes), _csv(args.fanout), _csv(args.layer)
    turns = args.turns
    if args.quick:
        participants, turns = [4, 10], 2
        modes, fanouts, layers = modes[:1], fanouts[:1], layers[:1]
    if not participants or min(participants) < 2 or turns < 1:
        parser.error("rooms need at least 2 participants, and --turns must be positive")
    if not modes or not set(modes) <= {REDIS_PG, EMBEDDED}:
        parser.error("--modes takes redis-pg, embedded or both")
    if not fanouts or not set(fanouts) <= set(FANOUTS):
        parser.error("--fanout takes streams, group or both")
    if not layers or any(layer not in LAYERS and "." not in layer for layer in layers):
        parser.error("--layer takes core, pubsub or a dotted path")
    if args.processes < 1:
        parser.error("--processes must be positive")
    if not args.pg_database.startswith("bench"):
        parser.error("--pg-database is dropped and recreated: its name must start with 'bench'")
    if REDIS_PG in modes and not re.search(r"/\d+$", args.redis_url):
        parser.error("--redis-url must name a database number (it is flushed)")
    return Params(
        participants=participants,
        turns=turns,
        ttft_ms=args.ttft_ms,
        tps=args.tps,
        tokens=args.tokens,
        modes=modes,
        fanouts=fanouts,
        layers=layers,
        processes=args.processes,
        pg_url=args.pg_url.rstrip("/"),
        pg_database=args.pg_database,
        redis_url=args.redis_url,
        turn_timeout_s=args.turn_timeout_s,
        turn_pause_s=args.turn_pause_s,
        max_seconds=args.max_seconds,
        quick=args.quick,
        site_env=site_env,
    )


# --- what a participant received (pure) ----------------------------------------------------
@dataclass(frozen=True)
class TokenFrame:
    """One `ai_token` frame as one participant received it."""

    at: float  # wall-clock seconds when its bytes arrived
    index: int  # the last token's index
    content: str
    timestamp_ms: int | None  # server time the last token was produced


@dataclass
class Received:
    """One participant's frames, parsed: token frames and the terminal event per AI message."""

    tokens: dict[int, list[TokenFrame]] = field(default_factory=lambda: defaultdict(list))
    terminals: dict[int, dict] = field(default_factory=dict)  # message_id -> terminal event
    first_seen: dict[int, float] = field(default_factory=dict)  # message_id -> first frame
    after_terminal: Counter = field(default_factory=Counter)  # message_id -> late token frames
    other: Counter = field(default_factory=Counter)  # other event types


TERMINAL_TYPES = frozenset({"ai_complete", "ai_cancelled"})


def parse_frames(frames: Sequence[tuple[float, bytes | str]]) -> Received:
    """A participant's recorded (arrival, payload) frames, in arrival order, parsed."""
    received = Received()
    for at, data in frames:
        event = json.loads(data)
        kind = event.get("type")
        message_id = event.get("message_id")
        if kind == "ai_token":
            frame = TokenFrame(at, event["index"], event["content"], event.get("timestamp"))
            received.tokens[message_id].append(frame)
            if message_id in received.terminals:
                received.after_terminal[message_id] += 1
        elif kind in TERMINAL_TYPES or (kind == "error" and message_id is not None):
            received.terminals.setdefault(message_id, event)
        else:
            received.other[kind] += 1
            continue
        received.first_seen.setdefault(message_id, at)
    return received


@dataclass
class Attributed:
    """One participant's tokens of one AI message, each with its carrying frame's arrival."""

    arrivals: dict[int, float] = field(default_factory=dict)  # token index -> arrival (s)
    frame_stamps: dict[int, int | None] = field(default_factory=dict)  # -> its frame's timestamp
    own_stamps: dict[int, int] = field(default_factory=dict)  # a frame's last token's timestamp
    text: str = ""  # the frames' content concatenated, in arrival order
    frames: int = 0
    reordered: int = 0  # frames whose index did not increase
    last_index: int = -1


def attribute(frames: Sequence[TokenFrame]) -> Attributed:
    """Tokens covered by each frame: the previous frame's index + 1 up to its own index."""
    result = Attributed()
    for frame in frames:
        result.frames += 1
        result.text += frame.content
        if frame.index <= result.last_index:
            result.reordered += 1
            continue
        for index in range(result.last_index + 1, frame.index + 1):
            result.arrivals[index] = frame.at
            result.frame_stamps[index] = frame.timestamp_ms
        if frame.timestamp_ms is not None:
            result.own_stamps[frame.index] = frame.timestamp_ms
        result.last_index = frame.index
    return result


@dataclass(frozen=True)
class Delivery:
    """Whether one participant got one AI message whole and in order."""

    terminal: str | None  # ai_complete | ai_cancelled | error | None (never came)
    text_matches: bool  # the tokens' concatenation equals the terminal event's content
    reordered: int  # token frames whose index did not increase
    missing_tokens: int  # indices up to the message's last that no frame covered
    after_terminal: int = 0  # token frames that came after the terminal event

    @property
    def lost(self) -> bool:
        return self.terminal is None or not self.text_matches or self.missing_tokens > 0

    @property
    def intact(self) -> bool:
        return not self.lost and self.reordered == 0 and self.after_terminal == 0


def check_delivery(
    att: Attributed, terminal: dict | None, *, last_index: int, after_terminal: int = 0
) -> Delivery:
    """`last_index`: the message's last token index, as any participant saw it."""
    final = None if terminal is None else terminal.get("content", "")
    missing = sum(1 for index in range(last_index + 1) if index not in att.arrivals)
    return Delivery(
        terminal=None if terminal is None else terminal["type"],
        text_matches=final is not None and att.text == final,
        reordered=att.reordered,
        missing_tokens=missing,
        after_terminal=after_terminal,
    )


def token_spreads_ms(arrivals: Sequence[dict[int, float]]) -> dict[int, float]:
    """Per token index: last receipt minus first, over the participants that got it (2 or more)."""
    by_index: dict[int, list[float]] = defaultdict(list)
    for participant in arrivals:
        for index, at in participant.items():
            by_index[index].append(at)
    return {
        index: (max(times) - min(times)) * 1000
        for index, times in sorted(by_index.items())
        if len(times) > 1
    }


def token_stamps(attributed: Sequence[Attributed]) -> dict[int, int]:
    """Each token's own server timestamp, from any participant whose frame ended on it."""
    stamps: dict[int, int] = {}
    for att in attributed:
        for index, stamp in att.own_stamps.items():
            stamps.setdefault(index, stamp)
    return stamps


def receipt_delays_ms(att: Attributed, stamps: dict[int, int]) -> tuple[list[float], int]:
    """(each token's arrival minus its server timestamp, how many used their frame's stamp).

    A token never seen at the end of a frame has no timestamp of its own; its
    frame's (its last token's, produced later) makes the delay a lower bound.
    """
    delays, inexact = [], 0
    for index, at in att.arrivals.items():
        stamp = stamps.get(index)
        if stamp is None:
            stamp = att.frame_stamps.get(index)
            if stamp is None:
                continue
            inexact += 1
        delays.append(at * 1000 - stamp)
    return delays, inexact


def fastest_process(delays_by_server: dict[str, list[float]]) -> str | None:
    """The process whose participants got a turn's tokens soonest (median delay).

    With ROOM_FANOUT=streams that is the process that ran the turn (the others
    get its tokens through Redis, a hop later); with a group send every
    process gets them through the channel layer, and this tells little.
    """
    medians = {name: percentile(values, 50) for name, values in delays_by_server.items() if values}
    return min(medians, key=medians.__getitem__) if medians else None


def analyze_room(
    received: Sequence[Received], servers: Sequence[str], senders: Sequence[str] = ()
) -> dict:
    """Spread, delays and delivery of a room's AI messages.

    `servers[i]`: participant i's process; `senders[k]`: the process of the
    participant whose message the k-th AI message answers (the turn runs
    there: the room's lease is free when it speaks); where a message has no
    sender, the fastest process stands in.
    """
    first_seen: dict[int, float] = {}
    for participant in received:
        for message_id, at in participant.first_seen.items():
            first_seen[message_id] = min(at, first_seen.get(message_id, at))
    message_ids = sorted(first_seen, key=first_seen.__getitem__)
    spreads: list[float] = []
    delays: list[float] = []
    delays_by_server: dict[str, list[float]] = defaultdict(list)
    delays_by_role: dict[str, list[float]] = {"sender": [], "other": []}
    inexact = frames = covered = 0
    lost, reordered, late, missing, by_terminal = 0, 0, 0, 0, Counter()
    problems: list[dict] = []
    messages = []
    for number_of_message, message_id in enumerate(message_ids):
        attributed = [attribute(p.tokens.get(message_id, [])) for p in received]
        last_index = max(att.last_index for att in attributed)
        stamps = token_stamps(attributed)
        message_spreads = token_spreads_ms([att.arrivals for att in attributed])
        spreads.extend(message_spreads.values())
        message_delays: dict[str, list[float]] = defaultdict(list)
        for number, (participant, att) in enumerate(zip(received, attributed, strict=True)):
            delivery = check_delivery(
                att,
                participant.terminals.get(message_id),
                last_index=last_index,
                after_terminal=participant.after_terminal[message_id],
            )
            by_terminal[delivery.terminal or "none"] += 1
            lost += delivery.lost
            reordered += delivery.reordered
            late += delivery.after_terminal
            missing += delivery.missing_tokens
            if not delivery.intact and len(problems) < 20:
                problem = {"message_id": message_id, "participant": number}
                problems.append(problem | asdict(delivery))
            receipt, not_own = receipt_delays_ms(att, stamps)
            message_delays[servers[number]].extend(receipt)
            inexact += not_own
            frames += att.frames
            covered += len(att.arrivals)
        fastest = fastest_process(message_delays)
        sender = senders[number_of_message] if number_of_message < len(senders) else fastest
        for name, values in message_delays.items():
            delays.extend(values)
            delays_by_server[name].extend(values)
            delays_by_role["sender" if name == sender else "other"].extend(values)
        messages.append(
            {
                "message_id": message_id,
                "tokens": last_index + 1,
                "sender_process": sender,
                "fastest_process": fastest,
                "spread_ms": pcts(message_spreads.values(), qs=(50, 99)),
            }
        )
    return {
        "messages": messages,
        "tokens": sum(m["tokens"] for m in messages),
        "spread_ms": pcts(spreads) | {"max": rnd(max(spreads, default=None))},
        "delay_ms": pcts(delays, qs=(50, 90, 99)) | {"max": rnd(max(delays, default=None))},
        "delay_ms_by_process": {
            name: pcts(values, qs=(50, 99)) for name, values in sorted(delays_by_server.items())
        },
        # Participants on the process of the turn's sender (it runs the turn), and the others.
        "delay_ms_sender_process": pcts(delays_by_role["sender"], qs=(50, 99)),
        "delay_ms_other_processes": pcts(delays_by_role["other"], qs=(50, 99)),
        "delays_from_frame_stamp": inexact,
        "receipts": covered,
        # 1.0: one frame per token; lower: frames coalesced several tokens.
        "frames_per_token": rnd(frames / covered, 3) if covered else None,
        "lost": lost,
        "reordered": reordered,
        "tokens_after_terminal": late,
        "missing_tokens": missing,
        "terminals": dict(by_terminal),
        "problems": problems,
        "spread_ms_samples": [rnd(s) for s in spreads],
    }


# --- the client side -----------------------------------------------------------------------
_TYPE = re.compile(rb'\{\s*"type"\s*:\s*"([a-z_]+)"')
_TERMINAL = frozenset({b"ai_complete", b"ai_cancelled"})


def frame_type(data: bytes) -> bytes:
    """An event's `type` without decoding it all (our events put `type` first)."""
    match = _TYPE.match(data)
    if match is not None:
        return match.group(1)
    return str(json.loads(data).get("type", "")).encode()


class TurnGate:
    """Wakes the benchmark when every participant has ended the turn (or something failed)."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.ended = 0
        self.failures: list[str] = []
        self.event = asyncio.Event()

    def end(self) -> None:
        self.ended += 1
        if self.ended >= self.expected:
            self.event.set()

    def fail(self, reason: str) -> None:
        self.failures.append(reason)
        self.event.set()


class RecordingConnection(ClientConnection):
    """A client socket that stamps each text frame as its bytes arrive and keeps it unparsed.

    The stamp is taken in `data_received`, when the event loop hands over the
    socket's bytes: no queue, no waiting coroutine, no JSON in between. Frames
    are recorded in place of websockets' receive queue (nobody calls `recv`).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.frames: list[tuple[float, bytes]] = []
        self.ready = asyncio.Event()  # room_state came
        self.gate: TurnGate | None = None
        self.turn_ended = False
        self.lost_connection = False
        self.errors: list[bytes] = []
        self.busy_s = 0.0  # time spent handling received bytes (this client's cost)
        self._arrived = 0.0

    def data_received(self, data: bytes) -> None:
        self._arrived = time.time()
        started = time.perf_counter()
        super().data_received(data)
        self.busy_s += time.perf_counter() - started

    def process_event(self, event) -> None:
        if (
            self.response is None
            or not isinstance(event, Frame)
            or event.opcode is not Opcode.TEXT
            or not event.fin
        ):
            super().process_event(event)
            return
        data = bytes(event.data)
        self.frames.append((self._arrived, data))
        kind = frame_type(data)
        if kind == b"ai_token":
            return
        if kind in _TERMINAL:
            self._end_turn()
        elif kind == b"room_state":
            self.ready.set()
        elif kind == b"error":
            self.errors.append(data)
            if b'"message_id"' in data:
                self._end_turn()
            elif self.gate is not None:
                self.gate.fail(data.decode(errors="replace")[:300])

    def _end_turn(self) -> None:
        if self.gate is not None and not self.turn_ended:
            self.turn_ended = True
            self.gate.end()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost_connection = True
        self.ready.set()
        self._end_turn()


async def open_participant(url: str, token: str, slots: asyncio.Semaphore) -> RecordingConnection:
    """A participant's socket (no compression or keepalive: the client stays cheap)."""
    async with slots:
        return await connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            create_connection=RecordingConnection,
            compression=None,
            ping_interval=None,
            open_timeout=CONNECT_TIMEOUT_S,
            close_timeout=2,
            max_size=None,
        )


class LagProbe:
    """How late this process's event loop wakes a timer: queueing inside every client stamp."""

    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(LAG_PROBE_INTERVAL_S)
            self.lags_ms.append((loop.time() - started - LAG_PROBE_INTERVAL_S) * 1000)

    def __enter__(self) -> LagProbe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc) -> None:
        if self._task is not None:
            self._task.cancel()


def room_url(server: Server, slug: str) -> str:
    return server.url.replace("http://", "ws://", 1) + f"/ws/room/{slug}/"


@dataclass
class RoomRun:
    """One room's turns, as recorded (parsed afterwards)."""

    participants: int
    planned_turns: int
    frames: list[list[tuple[float, bytes]]]
    servers: list[str]
    turns: list[dict]
    resources: dict
    lags_ms: list[float]
    client_busy_s: float
    connect_failures: Counter
    ramp_s: float
    wall_s: float


async def wait_quiet(connections: Sequence[RecordingConnection]) -> float:
    """Wait until no frame arrived for SETTLE_QUIET_S (presence announcements); the time waited."""
    started = time.monotonic()
    count = -1
    while time.monotonic() - started < SETTLE_MAX_S:
        now = sum(len(c.frames) for c in connections)
        if now == count:
            break
        count = now
        await asyncio.sleep(SETTLE_QUIET_S)
    return time.monotonic() - started


async def run_room(
    slug: str,
    n: int,
    *,
    servers: list[Server],
    tokens: list[str],
    params: Params,
    watched: dict[str, psutil.Process],
) -> RoomRun:
    """N participants in one room, then `params.turns` AI turns, one after another."""
    slots = asyncio.Semaphore(CONNECT_CONCURRENCY)
    ramp_started = time.monotonic()
    dealt = [round_robin(i, servers) for i in range(n)]
    attempts = await asyncio.gather(
        *(open_participant(room_url(dealt[i], slug), tokens[i], slots) for i in range(n)),
        return_exceptions=True,
    )
    failures: Counter = Counter()
    connections: list[RecordingConnection] = []
    names: list[str] = []
    unexpected = None
    for server, attempt in zip(dealt, attempts, strict=True):
        if isinstance(attempt, (OSError, TimeoutError, InvalidHandshake)):
            failures[type(attempt).__name__] += 1
        elif isinstance(attempt, BaseException):
            unexpected = attempt
        else:
            connections.append(attempt)
            names.append(server.name)
    try:
        if unexpected is not None:
            raise unexpected
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await asyncio.gather(*(c.ready.wait() for c in connections))
        await wait_quiet(connections)
        ramp_s = time.monotonic() - ramp_started
        for connection in connections:
            connection.frames.clear()
            connection.busy_s = 0.0
        turns = []
        with LagProbe() as probe, ResourceSampler(watched) as sampler:
            started = time.monotonic()
            for turn in range(params.turns if connections else 0):
                if turn:
                    await asyncio.sleep(params.turn_pause_s)
                turns.append(await play_turn(turn, connections, names, params))
            wall_s = time.monotonic() - started
        return RoomRun(
            participants=n,
            planned_turns=params.turns,
            frames=[list(c.frames) for c in connections],
            servers=names,
            turns=turns,
            resources=sampler.result,
            lags_ms=probe.lags_ms,
            client_busy_s=sum(c.busy_s for c in connections),
            connect_failures=failures,
            ramp_s=ramp_s,
            wall_s=wall_s,
        )
    finally:
        await asyncio.gather(
            *(asyncio.shield(c.close()) for c in connections), return_exceptions=True
        )


async def play_turn(
    turn: int, connections: list[RecordingConnection], names: list[str], params: Params
) -> dict:
    """One participant speaks; wait until everyone has the AI's terminal event."""
    live = [c for c in connections if not c.lost_connection]
    gate = TurnGate(len(live))
    for connection in connections:
        connection.gate, connection.turn_ended = gate, connection.lost_connection
    sender = turn % len(connections)
    payload = {"type": "message", "content": f"Room benchmark, turn {turn + 1}: say something."}
    sent = time.time()
    status = "ok"
    try:
        await connections[sender].send(json.dumps(payload))
        async with asyncio.timeout(params.turn_timeout_s):
            await gate.event.wait()
        if gate.failures:
            status = "error"
    except TimeoutError:
        status = "timeout"
    except Exception as exc:  # the sender's socket closed under it
        status = f"send_failed:{type(exc).__name__}"
    for connection in connections:
        connection.gate = None
    return {
        "turn": turn,
        "sender": sender,
        "sender_process": names[sender],
        "status": status,
        "ended": gate.ended,
        "expected": gate.expected,
        "failures": gate.failures[:5],
        "seconds": rnd(time.time() - sent, 3),
    }


# --- one combination ---------------------------------------------------------------------
SETTINGS_SCRIPT = """
import json
from django.conf import settings
print(json.dumps({
    "ROOM_FANOUT": getattr(settings, "ROOM_FANOUT", None),
    "CHANNEL_LAYER_BACKEND": settings.CHANNEL_LAYERS["default"]["BACKEND"],
}))
"""

ROOMS_SCRIPT = """
import json
from django.contrib.auth import get_user_model
from rooms.services import create_room
owner = get_user_model().objects.get(username="bench-0")
names = {names!r}
print(json.dumps([
    create_room(owner=owner, name=name, is_private=False, ai_mode="every").slug for name in names
]))
"""


def effective_settings(env: dict) -> dict:
    """What the site makes of this environment: its fan-out and channel layer backend."""
    out = manage("shell", "-c", SETTINGS_SCRIPT, env=env)
    return json.loads(out.strip().splitlines()[-1])


def create_rooms(names: list[str], *, env: dict) -> list[str]:
    """Public rooms owned by bench-0, AI mode "every"; their slugs."""
    out = manage("shell", "-c", ROOMS_SCRIPT.format(names=names), env=env)
    return json.loads(out.strip().splitlines()[-1])


def settings_notes(combo: Combo, effective: dict) -> list[str]:
    """Where the site does not run what the combination asks for."""
    notes = []
    if effective.get("ROOM_FANOUT") is None:
        notes.append("ROOM_FANOUT unknown to the site (ignored)")
    elif effective["ROOM_FANOUT"] != combo.fanout:
        notes.append(f"ROOM_FANOUT is {effective['ROOM_FANOUT']}")
    wanted = combo.env.get("CHANNEL_LAYER_BACKEND")
    if wanted and effective.get("CHANNEL_LAYER_BACKEND") != wanted:
        notes.append(f"layer is {effective.get('CHANNEL_LAYER_BACKEND')} (not switched)")
    return notes


async def measure_combo(
    combo: Combo,
    params: Params,
    *,
    daphnes: list[Server],
    fakeai: Server,
    tokens: list[str],
    slugs: dict[int, str],
    warm_slug: str,
) -> list[tuple[int, RoomRun]]:
    watched = {server.name: psutil.Process(server.pid) for server in daphnes}
    watched["fakeai"] = psutil.Process(fakeai.pid)
    watched["client"] = psutil.Process()
    # Warm up (imports, first connections, the first turn on each process); not recorded.
    warm = replace(params, turns=len(daphnes))
    await run_room(
        warm_slug, 2 * len(daphnes), servers=daphnes, tokens=tokens, params=warm, watched={}
    )
    runs = []
    for n in params.participants:
        print(f"{combo.label} N={n} ...", file=sys.stderr, flush=True)
        await asyncio.sleep(PAUSE_BETWEEN_ROOMS_S)
        room = await run_room(
            slugs[n], n, servers=daphnes, tokens=tokens, params=params, watched=watched
        )
        runs.append((n, room))
    return runs


def summarize(combo: Combo, room: RoomRun, *, daphne_names: list[str]) -> dict:
    received = [parse_frames(frames) for frames in room.frames]
    analysis = analyze_room(received, room.servers, [turn["sender_process"] for turn in room.turns])
    processes = room.resources["processes"]
    client_cpu = processes.get("client", {}).get("cpu_percent")
    lag = pcts(room.lags_ms, qs=(50, 99))
    receipts = analysis["receipts"]
    turns_ok = sum(turn["status"] == "ok" for turn in room.turns)
    incomplete = room.participants - len(room.frames)
    row = {
        "mode": combo.mode,
        "fanout": combo.fanout,
        "layer": combo.layer,
        "participants": room.participants,
        "connected": len(room.frames),
        "connect_failures": dict(room.connect_failures),
        "turns": room.planned_turns,
        "turns_ok": turns_ok,
        **{k: v for k, v in analysis.items() if k != "spread_ms_samples"},
        "server_processes": [
            {"name": name, **processes[name]} for name in daphne_names if name in processes
        ],
        "fakeai_cpu_percent": processes.get("fakeai", {}).get("cpu_percent"),
        "client_cpu_percent": client_cpu,
        "client_loop_lag_ms": lag,
        # This client's own time per token receipt, for the whole room (not per socket).
        "client_us_per_receipt": rnd(1e6 * room.client_busy_s / receipts, 1) if receipts else None,
        "client_limited": client_limited(client_cpu, lag["p99"]),
        "turn_details": room.turns,
        "ramp_s": rnd(room.ramp_s, 3),
        "wall_s": rnd(room.wall_s, 3),
        "resources": room.resources,
        "spread_ms_samples": analysis["spread_ms_samples"],
    }
    # A participant that never connected lost every token.
    row["lost"] += incomplete * row["turns"]
    row["intact"] = (
        row["lost"] == 0
        and row["reordered"] == 0
        and row["tokens_after_terminal"] == 0
        and turns_ok == row["turns"]
        and not incomplete
    )
    return row


CLIENT_BUSY, CLIENT_LATE = "client-limited", "client loop late"


def client_limited(cpu_percent: float | None, lag_p99_ms: float | None) -> str | None:
    """Why this load generator's own queueing shows in the spread, if it does.

    CLIENT_BUSY: it used most of a core itself. CLIENT_LATE: its loop woke
    late while it was not busy: it waited for a core the machine's other
    processes held.
    """
    if (cpu_percent or 0) > CLIENT_CPU_LIMIT_PERCENT:
        return CLIENT_BUSY
    if (lag_p99_ms or 0) > CLIENT_LAG_LIMIT_MS:
        return CLIENT_LATE
    return None


def judge(rows: list[dict], *, processes: int) -> dict:
    """PASS/FAIL of the Redis + PostgreSQL rows at TARGET_PARTICIPANTS on TARGET_PROCESSES."""
    target = {
        "participants": TARGET_PARTICIPANTS,
        "processes": TARGET_PROCESSES,
        "spread_p99_ms_below": TARGET_SPREAD_P99_MS,
        "intact": True,
        "runs": [],
        "verdict": "NOT EVALUATED",
    }
    if processes != TARGET_PROCESSES:
        target["note"] = f"{processes} daphne processes; the target is set at {TARGET_PROCESSES}"
        return target
    for row in rows:
        if row["mode"] != REDIS_PG or row["participants"] != TARGET_PARTICIPANTS:
            continue
        p99 = row["spread_ms"]["p99"]
        checks = {"spread_p99": p99 is not None and p99 < TARGET_SPREAD_P99_MS}
        checks["intact"] = row["intact"]
        target["runs"].append(
            {
                "fanout": row["fanout"],
                "layer": row["layer"],
                "spread_p99_ms": p99,
                "checks": checks,
                "client_limited": row["client_limited"],
                "settings_notes": row.get("settings_notes", []),
                "pass": all(checks.values()),
            }
        )
    if target["runs"]:
        target["verdict"] = "PASS" if all(run["pass"] for run in target["runs"]) else "FAIL"
    return target


# --- the whole benchmark -------------------------------------------------------------------
def run_mode(
    mode: str, params: Params, *, fakeai: Server, tmp: Path, deadline: float
) -> tuple[list[dict], dict, bool]:
    """Every combination of one mode on one freshly made database; (rows, log problems, done)."""
    env = site_environment(
        fakeai_url=fakeai.url + "/v1",
        sqlite_path=tmp / f"{mode}.sqlite3",
        redis_postgres=mode == REDIS_PG,
        pg_url=params.pg_url,
        pg_database=params.pg_database,
        redis_url=params.redis_url,
        extra={"ROOM_RATE_LIMIT_PER_MINUTE": "0", **params.site_env},
    )
    print(f"{mode}: migrating, creating users and rooms ...", file=sys.stderr, flush=True)
    manage("migrate", "--noinput", env=env)
    tokens = create_users(max(*params.participants, 2 * params.process_count(mode)), env=env)
    combos = params.combos(mode)
    names = [f"fanout {c.label} {kind}" for c in combos for kind in ["warm", *params.participants]]
    slugs = iter(create_rooms(names, env=env))
    rooms = {c: (next(slugs), {n: next(slugs) for n in params.participants}) for c in combos}
    rows: list[dict] = []
    logs: dict = {}
    for combo in combos:
        if mode == REDIS_PG:
            # Presence, leases and streams of the previous combination.
            flush_redis(params.redis_url)
        combo_env = {**env, **combo.env}
        effective = effective_settings(combo_env)
        notes = settings_notes(combo, effective)
        log_dir = tmp / combo.label
        log_dir.mkdir()
        warm_slug, slugs_by_n = rooms[combo]
        with contextlib.ExitStack() as stack:
            daphnes = start_daphnes(
                stack, params.process_count(mode), env=combo_env, log_dir=log_dir
            )
            remaining = deadline - time.monotonic()
            try:
                runs = asyncio.run(
                    asyncio.wait_for(
                        measure_combo(
                            combo,
                            params,
                            daphnes=daphnes,
                            fakeai=fakeai,
                            tokens=tokens,
                            slugs=slugs_by_n,
                            warm_slug=warm_slug,
                        ),
                        max(1.0, remaining),
                    )
                )
            except TimeoutError:
                print(f"--max-seconds reached during {combo.label}", file=sys.stderr)
                return rows, logs, False
            log_ends = {s.name: s.log_path.stat().st_size for s in daphnes}
        logs[combo.label] = server_log_report(
            daphnes, log_ends, keep_prefix=f"room_fanout-{STAMP}-{combo.label}"
        )
        for _, room in runs:
            row = summarize(combo, room, daphne_names=[s.name for s in daphnes])
            row["effective_settings"] = effective
            row["settings_notes"] = notes
            rows.append(row)
    return rows, logs, True


def run_benchmark(params: Params) -> dict:
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    code = code_version()
    deadline = time.monotonic() + params.max_seconds
    rows: list[dict] = []
    logs: dict = {}
    complete = True
    with tempfile.TemporaryDirectory(prefix="room_fanout-") as tmp_name:
        tmp = Path(tmp_name)
        with contextlib.ExitStack() as stack:
            fakeai = start_fakeai(
                stack, log_dir=tmp, ttft_ms=params.ttft_ms, tps=params.tps, tokens=params.tokens
            )
            for mode in params.modes:
                mode_rows, mode_logs, complete = run_mode(
                    mode, params, fakeai=fakeai, tmp=tmp, deadline=deadline
                )
                rows += mode_rows
                logs.update(mode_logs)
                if not complete:
                    break
    parameters = dict(asdict(params))
    parameters.update(
        combos=[c.label for mode in params.modes for c in params.combos(mode)],
        connect_concurrency=CONNECT_CONCURRENCY,
        sample_interval_s=SAMPLE_INTERVAL_S,
        room_rate_limit_per_minute=0,
    )
    return {
        "benchmark": "room_fanout",
        "started_at": started_at,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "complete": complete,
        "machine": machine_info(),
        "code": code,
        "parameters": parameters,
        "server_log_problems": logs,
        "target": judge(rows, processes=params.processes),
        "runs": rows,
    }


# --- output ---------------------------------------------------------------------------------
def _per_process(row: dict, key: str, digits: int) -> str:
    return "/".join(fmt(p[key], digits) for p in row["server_processes"]) or "-"


def print_table(report: dict, params: Params) -> None:
    rows = report["runs"]
    where = (
        f"; redis-pg on {params.processes} daphne process(es), participants dealt round-robin"
        if REDIS_PG in params.modes
        else ""
    )
    print(
        f"\nRoom fan-out; fakeai: ttft {params.ttft_ms:g} ms, {params.tps:g} tok/s, "
        f"{params.tokens} tokens; {params.turns} AI turn(s) per room{where}; times in ms"
    )
    if params.site_env:
        print(f"what-if: site env {params.site_env}")
    head = (
        f"{'mode':<9}{'fanout':<8}{'layer':<7}{'N':>4}{'turns':>6} | "
        f"{'spread p50':>11}{'p95':>7}{'p99':>7} | {'delay p50':>10}{'p99':>7} | "
        f"{'lost':>5}{'reord':>6} | {'CPU% per proc':>14}{'RSS MB per proc':>16} | "
        f"{'load CPU%':>9}{'lag p99':>8}"
    )
    print(head)
    print("-" * len(head))
    for row in rows:
        s, d = row["spread_ms"], row["delay_ms"]
        flags = []
        if row["client_limited"]:
            flags.append(row["client_limited"])
        flags += row.get("settings_notes", [])
        print(
            f"{row['mode']:<9}{row['fanout']:<8}{row['layer'].rsplit('.', 1)[-1]:<7}"
            f"{row['participants']:>4}{row['turns_ok']:>3}/{row['turns']:<2} | "
            f"{fmt(s['p50']):>11}{fmt(s['p95']):>7}{fmt(s['p99']):>7} | "
            f"{fmt(d['p50']):>10}{fmt(d['p99']):>7} | "
            f"{row['lost']:>5}{row['reordered'] + row['tokens_after_terminal']:>6} | "
            f"{_per_process(row, 'cpu_percent', 0):>14}{_per_process(row, 'peak_rss_mb', 0):>16} | "
            f"{fmt(row['client_cpu_percent'], 0):>9}{fmt(row['client_loop_lag_ms']['p99']):>8}"
            + (f"  ({'; '.join(flags)})" if flags else "")
        )
    head = (
        f"{'mode':<9}{'fanout':<8}{'layer':<7}{'N':>4} | {'sender proc p50':>15}{'p99':>7} | "
        f"{'other p50':>10}{'p99':>7} | {'fastest':>10} | {'fr/tok':>6}{'inexact':>8} | "
        f"{'us/rcpt':>8} | {'fakeai%':>7}{'others%':>8}"
    )
    print(
        "\nDelay by where the participants were: on the sender's process (which runs the turn) "
        "or another; which process's participants got each turn's tokens soonest; frames per "
        "token (1.0: none coalesced); delays measured from a frame's stamp; this client's "
        "time per token receipt (us); fakeai's and other processes' CPU%"
    )
    print(head)
    print("-" * len(head))
    for row in rows:
        own, other = row["delay_ms_sender_process"], row["delay_ms_other_processes"]
        fastest = Counter(m["fastest_process"] for m in row["messages"])
        turns_by = " ".join(
            f"{(name or '-').removeprefix('daphne-')}:{count}"
            for name, count in sorted(fastest.items(), key=lambda item: str(item[0]))
        )
        res = row["resources"]
        print(
            f"{row['mode']:<9}{row['fanout']:<8}{row['layer'].rsplit('.', 1)[-1]:<7}"
            f"{row['participants']:>4} | {fmt(own['p50']):>15}{fmt(own['p99']):>7} | "
            f"{fmt(other['p50']):>10}{fmt(other['p99']):>7} | {turns_by or '-':>10} | "
            f"{fmt(row['frames_per_token'], 2):>6}{row['delays_from_frame_stamp']:>8} | "
            f"{fmt(row['client_us_per_receipt']):>8} | "
            f"{fmt(row['fakeai_cpu_percent'], 0):>7}{fmt(res.get('other_cpu_percent'), 0):>8}"
            + (f"  ({', '.join(others)})" if (others := res.get("top_other_processes")) else "")
        )
    for row in rows:
        if not row["intact"]:
            print(
                f"  not intact: {row['mode']} {row['fanout']} {row['layer']} "
                f"N={row['participants']}: connected {row['connected']} "
                f"(failures {row['connect_failures'] or 0}), terminals {row['terminals']}, "
                f"missing tokens {row['missing_tokens']}, index not increasing "
                f"{row['reordered']}, tokens after the end {row['tokens_after_terminal']}, turns "
                f"{[t['status'] for t in row['turn_details']]}, "
                f"first problems {row['problems'][:3]}"
            )
    reasons = {row["client_limited"] for row in rows}
    if CLIENT_BUSY in reasons:
        print(
            f"\n{CLIENT_BUSY}: this load generator used over {CLIENT_CPU_LIMIT_PERCENT:g} % of a "
            "core: its own queueing is inside that row's spread and delay"
        )
    if CLIENT_LATE in reasons:
        print(
            f"\n{CLIENT_LATE}: this load generator's loop woke timers over "
            f"{CLIENT_LAG_LIMIT_MS:g} ms late (p99) though it was not busy: it waited for a core "
            "(see others%), and that wait is inside that row's spread and delay"
        )
    print_target(report["target"])


def print_target(target: dict) -> None:
    print(
        f"\nTarget: spread p99 < {target['spread_p99_ms_below']:g} ms at "
        f"N={target['participants']} across {target['processes']} processes "
        f"(redis-pg), no token lost or reordered -> {target['verdict']}"
    )
    if target.get("note"):
        print(f"  {target['note']}")
    for run in target["runs"]:
        failed = [name for name, ok in run["checks"].items() if not ok]
        print(
            f"  {run['fanout']} / {run['layer']}: {'PASS' if run['pass'] else 'FAIL'} "
            f"(spread p99 {fmt(run['spread_p99_ms'])})"
            + (f" failed: {', '.join(failed)}" if failed else "")
            + (f" [{run['client_limited']}]" if run["client_limited"] else "")
            + (f" [{'; '.join(run['settings_notes'])}]" if run["settings_notes"] else "")
        )


def main(argv: list[str] | None = None) -> None:
    params = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the child processes are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run_benchmark(params)
    print_table(report, params)
    for label, problems in report["server_log_problems"].items():
        print(f"{label}: server log ERROR lines during the runs: {problems['error_lines']}")
        print_log_problems(problems)
    special = params.quick or bool(params.site_env) or not report["complete"]
    paths = write_json(report, name="room_fanout", stamp=STAMP, latest=not special)
    print(f"\nwrote {', '.join(str(p.relative_to(ROOT)) for p in paths)}")


if __name__ == "__main__":
    main()
