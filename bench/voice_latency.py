"""Voice latency benchmark: what the voice socket adds between the model's audio and the person.

Run from the repository root:

    python -m bench.voice_latency                 # embedded: relay vs direct at 1, 10, 50 sockets,
                                                  # spoken turns at 1 and 10
    python -m bench.voice_latency --sockets 1,10,50,100 --turns 8
    python -m bench.voice_latency --modes embedded,redis-pg
    python -m bench.voice_latency --quick         # smoke: 1 and 2 sockets, 2 turns each

It starts its own fakeai and one daphne (REALTIME_MODEL="fakeai:ttft=200,
pace=1,tokens=4": the first audio 200 ms after `response.create`, then the
answer, "Echo: <what was said> (turn n)", spoken in real time), creates
users `bench-<i>` with API tokens, and measures two ways, each at several concurrencies:

1. **Relay vs direct** (text turns). N clients on `/ws/voice/` send `text
   {content}` and time the first binary audio frame; at the same time N
   clients talk to fakeai's Realtime WebSocket themselves, with the session
   our server configures, and time `conversation.item.create` +
   `response.create` to the first `response.output_audio.delta`. Same fakeai,
   same model settings, same moment, same load generator: the difference of
   the two is what our server adds, both ways (the text in, the audio out).
   Per relay turn the server's `latency` event also gives `upstream_ms`
   (`response.create` sent to the first audio read), so relay minus
   `upstream_ms`, on the same turn, is our own path around the model.
2. **Spoken turns**. N clients send espeak-ng speech paced in real time in
   20 ms frames (a microphone), then silence until the answer is over, and
   read the `latency` event of each turn (`voice_to_voice_ms`, `vad_wait_ms`,
   `upstream_ms`, `server_ms`) and their own view: from sending the last
   frame that holds speech to the first answer audio received.

Between turns a client reports the answer as played (`playback`), as a
browser does, so the next turn interrupts nothing. Also recorded, per level:
daphne's and fakeai's CPU% and peak RSS, and this load generator's CPU% and
event-loop lag (every client runs in this one asyncio process; a busy client
inflates both sides, and a row where it was the bottleneck is flagged).

Target: server-added latency (first upstream audio → client) p99 < 20 ms,
judged on relay p99 minus direct p99 at every measured concurrency. Results:
bench/results/voice_latency-<UTC time>.json and voice_latency-latest.json
(not replaced by --quick runs or incomplete ones).
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
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter

import numpy as np
import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench import vad_corpus
from bench.clients import CONNECT_CONCURRENCY, CONNECT_TIMEOUT_S
from bench.harness import (
    ROOT,
    SAMPLE_INTERVAL_S,
    ResourceSampler,
    Server,
    code_version,
    create_users,
    machine_info,
    manage,
    print_log_problems,
    server_log_report,
    site_environment,
    start_daphnes,
    start_fakeai,
    write_json,
)
from bench.room_fanout import CLIENT_BUSY, CLIENT_LATE, LagProbe, client_limited
from bench.stats import fmt, ms, pcts, rnd
from voice import audio

TARGET_ADDED_P99_MS = 20.0
EMBEDDED, REDIS_PG = "embedded", "redis-pg"
RATE = 24_000
FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000
SPEECH_LEVEL_DB = -20.0
SPEAKER = vad_corpus.Voice("en-us", 160, 50)
# Silence before each utterance: longer than the echo gate's tail after the last answer.
LEAD_SILENCE_S = 0.6
TURN_PAUSE_S = 0.3  # after an answer was played out, before the next turn
STAGGER_S = 1.0  # clients start spread over this, as people do, not in one burst
PAUSE_BETWEEN_LEVELS_S = 1.0
AUDIO_DELTA = '"type":"response.output_audio.delta"'
RESPONSE_DONE = '"type":"response.done"'
STAMP = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


# --- parameters -------------------------------------------------------------------
@dataclass(frozen=True)
class Params:
    sockets: list[int]
    spoken_sockets: list[int]
    turns: int
    spoken_turns: int
    ttft_ms: float
    pace: float
    words: int
    modes: tuple[str, ...]
    pg_url: str
    pg_database: str
    redis_url: str
    turn_timeout_s: float
    max_seconds: float
    quick: bool = False
    site_env: dict[str, str] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return model_name(ttft_ms=self.ttft_ms, pace=self.pace, words=self.words)


def model_name(*, ttft_ms: float, pace: float, words: int) -> str:
    """fakeai's Realtime controls ride on the model name (fakeai/behaviour.py)."""
    return f"fakeai:ttft={ttft_ms:g},pace={pace:g},tokens={words}"


def _numbers(parser: argparse.ArgumentParser, name: str, value: str) -> list[int]:
    try:
        numbers = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        parser.error(f"{name} takes comma-separated numbers")
    if any(n < 1 for n in numbers):
        parser.error(f"{name} takes positive numbers")
    return numbers


def parse_args(argv: list[str] | None = None) -> Params:
    parser = argparse.ArgumentParser(
        prog="python -m bench.voice_latency", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--sockets", default="1,10,50", help="relay-vs-direct concurrencies (each side)"
    )
    parser.add_argument(
        "--spoken-sockets", default="1,10", help="spoken-turn concurrencies; 0 for none"
    )
    parser.add_argument("--turns", type=int, default=5, help="text turns per socket and level")
    parser.add_argument("--spoken-turns", type=int, default=3, help="spoken turns per socket")
    parser.add_argument("--ttft-ms", type=float, default=200.0, help="fakeai time to first audio")
    parser.add_argument("--pace", type=float, default=1.0, help="fakeai audio speed (1 = real)")
    parser.add_argument(
        "--words", type=int, default=4, help="fakeai answer length in words (at least its echo)"
    )
    parser.add_argument(
        "--modes",
        default=EMBEDDED,
        help="embedded (SQLite, in-memory layer), redis-pg (PostgreSQL + Redis), or both",
    )
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--pg-database", default="bench_voice")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/3")
    parser.add_argument("--turn-timeout-s", type=float, default=30.0, help="longest turn")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="cap on the whole run")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 and 2 sockets, 2 turns, one mode"
    )
    parser.add_argument(
        "--site-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="what-if: extra setting for the daphne, e.g. VAD_BACKEND=energy (repeatable)",
    )
    args = parser.parse_args(argv)
    site_env = dict(item.split("=", 1) for item in args.site_env if "=" in item)
    if len(site_env) != len(args.site_env):
        parser.error("--site-env takes NAME=VALUE")
    sockets = _numbers(parser, "--sockets", args.sockets)
    spoken = (
        []
        if args.spoken_sockets.strip() == "0"
        else _numbers(parser, "--spoken-sockets", args.spoken_sockets)
    )
    modes = tuple(part.strip() for part in args.modes.split(",") if part.strip())
    turns, spoken_turns = args.turns, args.spoken_turns
    if args.quick:
        sockets, turns, spoken_turns, modes = [1, 2], 2, 2, modes[:1]
        spoken = [1, 2] if spoken else []
    if not sockets or turns < 1 or spoken_turns < 1 or args.words < 1:
        parser.error("--sockets, --turns, --spoken-turns and --words must be positive")
    if not modes or not set(modes) <= {EMBEDDED, REDIS_PG}:
        parser.error("--modes takes embedded, redis-pg or both")
    if not args.pg_database.startswith("bench"):
        parser.error("--pg-database is dropped and recreated: its name must start with 'bench'")
    if REDIS_PG in modes and not re.search(r"/\d+$", args.redis_url):
        parser.error("--redis-url must name a database number (it is flushed)")
    return Params(
        sockets=sockets,
        spoken_sockets=spoken,
        turns=turns,
        spoken_turns=spoken_turns,
        ttft_ms=args.ttft_ms,
        pace=args.pace,
        words=args.words,
        modes=modes,
        pg_url=args.pg_url.rstrip("/"),
        pg_database=args.pg_database,
        redis_url=args.redis_url,
        turn_timeout_s=args.turn_timeout_s,
        max_seconds=args.max_seconds,
        quick=args.quick,
        site_env=site_env,
    )


# --- pure parts ---------------------------------------------------------------------
def start_offset_s(client: int, count: int) -> float:
    """Client i of `count` starts at i/count of STAGGER_S; relay i and direct i together."""
    return STAGGER_S * client / count if count > 1 else 0.0


def spoken_turn_audio(speech: np.ndarray) -> tuple[bytes, int]:
    """Lead silence + `speech` at SPEECH_LEVEL_DB, as PCM16; and the index of its last
    20 ms frame that holds speech (the client's "the person stopped" moment)."""
    scaled = speech * (10 ** (SPEECH_LEVEL_DB / 20) / max(audio.rms(speech), 1e-9))
    lead = round(LEAD_SILENCE_S * RATE)
    pcm = b"\0\0" * lead + audio.float_to_pcm16(scaled)
    return pcm, last_speech_frame(lead, speech.size)


def last_speech_frame(lead_samples: int, speech_samples: int) -> int:
    """The 20 ms frame holding the utterance's last sample (it starts after `lead_samples`)."""
    return (lead_samples + speech_samples - 1) // FRAME_SAMPLES


def frames_of(pcm: bytes) -> list[bytes]:
    """20 ms frames; a short last one padded with silence (a microphone sends whole frames)."""
    size = FRAME_SAMPLES * 2
    frames = [pcm[i : i + size] for i in range(0, len(pcm), size)]
    if frames and len(frames[-1]) < size:
        frames[-1] += b"\0" * (size - len(frames[-1]))
    return frames


def differences(ours: dict, baseline: dict) -> dict:
    """Ours minus the baseline, percentile by percentile (not a percentile of differences:
    the two sides are different clients, measured together)."""
    return {
        key: rnd(ours[key] - baseline[key])
        if ours.get(key) is not None and baseline.get(key) is not None
        else None
        for key in ours
    }


def judge(rows: list[dict]) -> dict:
    """PASS when relay p99 minus direct p99 is under the target at every measured level."""
    target = {"added_p99_ms_below": TARGET_ADDED_P99_MS, "runs": [], "verdict": "NOT EVALUATED"}
    for row in rows:
        added = row["added_ms"]["p99"]
        target["runs"].append(
            {
                "mode": row["mode"],
                "sockets": row["sockets"],
                "added_p99_ms": added,
                "errors": row["errors"],
                "client_limited": row["client_limited"],
                "pass": added is not None and added < TARGET_ADDED_P99_MS and not row["errors"],
            }
        )
    if target["runs"]:
        target["verdict"] = "PASS" if all(run["pass"] for run in target["runs"]) else "FAIL"
    return target


# --- clients ------------------------------------------------------------------------
@dataclass
class TurnResult:
    """One turn as one client saw it; times are perf_counter seconds."""

    status: str = "not_run"  # ok | timeout | disconnect | error:<code> | no_audio
    sent: float | None = None  # text: the first frame sent; spoken: the last speech frame
    first_audio: float | None = None
    latency: dict | None = None  # the server's `latency` event
    early_audio: bool = False  # spoken: answer audio before the speech had ended
    ended: float | None = None  # the answer's end (its `response` or `response.done`)

    @property
    def ms(self) -> float | None:
        if self.sent is None or self.first_audio is None:
            return None
        return ms(self.first_audio - self.sent)


async def open_socket(url: str, token: str | None, slots: asyncio.Semaphore) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token or 'x'}"}
    async with slots:
        return await connect(
            url,
            additional_headers=headers,
            compression=None,
            ping_interval=None,
            open_timeout=CONNECT_TIMEOUT_S,
            close_timeout=2,
            max_size=None,
        )


async def expect(ws: ClientConnection, kind: str, *, timeout_s: float) -> dict:
    """Read until an event of `kind`; an error or a close first is raised."""
    async with asyncio.timeout(timeout_s):
        while True:
            raw = await ws.recv()
            if isinstance(raw, bytes):
                continue
            event = json.loads(raw)
            if event.get("type") == kind:
                return event
            if event.get("type") == "error":
                raise RuntimeError(f"{kind} expected, got {event}")


async def open_relay(url: str, token: str, slots: asyncio.Semaphore) -> ClientConnection:
    """A voice socket whose `session` event (upstream open) has come."""
    ws = await open_socket(url, token, slots)
    try:
        await expect(ws, "session", timeout_s=CONNECT_TIMEOUT_S)
    except BaseException:
        await ws.close()
        raise
    return ws


def direct_session_update(voice: str = "marin") -> dict:
    """What voice/realtime.py's session_config sends for a local-VAD voice session."""
    pcm = {"type": "audio/pcm", "rate": RATE}
    return {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": pcm,
                    "turn_detection": None,
                    "transcription": {"model": "gpt-4o-mini-transcribe"},
                },
                "output": {"format": pcm, "voice": voice},
            },
        },
    }


async def open_direct(url: str, slots: asyncio.Semaphore) -> ClientConnection:
    """fakeai's Realtime socket, configured as our server configures its sessions."""
    ws = await open_socket(url, None, slots)
    try:
        await expect(ws, "session.created", timeout_s=CONNECT_TIMEOUT_S)
        await ws.send(json.dumps(direct_session_update()))
        await expect(ws, "session.updated", timeout_s=CONNECT_TIMEOUT_S)
    except BaseException:
        await ws.close()
        raise
    return ws


def prompt(client: int, turn: int) -> str:
    """Short: fakeai's answer echoes it in full ("Echo: Hi. (turn 1)"), and a long answer
    only makes the turn longer, not its first audio sooner."""
    return "Hi."


async def relay_text_turn(ws: ClientConnection, content: str, timeout_s: float) -> TurnResult:
    """`text` → the answer's first binary frame; read to its end, then report it played."""
    result = TurnResult(status="sent")
    audio_bytes, item_id = 0, None
    try:
        async with asyncio.timeout(timeout_s):
            result.sent = perf_counter()
            await ws.send(json.dumps({"type": "text", "content": content}))
            while True:
                raw = await ws.recv()
                now = perf_counter()
                if isinstance(raw, bytes):
                    if result.first_audio is None:
                        result.first_audio = now
                    audio_bytes += len(raw)
                    continue
                event = json.loads(raw)
                kind = event.get("type")
                if kind == "audio_start":
                    item_id = event["item_id"]
                elif kind == "latency":
                    result.latency = event
                elif kind == "error":
                    result.status = f"error:{event.get('code')}"
                    return result
                elif kind == "response" and event.get("status") != "started":
                    result.ended = now
                    break
        result.status = "ok" if result.first_audio is not None else "no_audio"
        if item_id is not None:
            played = audio.samples_to_ms(audio_bytes // 2, RATE)
            await ws.send(
                json.dumps({"type": "playback", "item_id": item_id, "played_ms": int(played)})
            )
    except TimeoutError:
        result.status = "timeout"
    except ConnectionClosed:
        result.status = "disconnect"
    return result


async def direct_text_turn(ws: ClientConnection, content: str, timeout_s: float) -> TurnResult:
    """`conversation.item.create` + `response.create` → the first audio delta; to the end."""
    item = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": content}],
    }
    result = TurnResult(status="sent")
    try:
        async with asyncio.timeout(timeout_s):
            result.sent = perf_counter()
            await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
            await ws.send(json.dumps({"type": "response.create"}))
            while True:
                raw = await ws.recv()
                now = perf_counter()
                head = raw[:120]
                if AUDIO_DELTA in head:
                    if result.first_audio is None:
                        result.first_audio = now
                elif RESPONSE_DONE in head:
                    result.ended = now
                    break
                elif '"type":"error"' in head:
                    result.status = f"error:{json.loads(raw)['error'].get('code')}"
                    return result
        result.status = "ok" if result.first_audio is not None else "no_audio"
    except TimeoutError:
        result.status = "timeout"
    except ConnectionClosed:
        result.status = "disconnect"
    return result


async def text_client(
    ws: ClientConnection,
    turn_fn,
    client: int,
    *,
    turns: int,
    offset_s: float,
    timeout_s: float,
) -> list[TurnResult]:
    await asyncio.sleep(offset_s)
    results = []
    for turn in range(turns):
        if turn:
            await asyncio.sleep(TURN_PAUSE_S)
        results.append(await turn_fn(ws, prompt(client, turn), timeout_s))
        if results[-1].status in ("timeout", "disconnect"):
            break
    return results


async def spoken_client(
    ws: ClientConnection,
    utterances: list[tuple[bytes, int]],
    *,
    offset_s: float,
    timeout_s: float,
) -> tuple[list[TurnResult], list[float]]:
    """A microphone: every utterance paced in 20 ms frames, then silence until the answer
    is over. Returns the turns and how late each frame left (ms) against its schedule."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(offset_s)
    results: list[TurnResult] = []
    lateness: list[float] = []
    silence = b"\0" * (FRAME_SAMPLES * 2)
    origin = loop.time()
    index = 0  # frames sent since origin: the microphone's clock

    async def send_frame(frame: bytes) -> float:
        nonlocal index
        delay = origin + index * FRAME_MS / 1000 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        lateness.append(max(0.0, -delay) * 1000)
        await ws.send(frame)
        index += 1
        return perf_counter()

    for pcm, last_speech in utterances:
        result = TurnResult(status="sent")
        over = asyncio.Event()
        reader = asyncio.create_task(read_spoken_turn(ws, result, over))
        try:
            async with asyncio.timeout(timeout_s):
                for number, frame in enumerate(frames_of(pcm)):
                    sent = await send_frame(frame)
                    if number == last_speech:
                        result.sent = sent
                while not over.is_set():
                    await send_frame(silence)
        except TimeoutError:
            result.status = "timeout"
        except ConnectionClosed:
            result.status = "disconnect"
        finally:
            if not reader.done():
                reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await reader
        results.append(result)
        if result.status in ("timeout", "disconnect"):
            break
        pause_frames = round(TURN_PAUSE_S * 1000 / FRAME_MS)
        for _ in range(pause_frames):
            await send_frame(silence)
    return results, lateness


async def read_spoken_turn(ws: ClientConnection, result: TurnResult, over: asyncio.Event) -> None:
    """The turn's events and audio until its answer ended; then report it played."""
    audio_bytes, item_id = 0, None
    try:
        while True:
            raw = await ws.recv()
            now = perf_counter()
            if isinstance(raw, bytes):
                if result.first_audio is None:
                    result.first_audio = now
                    result.early_audio = result.sent is None
                audio_bytes += len(raw)
                continue
            event = json.loads(raw)
            kind = event.get("type")
            if kind == "audio_start":
                item_id = event["item_id"]
            elif kind == "latency":
                result.latency = event
            elif kind == "error":
                result.status = f"error:{event.get('code')}"
                return
            elif kind == "response" and event.get("status") != "started":
                result.ended = now
                result.status = "ok" if result.first_audio is not None else "no_audio"
                if item_id is not None:
                    played = int(audio.samples_to_ms(audio_bytes // 2, RATE))
                    await ws.send(
                        json.dumps({"type": "playback", "item_id": item_id, "played_ms": played})
                    )
                return
    except ConnectionClosed:
        result.status = "disconnect"
    finally:
        over.set()


# --- one level ------------------------------------------------------------------------
@dataclass
class LevelRun:
    """One concurrency level of one measurement, as recorded."""

    sockets: int
    relay: list[TurnResult]
    direct: list[TurnResult]
    connect_failures: dict[str, int]
    resources: dict
    lags_ms: list[float]
    frame_lateness_ms: list[float]
    wall_s: float


def _failure_counts(attempts: list) -> tuple[list[ClientConnection], dict[str, int]]:
    opened, failures = [], {}
    for attempt in attempts:
        if isinstance(attempt, (OSError, TimeoutError, InvalidHandshake, RuntimeError)):
            name = type(attempt).__name__
            failures[name] = failures.get(name, 0) + 1
        elif isinstance(attempt, BaseException):
            raise attempt
        else:
            opened.append(attempt)
    return opened, failures


async def run_text_level(
    n: int,
    params: Params,
    *,
    relay_url: str,
    direct_url: str,
    tokens: list[str],
    watched: dict[str, psutil.Process],
) -> LevelRun:
    """N relay and N direct clients, connected first, then all their turns at once."""
    slots = asyncio.Semaphore(CONNECT_CONCURRENCY)
    attempts = await asyncio.gather(
        *(open_relay(relay_url, tokens[i], slots) for i in range(n)),
        *(open_direct(direct_url, slots) for _ in range(n)),
        return_exceptions=True,
    )
    relays, relay_failures = _failure_counts(attempts[:n])
    directs, direct_failures = _failure_counts(attempts[n:])
    failures = {f"relay {k}": v for k, v in relay_failures.items()}
    failures.update({f"direct {k}": v for k, v in direct_failures.items()})
    try:
        with LagProbe() as probe, ResourceSampler(watched) as sampler:
            started = time.monotonic()
            kwargs = {"turns": params.turns, "timeout_s": params.turn_timeout_s}
            jobs = [
                text_client(ws, relay_text_turn, i, offset_s=start_offset_s(i, n), **kwargs)
                for i, ws in enumerate(relays)
            ] + [
                text_client(ws, direct_text_turn, i, offset_s=start_offset_s(i, n), **kwargs)
                for i, ws in enumerate(directs)
            ]
            outcomes = await asyncio.gather(*jobs)
            wall_s = time.monotonic() - started
    finally:
        await asyncio.gather(
            *(asyncio.shield(ws.close()) for ws in relays + directs), return_exceptions=True
        )
    return LevelRun(
        sockets=n,
        relay=[t for turns in outcomes[: len(relays)] for t in turns],
        direct=[t for turns in outcomes[len(relays) :] for t in turns],
        connect_failures=failures,
        resources=sampler.result,
        lags_ms=probe.lags_ms,
        frame_lateness_ms=[],
        wall_s=wall_s,
    )


async def run_spoken_level(
    n: int,
    params: Params,
    *,
    relay_url: str,
    tokens: list[str],
    speech: list[np.ndarray],
    watched: dict[str, psutil.Process],
) -> LevelRun:
    """N microphones on the voice socket, `spoken_turns` utterances each."""
    slots = asyncio.Semaphore(CONNECT_CONCURRENCY)
    attempts = await asyncio.gather(
        *(open_relay(relay_url, tokens[i], slots) for i in range(n)), return_exceptions=True
    )
    relays, failures = _failure_counts(attempts)
    turns_audio = [spoken_turn_audio(s) for s in speech]
    try:
        with LagProbe() as probe, ResourceSampler(watched) as sampler:
            started = time.monotonic()
            outcomes = await asyncio.gather(
                *(
                    spoken_client(
                        ws,
                        [
                            turns_audio[(i + t) % len(turns_audio)]
                            for t in range(params.spoken_turns)
                        ],
                        offset_s=start_offset_s(i, n),
                        timeout_s=params.turn_timeout_s,
                    )
                    for i, ws in enumerate(relays)
                )
            )
            wall_s = time.monotonic() - started
    finally:
        await asyncio.gather(*(asyncio.shield(ws.close()) for ws in relays), return_exceptions=True)
    return LevelRun(
        sockets=n,
        relay=[t for turns, _ in outcomes for t in turns],
        direct=[],
        connect_failures=failures,
        resources=sampler.result,
        lags_ms=probe.lags_ms,
        frame_lateness_ms=[late for _, lateness in outcomes for late in lateness],
        wall_s=wall_s,
    )


# --- summaries ------------------------------------------------------------------------
def _statuses(turns: list[TurnResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for turn in turns:
        counts[turn.status] = counts.get(turn.status, 0) + 1
    return counts


def _turn_s(turn: TurnResult) -> float | None:
    """The whole turn, from the first frame sent to the answer's end."""
    return None if turn.ended is None or turn.sent is None else rnd(turn.ended - turn.sent, 3)


def _part(turns: list[TurnResult], key: str) -> list[float]:
    return [t.latency[key] for t in turns if t.latency and t.latency.get(key) is not None]


def _load(run: LevelRun, daphne: str) -> dict:
    processes = run.resources["processes"]
    client_cpu = processes.get("client", {}).get("cpu_percent")
    lag = pcts(run.lags_ms, qs=(50, 99))
    return {
        "daphne_cpu_percent": processes.get(daphne, {}).get("cpu_percent"),
        "daphne_peak_rss_mb": processes.get(daphne, {}).get("peak_rss_mb"),
        "fakeai_cpu_percent": processes.get("fakeai", {}).get("cpu_percent"),
        "client_cpu_percent": client_cpu,
        "client_loop_lag_ms": lag,
        "client_limited": client_limited(client_cpu, lag["p99"]),
        "machine_busy_percent": run.resources.get("machine_busy_percent"),
        "other_cpu_percent": run.resources.get("other_cpu_percent"),
        "top_other_processes": run.resources.get("top_other_processes"),
    }


def summarize_text(mode: str, run: LevelRun, *, daphne: str) -> dict:
    relay_ok = [t for t in run.relay if t.status == "ok"]
    direct_ok = [t for t in run.direct if t.status == "ok"]
    relay_ms = [t.ms for t in relay_ok]
    direct_ms = [t.ms for t in direct_ok]
    # Per relay turn: the client's time minus the server's upstream_ms of the same turn.
    own = [t.ms - t.latency["upstream_ms"] for t in relay_ok if _part([t], "upstream_ms")]
    relay_p, direct_p = pcts(relay_ms), pcts(direct_ms)
    return {
        "measure": "relay-vs-direct",
        "mode": mode,
        "sockets": run.sockets,
        "turns": len(run.relay),
        "relay_ok": len(relay_ok),
        "direct_ok": len(direct_ok),
        "relay_statuses": _statuses(run.relay),
        "direct_statuses": _statuses(run.direct),
        "errors": len(run.relay) - len(relay_ok) + len(run.direct) - len(direct_ok),
        "connect_failures": run.connect_failures,
        "relay_ms": relay_p,
        "direct_ms": direct_p,
        "added_ms": differences(relay_p, direct_p),
        "own_path_ms": pcts(own),
        "upstream_ms": pcts(_part(relay_ok, "upstream_ms")),
        "server_ms": pcts(_part(relay_ok, "server_ms")),
        **_load(run, daphne),
        "wall_s": rnd(run.wall_s, 3),
        "resources": run.resources,
        "samples": {
            "relay_ms": [rnd(v) for v in relay_ms],
            "direct_ms": [rnd(v) for v in direct_ms],
            "relay_upstream_ms": [(t.latency or {}).get("upstream_ms") for t in relay_ok],
            "relay_turn_s": [_turn_s(t) for t in run.relay],
            "direct_turn_s": [_turn_s(t) for t in run.direct],
        },
    }


def summarize_spoken(mode: str, run: LevelRun, *, daphne: str) -> dict:
    ok = [t for t in run.relay if t.status == "ok" and not t.early_audio]
    client_ms = [t.ms for t in ok if t.ms is not None]
    qs = (50, 95, 99)
    return {
        "measure": "spoken",
        "mode": mode,
        "sockets": run.sockets,
        "turns": len(run.relay),
        "ok": len(ok),
        "statuses": _statuses(run.relay),
        "early_audio": sum(t.early_audio for t in run.relay),
        "errors": len(run.relay) - len(ok),
        "connect_failures": run.connect_failures,
        "voice_to_voice_ms": pcts(_part(ok, "voice_to_voice_ms"), qs),
        "vad_wait_ms": pcts(_part(ok, "vad_wait_ms"), qs),
        "upstream_ms": pcts(_part(ok, "upstream_ms"), qs),
        "server_ms": pcts(_part(ok, "server_ms"), qs),
        "client_ms": pcts(client_ms, qs),
        # How late the microphone's frames left against real time: its own queueing.
        "frame_lateness_ms": pcts(run.frame_lateness_ms, (50, 99)),
        **_load(run, daphne),
        "wall_s": rnd(run.wall_s, 3),
        "resources": run.resources,
        "samples": {
            "client_ms": [rnd(v) for v in client_ms],
            "latency": [t.latency for t in ok],
        },
    }


# --- the whole benchmark ----------------------------------------------------------------
def render_speech(count: int) -> list[np.ndarray]:
    """espeak-ng saying `count` of the corpus's longer sentences (1.5-3 s each)."""
    sentences = [s for s in vad_corpus.SENTENCES if len(s) > 30][:count]
    return [vad_corpus.speak(text, SPEAKER, RATE) for text in sentences]


async def measure_mode(
    mode: str,
    params: Params,
    *,
    daphne: Server,
    fakeai: Server,
    tokens: list[str],
    speech: list[np.ndarray],
) -> list[dict]:
    relay_url = daphne.url.replace("http://", "ws://", 1) + "/ws/voice/"
    direct_url = fakeai.url.replace("http://", "ws://", 1) + f"/v1/realtime?model={params.model}"
    watched = {
        daphne.name: psutil.Process(daphne.pid),
        "fakeai": psutil.Process(fakeai.pid),
        "client": psutil.Process(),
    }
    # Warm up (imports, the VAD model, first sessions); not recorded.
    print(f"{mode}: warming up ...", file=sys.stderr, flush=True)
    warm = Params(**{**asdict(params), "turns": 1, "spoken_turns": 1})
    await run_text_level(
        2, warm, relay_url=relay_url, direct_url=direct_url, tokens=tokens, watched={}
    )
    if params.spoken_sockets:
        await run_spoken_level(
            1, warm, relay_url=relay_url, tokens=tokens, speech=speech[:1], watched={}
        )
    rows = []
    for n in params.sockets:
        print(f"{mode}: relay vs direct, {n} socket(s) each ...", file=sys.stderr, flush=True)
        await asyncio.sleep(PAUSE_BETWEEN_LEVELS_S)
        run = await run_text_level(
            n, params, relay_url=relay_url, direct_url=direct_url, tokens=tokens, watched=watched
        )
        rows.append(summarize_text(mode, run, daphne=daphne.name))
    for n in params.spoken_sockets:
        print(f"{mode}: spoken turns, {n} socket(s) ...", file=sys.stderr, flush=True)
        await asyncio.sleep(PAUSE_BETWEEN_LEVELS_S)
        run = await run_spoken_level(
            n, params, relay_url=relay_url, tokens=tokens, speech=speech, watched=watched
        )
        rows.append(summarize_spoken(mode, run, daphne=daphne.name))
    return rows


def run_mode(
    mode: str,
    params: Params,
    *,
    fakeai: Server,
    speech: list[np.ndarray],
    tmp: Path,
    deadline: float,
) -> tuple[list[dict], dict, bool]:
    env = site_environment(
        fakeai_url=fakeai.url + "/v1",
        sqlite_path=tmp / f"{mode}.sqlite3",
        redis_postgres=mode == REDIS_PG,
        pg_url=params.pg_url,
        pg_database=params.pg_database,
        redis_url=params.redis_url,
        extra={"REALTIME_MODEL": params.model, "LLM_MAX_RETRIES": "0", **params.site_env},
    )
    print(f"{mode}: migrating and creating users ...", file=sys.stderr, flush=True)
    manage("migrate", "--noinput", env=env)
    tokens = create_users(max(*params.sockets, *params.spoken_sockets, 2), env=env)
    log_dir = tmp / mode
    log_dir.mkdir()
    with contextlib.ExitStack() as stack:
        (daphne,) = start_daphnes(stack, 1, env=env, log_dir=log_dir)
        try:
            rows = asyncio.run(
                asyncio.wait_for(
                    measure_mode(
                        mode, params, daphne=daphne, fakeai=fakeai, tokens=tokens, speech=speech
                    ),
                    max(1.0, deadline - time.monotonic()),
                )
            )
            done = True
        except TimeoutError:
            print(f"--max-seconds reached during {mode}", file=sys.stderr)
            rows, done = [], False
        log_ends = {daphne.name: daphne.log_path.stat().st_size}
    logs = server_log_report([daphne], log_ends, keep_prefix=f"voice_latency-{STAMP}-{mode}")
    return rows, logs, done


def run_benchmark(params: Params) -> dict:
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    code = code_version()
    deadline = time.monotonic() + params.max_seconds
    speech = render_speech(max(params.spoken_turns, 4)) if params.spoken_sockets else []
    rows: list[dict] = []
    logs: dict = {}
    complete = True
    with tempfile.TemporaryDirectory(prefix="voice_latency-") as tmp_name:
        tmp = Path(tmp_name)
        with contextlib.ExitStack() as stack:
            fakeai = start_fakeai(stack, log_dir=tmp, ttft_ms=params.ttft_ms, tps=0, tokens=3)
            for mode in params.modes:
                mode_rows, mode_logs, complete = run_mode(
                    mode, params, fakeai=fakeai, speech=speech, tmp=tmp, deadline=deadline
                )
                rows += mode_rows
                logs[mode] = mode_logs
                if not complete:
                    break
    parameters = dict(asdict(params))
    parameters.update(
        model=params.model,
        speech_seconds=[rnd(s.size / RATE, 2) for s in speech],
        speech_level_dbfs=SPEECH_LEVEL_DB,
        lead_silence_s=LEAD_SILENCE_S,
        turn_pause_s=TURN_PAUSE_S,
        stagger_s=STAGGER_S,
        connect_concurrency=CONNECT_CONCURRENCY,
        sample_interval_s=SAMPLE_INTERVAL_S,
    )
    text_rows = [row for row in rows if row["measure"] == "relay-vs-direct"]
    return {
        "benchmark": "voice_latency",
        "started_at": started_at,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "complete": complete,
        "machine": machine_info(),
        "code": code,
        "parameters": parameters,
        "server_log_problems": logs,
        "target": judge(text_rows),
        "runs": rows,
    }


# --- output ---------------------------------------------------------------------------
def _flag(row: dict) -> str:
    flags = []
    if row["client_limited"]:
        flags.append(row["client_limited"])
    if row["errors"]:
        flags.append(f"{row['errors']} failed turns")
    if row["connect_failures"]:
        flags.append(f"connect failures {row['connect_failures']}")
    return f"  ({'; '.join(flags)})" if flags else ""


def print_table(report: dict, params: Params) -> None:
    rows = report["runs"]
    print(
        f"\nVoice latency; fakeai {params.model}; times in ms. Relay: text frame -> first "
        "binary audio frame on /ws/voice/. Direct: item.create + response.create -> first "
        "output_audio.delta on fakeai, at the same time. added = relay - direct (same "
        "percentile); own = relay - upstream_ms, per turn"
    )
    head = (
        f"{'mode':<9}{'N':>4}{'turns':>7} | {'relay p50':>9}{'p95':>7}{'p99':>7} | "
        f"{'direct p50':>10}{'p95':>7}{'p99':>7} | {'added p50':>9}{'p95':>7}{'p99':>7} | "
        f"{'own p50':>7}{'p99':>7} | {'srv p99':>7} | {'daphne%':>7}{'fakeai%':>8}"
        f"{'load%':>6}{'lag p99':>8}"
    )
    print(head)
    print("-" * len(head))
    for row in rows:
        if row["measure"] != "relay-vs-direct":
            continue
        r, d, a, o = row["relay_ms"], row["direct_ms"], row["added_ms"], row["own_path_ms"]
        print(
            f"{row['mode']:<9}{row['sockets']:>4}{row['relay_ok']:>4}/{row['direct_ok']:<2} | "
            f"{fmt(r['p50']):>9}{fmt(r['p95']):>7}{fmt(r['p99']):>7} | "
            f"{fmt(d['p50']):>10}{fmt(d['p95']):>7}{fmt(d['p99']):>7} | "
            f"{fmt(a['p50']):>9}{fmt(a['p95']):>7}{fmt(a['p99']):>7} | "
            f"{fmt(o['p50']):>7}{fmt(o['p99']):>7} | {fmt(row['server_ms']['p99'], 2):>7} | "
            f"{fmt(row['daphne_cpu_percent'], 0):>7}{fmt(row['fakeai_cpu_percent'], 0):>8}"
            f"{fmt(row['client_cpu_percent'], 0):>6}{fmt(row['client_loop_lag_ms']['p99']):>8}"
            + _flag(row)
        )
    spoken = [row for row in rows if row["measure"] == "spoken"]
    if spoken:
        print(
            "\nSpoken turns (espeak-ng, paced 20 ms frames): the server's latency event, and "
            "the client's view (last speech frame sent -> first answer audio); p50 / p99 in ms"
        )
        head = (
            f"{'mode':<9}{'N':>4}{'turns':>7} | {'voice-to-voice':>15} | {'vad_wait':>13} | "
            f"{'upstream':>13} | {'server':>11} | {'client view':>13} | {'mic late p99':>12} | "
            f"{'daphne%':>7}{'load%':>6}{'lag p99':>8}"
        )
        print(head)
        print("-" * len(head))
        for row in spoken:

            def pair(key: str, digits: int = 0, row=row) -> str:
                part = row[key]
                return f"{fmt(part['p50'], digits)} / {fmt(part['p99'], digits)}"

            print(
                f"{row['mode']:<9}{row['sockets']:>4}{row['ok']:>4}/{row['turns']:<2} | "
                f"{pair('voice_to_voice_ms'):>15} | {pair('vad_wait_ms'):>13} | "
                f"{pair('upstream_ms'):>13} | {pair('server_ms', 2):>11} | "
                f"{pair('client_ms'):>13} | {fmt(row['frame_lateness_ms']['p99']):>12} | "
                f"{fmt(row['daphne_cpu_percent'], 0):>7}{fmt(row['client_cpu_percent'], 0):>6}"
                f"{fmt(row['client_loop_lag_ms']['p99']):>8}" + _flag(row)
            )
    reasons = {row["client_limited"] for row in rows}
    if CLIENT_BUSY in reasons:
        print(
            f"\n{CLIENT_BUSY}: this load generator was busy most of a core: its own queueing is "
            "inside that row's times, on both sides"
        )
    if CLIENT_LATE in reasons:
        print(
            f"\n{CLIENT_LATE}: this load generator's loop woke late (p99) though it was not busy: "
            "it waited for a core the machine's other processes held"
        )
    target = report["target"]
    print(
        f"\nTarget: server-added latency p99 < {target['added_p99_ms_below']:g} ms "
        f"(relay p99 - direct p99) -> {target['verdict']}"
    )
    for run in target["runs"]:
        print(
            f"  {run['mode']} N={run['sockets']}: {'PASS' if run['pass'] else 'FAIL'} "
            f"(added p99 {fmt(run['added_p99_ms'])} ms"
            + (f", {run['errors']} failed turns" if run["errors"] else "")
            + ")"
            + (f" [{run['client_limited']}]" if run["client_limited"] else "")
        )


def main(argv: list[str] | None = None) -> None:
    params = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run_benchmark(params)
    print_table(report, params)
    for mode, problems in report["server_log_problems"].items():
        print(f"{mode}: server log ERROR lines during the runs: {problems['error_lines']}")
        print_log_problems(problems)
    special = params.quick or bool(params.site_env) or not report["complete"]
    paths = write_json(report, name="voice_latency", stamp=STAMP, latest=not special)
    print(f"\nwrote {', '.join(str(p.relative_to(ROOT)) for p in paths)}")


if __name__ == "__main__":
    main()
