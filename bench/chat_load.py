"""Chat WebSocket load benchmark: time to first token under N concurrent streams.

Run from the repository root:

    python -m bench.chat_load                   # SQLite + in-memory layer, N = 1, 50, 200
    python -m bench.chat_load --redis-postgres  # PostgreSQL `bench_chat` + Redis DB 15
    python -m bench.chat_load --quick           # smoke run: N = 1, 10; 1 message each
    python -m bench.chat_load --profile         # also py-spy each WebSocket run (if installed)
    python -m bench.chat_load --db-query conn_max_age=60 --site-env REPLY_PERSIST_INTERVAL_MS=2000
                                                # what-if: same load, changed site settings

It starts its own fakeai (default TTFT 200 ms, 50 tokens/s, 50 tokens) and one
daphne, creates users `bench-<i>` with API tokens, then for each N opens N
WebSockets (all connected first) and has each send `--messages` messages one
after another (the next right after the previous `complete`). With
`--arrival steady` (the default) the users' first messages are spread evenly
over one reply's duration, so about N replies stream at every moment; with
`--arrival burst` all N first messages leave in the same instant (worst case).
Every process stops by itself: per-message and per-run timeouts,
and a cap on the whole benchmark.

Per message the client measures, with perf_counter:
- TTFT: send -> first `token` frame; total: send -> `complete`;
- tokens received and tokens/s delivered ((tokens - 1) / first-to-last token);
- errors: `error` events, disconnects, timeouts, messages never sent.
Per run: daphne's peak RSS (sampled every 100 ms) and CPU% (100 = one core),
plus fakeai's and this load generator's CPU%, and aggregate tokens/s.

Baseline: before each WebSocket run, the same N clients stream the same
number of replies straight from fakeai with `openai.AsyncOpenAI` (one shared
client, max_retries=0). Its TTFT is fakeai's configured delay plus what fakeai
and a Python client add at that concurrency on this machine.

Reading the table: "added (a)" is client TTFT minus fakeai's configured TTFT
(everything that is not the model: server, fakeai, client, loopback); "added
(b)" is our percentile minus the direct baseline's percentile at the same N:
roughly what the server alone adds. The target (at N = 200: added (b) p50 <
5 ms, p99 < 25 ms, zero errors) is judged on (b). The breakdown table splits
the WebSocket TTFT using the server's own upstream TTFT (from the start of
the generation task to the first token from the openai client, reported in
`complete.metrics`): send -> `ack` (start_reply: DB transaction, stream
open); client TTFT minus upstream TTFT (everything outside the upstream call:
start_reply, task start, token append, forwarding, socket, client); upstream
TTFT minus the configured TTFT (openai client inside daphne plus fakeai). The load
generator shares the machine's cores with daphne and fakeai: a high "load
CPU%" means client-side queueing is inside every number, and "other
processes" (Postgres, Redis, anything else running) shows how quiet the
machine was. Compare runs only at similar "other processes" CPU.

Results: bench/results/chat_load-<UTC time>.json (every message's TTFT
included) and chat_load-latest.json (not replaced by --quick, what-if or profiled runs); with
--profile, one py-spy file per WebSocket run (read it with
`python -m bench.pyspy_summary FILE`); a daphne log that had errors is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import signal
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter

import openai
import psutil

from bench.clients import (
    CONNECT_CONCURRENCY,
    CONNECT_TIMEOUT_S,
    MessageResult,
    Ramp,
    direct_message,
    direct_user,
    ws_user,
)
from bench.harness import (
    RESULTS_DIR,
    ROOT,
    SAMPLE_INTERVAL_S,
    ResourceSampler,
    code_version,
    create_users,
    fakeai_stats,
    flush_redis,
    log_problems,
    machine_info,
    manage,
    py_spy,
    recreate_postgres,
    spawn,
    write_json,
)
from bench.stats import fmt, pcts, rnd
from tests.support import processes

TARGET_USERS = 200
TARGET_ADDED_P50_MS = 5.0
TARGET_ADDED_P99_MS = 25.0

PAUSE_BETWEEN_RUNS_S = 1.0
STAMP = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


# --- parameters -------------------------------------------------------------------
@dataclass(frozen=True)
class Params:
    users: list[int]
    messages: int
    ttft_ms: float
    tps: float
    tokens: int
    redis_postgres: bool
    pg_url: str
    pg_database: str
    redis_url: str
    repeat_largest: int
    message_timeout_s: float
    run_timeout_s: float
    max_seconds: float
    profile: bool
    quick: bool
    profile_idle: bool = False
    arrival: str = "steady"
    db_query: str = ""
    site_env: dict[str, str] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return "ws-redis-pg" if self.redis_postgres else "ws-sqlite"

    def start_offset_s(self, user: int) -> float:
        """When this user sends its first message, after the run starts.

        "burst": everyone at once, the worst case (N messages in the same
        millisecond, and again after each reply since all replies take as
        long). "steady": first messages spread evenly over one reply's
        duration, then each next message right after `complete`, so about N
        replies stream at every moment: N concurrent streams in steady state.
        The same offsets are used for the direct baseline.
        """
        if self.arrival == "burst":
            return 0.0
        reply_s = self.ttft_ms / 1000 + (self.tokens / self.tps if self.tps else 0)
        return reply_s * random.Random(1000 + user).random()

    def plan(self) -> list[int]:
        """N of each run, in order; the largest N repeated to show run-to-run noise."""
        largest = max(self.users)
        return list(self.users) + [largest] * (self.repeat_largest - 1)


def parse_args(argv: list[str] | None = None) -> Params:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chat_load", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--users", default="1,50,200", help="comma-separated N of concurrent users")
    parser.add_argument("--messages", type=int, default=3, help="messages per user, sequential")
    parser.add_argument("--ttft-ms", type=float, default=200.0, help="fakeai time to first token")
    parser.add_argument("--tps", type=float, default=50.0, help="fakeai tokens/second")
    parser.add_argument("--tokens", type=int, default=50, help="fakeai reply length in tokens")
    parser.add_argument(
        "--redis-postgres",
        action="store_true",
        help="PostgreSQL (database --pg-database, recreated) + Redis (--redis-url, flushed)",
    )
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--pg-database", default="bench_chat")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument(
        "--repeat-largest", type=int, default=2, help="run the largest N this many times (noise)"
    )
    parser.add_argument("--message-timeout-s", type=float, default=60.0)
    parser.add_argument("--run-timeout-s", type=float, default=180.0)
    parser.add_argument("--max-seconds", type=float, default=1500.0, help="cap on the whole run")
    parser.add_argument("--profile", action="store_true", help="py-spy daphne in WebSocket runs")
    parser.add_argument(
        "--profile-idle",
        action="store_true",
        help="with --profile: sample waiting threads too (shows how busy the DB thread is)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: N = 1,10; 1 message")
    parser.add_argument(
        "--arrival",
        choices=["steady", "burst"],
        default="steady",
        help="steady: first messages spread over one reply's duration (N concurrent streams); "
        "burst: all N sent in the same instant",
    )
    parser.add_argument(
        "--db-query",
        default="",
        help="what-if: query string added to DATABASE_URL, e.g. conn_max_age=60",
    )
    parser.add_argument(
        "--site-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="what-if: extra setting for daphne, e.g. REPLY_PERSIST_INTERVAL_MS=100 (repeatable)",
    )
    args = parser.parse_args(argv)
    site_env = dict(item.split("=", 1) for item in args.site_env if "=" in item)
    if len(site_env) != len(args.site_env):
        parser.error("--site-env takes NAME=VALUE")
    users = [int(n) for n in args.users.split(",") if n.strip()]
    messages, repeat = args.messages, args.repeat_largest
    if args.quick:
        users, messages, repeat = [1, 10], 1, 1
    if not users or min(users) < 1 or messages < 1 or repeat < 1:
        parser.error("--users, --messages and --repeat-largest must be positive")
    if args.pg_database != "bench_chat" and not args.pg_database.startswith("bench"):
        parser.error("--pg-database is dropped and recreated: its name must start with 'bench'")
    if args.redis_postgres and not re.search(r"/\d+$", args.redis_url):
        parser.error("--redis-url must name a database number (it is flushed)")
    return Params(
        users=users,
        messages=messages,
        ttft_ms=args.ttft_ms,
        tps=args.tps,
        tokens=args.tokens,
        redis_postgres=args.redis_postgres,
        pg_url=args.pg_url.rstrip("/"),
        pg_database=args.pg_database,
        redis_url=args.redis_url,
        repeat_largest=repeat,
        message_timeout_s=args.message_timeout_s,
        run_timeout_s=args.run_timeout_s,
        max_seconds=args.max_seconds,
        profile=args.profile or args.profile_idle,
        profile_idle=args.profile_idle,
        quick=args.quick,
        arrival=args.arrival,
        db_query=args.db_query.lstrip("?"),
        site_env=site_env,
    )


# --- one run ------------------------------------------------------------------------
@dataclass
class Run:
    mode: str
    users: int
    repeat: int
    results: list[MessageResult]
    resources: dict
    wall_s: float
    ramp_s: float
    upstream_requests: int | None = None
    profile: str | None = None
    stats: dict = field(default_factory=dict)


async def run_load(
    mode: str,
    n: int,
    repeat: int,
    params: Params,
    *,
    make_user,
    watched: dict[str, psutil.Process],
    fakeai_url: str,
    profile_pid: int | None = None,
) -> Run:
    """Ramp up n users, release them together, wait (bounded) for all to finish."""
    per_user = [[MessageResult() for _ in range(params.messages)] for _ in range(n)]
    ramp = Ramp(n)
    ramp_started = perf_counter()
    tasks = [asyncio.create_task(make_user(i, per_user[i], ramp)) for i in range(n)]
    try:
        await asyncio.wait_for(ramp.all_arrived.wait(), CONNECT_TIMEOUT_S * (1 + n / 25))
    except TimeoutError:
        print(f"  ramp-up timed out: {ramp.arrived}/{n} clients ready", file=sys.stderr)
    ramp_s = perf_counter() - ramp_started
    before = await asyncio.to_thread(fakeai_stats, fakeai_url)
    profile_path = None
    spy = contextlib.nullcontext()
    if profile_pid is not None:
        profile_path = RESULTS_DIR / f"chat_load-{STAMP}-{mode}-N{n}-r{repeat}.pyspy.txt"
        spy = py_spy(
            profile_pid, profile_path, duration_s=params.run_timeout_s, idle=params.profile_idle
        )
    with spy, ResourceSampler(watched) as sampler:
        started = perf_counter()
        ramp.start.set()
        done, pending = await asyncio.wait(tasks, timeout=params.run_timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        wall_s = perf_counter() - started
    after = await asyncio.to_thread(fakeai_stats, fakeai_url)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            print(f"  client failed: {task.exception()!r}", file=sys.stderr)
    return Run(
        mode=mode,
        users=n,
        repeat=repeat,
        results=[r for rs in per_user for r in rs],
        resources=sampler.result,
        wall_s=wall_s,
        ramp_s=ramp_s,
        upstream_requests=after["requests"] - before["requests"],
        profile=str(profile_path.relative_to(ROOT)) if profile_path else None,
    )


# --- statistics ---------------------------------------------------------------------
def summarize(run: Run, params: Params) -> dict:
    ok = [r for r in run.results if r.ok]
    ttft = [r.ttft_ms for r in ok if r.ttft_ms is not None]
    tokens_total = sum(r.tokens for r in run.results)
    stats = {
        "messages": len(run.results),
        "ok": len(ok),
        "errors": len(run.results) - len(ok),
        "errors_by_kind": dict(Counter(r.status for r in run.results if not r.ok)),
        "ttft_ms": {
            **pcts(ttft),
            "mean": rnd(sum(ttft) / len(ttft)) if ttft else None,
            "max": rnd(max(ttft, default=None)),
        },
        "added_a_ms": pcts([t - params.ttft_ms for t in ttft]),
        "total_ms": pcts([r.total_ms for r in ok]),
        "tokens_per_message": pcts([r.tokens for r in ok], qs=(50,))
        | {"min": min((r.tokens for r in ok), default=None)},
        "tokens_per_s_delivered": pcts(
            [v for r in ok if (v := r.tokens_per_s) is not None], qs=(5, 50)
        ),
        "aggregate_tokens_per_s": rnd(tokens_total / run.wall_s if run.wall_s else None, 1),
        "tokens_total": tokens_total,
        "wall_s": rnd(run.wall_s, 3),
        "ramp_s": rnd(run.ramp_s, 3),
        "upstream_requests": run.upstream_requests,
        "resources": run.resources,
        "ttft_ms_samples": [rnd(t) for t in ttft],
    }
    if run.mode != "direct":
        acks = [r.ack_ms for r in ok if r.ack_ms is not None]
        server = [r.server_ttft_ms for r in ok if r.server_ttft_ms is not None]
        outside = [r.ttft_ms - r.server_ttft_ms for r in ok if r.server_ttft_ms is not None]
        stats["breakdown_ms"] = {
            "send_to_ack": pcts(acks, qs=(50, 99)),
            "outside_upstream": pcts(outside, qs=(50, 99)),
            "upstream_extra": pcts([t - params.ttft_ms for t in server], qs=(50, 99)),
            "server_upstream_ttft": pcts(server, qs=(50, 99)),
        }
    # The first message of every user arrives in one burst, before any token streams;
    # later ones arrive while other replies stream.
    stats["by_message_index"] = [
        {
            "index": index,
            "ttft_ms": pcts([r.ttft_ms for r in ok_at if r.ttft_ms is not None], qs=(50, 99)),
            "send_to_ack_ms": pcts([r.ack_ms for r in ok_at if r.ack_ms is not None], qs=(50, 99)),
        }
        for index in range(params.messages)
        if (ok_at := [r for r in run.results[index :: params.messages] if r.ok])
    ]
    return stats


def add_baseline_comparison(ws: dict, direct: dict) -> None:
    ws["baseline_ttft_ms"] = {k: direct["ttft_ms"][k] for k in ("p50", "p95", "p99")}
    ws["added_b_ms"] = {
        k: rnd(ws["ttft_ms"][k] - direct["ttft_ms"][k])
        if ws["ttft_ms"][k] is not None and direct["ttft_ms"][k] is not None
        else None
        for k in ("p50", "p95", "p99")
    }


def judge(rows: list[dict], *, server_errors: int) -> dict:
    """PASS/FAIL at N = TARGET_USERS, on (b); (a) shown for information.

    "Zero errors" covers the client's view and ERROR lines in daphne's log.
    """
    judged = []
    for row in rows:
        if row["mode"] == "direct" or row["users"] != TARGET_USERS:
            continue
        b, a = row.get("added_b_ms", {}), row["added_a_ms"]
        passed = (
            row["errors"] == 0
            and b.get("p50") is not None
            and b["p50"] < TARGET_ADDED_P50_MS
            and b["p99"] < TARGET_ADDED_P99_MS
        )
        a_passed = (
            row["errors"] == 0
            and a["p50"] is not None
            and a["p50"] < TARGET_ADDED_P50_MS
            and a["p99"] < TARGET_ADDED_P99_MS
        )
        judged.append({"repeat": row["repeat"], "pass": passed, "pass_on_a": a_passed})
    verdict = "NOT EVALUATED"
    if judged:
        passed = all(j["pass"] for j in judged) and server_errors == 0
        verdict = "PASS" if passed else "FAIL"
    return {
        "users": TARGET_USERS,
        "added_p50_ms_below": TARGET_ADDED_P50_MS,
        "added_p99_ms_below": TARGET_ADDED_P99_MS,
        "zero_errors": True,
        "server_log_error_lines": server_errors,
        "judged_on": "added_b (our percentile minus the direct baseline's, same N)",
        "runs": judged,
        "verdict": verdict,
    }


# --- output -------------------------------------------------------------------------
def print_tables(rows: list[dict], target: dict, params: Params) -> None:
    head = (
        f"{'mode':<12}{'N':>5}{'msgs':>6}{'err':>5} | {'TTFT p50':>9}{'p95':>8}{'p99':>8} | "
        f"{'add(a) p50':>11}{'p99':>8} | {'add(b) p50':>11}{'p99':>8} | "
        f"{'tok/s p50':>10}{'agg tok/s':>10} | {'RSS MB':>7}{'CPU%':>7} | {'load CPU%':>9}"
    )
    print(
        f"\nTTFT in ms; fakeai: ttft {params.ttft_ms:g} ms, {params.tps:g} tok/s, "
        f"{params.tokens} tokens; {params.messages} message(s) per user"
    )
    if params.db_query or params.site_env:
        print(f"what-if: DATABASE_URL ?{params.db_query or '-'}; site env {params.site_env or '-'}")
    print(head)
    print("-" * len(head))
    for row in rows:
        t, a, b = row["ttft_ms"], row["added_a_ms"], row.get("added_b_ms", {})
        res = row["resources"]
        direct = row["mode"] == "direct"
        print(
            f"{row['mode']:<12}{row['users']:>5}{row['messages']:>6}{row['errors']:>5} | "
            f"{fmt(t['p50']):>9}{fmt(t['p95']):>8}{fmt(t['p99']):>8} | "
            f"{fmt(a['p50']):>11}{fmt(a['p99']):>8} | "
            f"{fmt(b.get('p50')):>11}{fmt(b.get('p99')):>8} | "
            f"{fmt(row['tokens_per_s_delivered']['p50']):>10}"
            f"{fmt(row['aggregate_tokens_per_s'], 0):>10} | "
            f"{'-' if direct else fmt(res.get('daphne_peak_rss_mb')):>7}"
            f"{'-' if direct else fmt(res.get('daphne_cpu_percent'), 0):>7} | "
            f"{fmt(res.get('client_cpu_percent'), 0):>9}"
        )
    print(
        "\nWebSocket TTFT breakdown, ms (p50 / p99): send->ack | client TTFT minus server's"
        " upstream TTFT | server's upstream TTFT minus fakeai's configured TTFT"
    )
    for row in rows:
        if row["mode"] == "direct":
            continue
        bd = row["breakdown_ms"]
        parts = " | ".join(
            f"{fmt(bd[k]['p50'])} / {fmt(bd[k]['p99'])}"
            for k in ("send_to_ack", "outside_upstream", "upstream_extra")
        )
        res = row["resources"]
        print(
            f"  N={row['users']:<4} r{row['repeat']}  {parts}   (fakeai CPU "
            f"{fmt(res.get('fakeai_cpu_percent'), 0)}%, other processes "
            f"{fmt(res.get('other_cpu_percent'), 0)}%, run {row['wall_s']:.1f} s)"
            + (
                f" others: {', '.join(res['top_other_processes'])}"
                if res.get("top_other_processes")
                else ""
            )
        )
    print("\nTTFT by message number, ms (p50 / p99; the first messages arrive in one burst):")
    for row in rows:
        cells = "   ".join(
            f"#{m['index'] + 1} {fmt(m['ttft_ms']['p50'])} / {fmt(m['ttft_ms']['p99'])}"
            for m in row["by_message_index"]
        )
        print(f"  {row['mode']:<12} N={row['users']:<4} r{row['repeat']}  {cells}")
    for row in rows:
        if row["errors"]:
            print(f"  errors {row['mode']} N={row['users']}: {row['errors_by_kind']}")
    repeats = [r for r in rows if r["mode"] != "direct" and r["users"] == max(params.users)]
    if len(repeats) > 1:
        values = ", ".join(
            f"p50 {fmt(r['ttft_ms']['p50'])} / p99 {fmt(r['ttft_ms']['p99'])}" for r in repeats
        )
        print(f"\nNoise, N={repeats[0]['users']} repeated: TTFT {values}")
    print(
        f"\nTarget at N={TARGET_USERS}: server-added (b) p50 < {TARGET_ADDED_P50_MS:g} ms, "
        f"p99 < {TARGET_ADDED_P99_MS:g} ms, zero errors -> {target['verdict']}"
        + "".join(
            f"\n  r{j['repeat']}: {'PASS' if j['pass'] else 'FAIL'} "
            f"(on (a): {'PASS' if j['pass_on_a'] else 'FAIL'})"
            for j in target["runs"]
        )
    )
    if target["server_log_error_lines"]:
        print(f"  daphne logged {target['server_log_error_lines']} ERROR lines during the runs")


# --- the whole benchmark ---------------------------------------------------------------


async def measure(
    params: Params,
    *,
    site_url: str,
    fakeai_url: str,
    tokens: list[str],
    daphne_pid: int,
    fakeai_pid: int,
) -> list[Run]:
    ws_url = site_url.replace("http://", "ws://") + "/ws/chat/"
    watched = {
        "daphne": psutil.Process(daphne_pid),
        "fakeai": psutil.Process(fakeai_pid),
        "client": psutil.Process(),
    }
    connect_slots = asyncio.Semaphore(CONNECT_CONCURRENCY)

    def ws_maker(i, results, ramp):
        return ws_user(
            ws_url,
            tokens[i],
            results,
            ramp,
            connect_slots,
            start_offset_s=params.start_offset_s(i),
            timeout_s=params.message_timeout_s,
        )

    # Warm up both paths (imports, first connections, client objects); not recorded.
    warm = openai.AsyncOpenAI(base_url=fakeai_url, api_key="bench", max_retries=0)
    await direct_message(warm, MessageResult(), 0, timeout_s=params.message_timeout_s)
    await warm.close()
    warm_ramp = Ramp(1)
    warm_ramp.start.set()
    await ws_user(
        ws_url,
        tokens[0],
        [MessageResult()],
        warm_ramp,
        connect_slots,
        start_offset_s=0.0,
        timeout_s=params.message_timeout_s,
    )

    runs: list[Run] = []
    seen: Counter = Counter()
    for n in params.plan():
        seen[n] += 1
        client = openai.AsyncOpenAI(base_url=fakeai_url, api_key="bench", max_retries=0)

        def direct_maker(i, results, ramp, client=client):
            return direct_user(
                client,
                results,
                ramp,
                start_offset_s=params.start_offset_s(i),
                timeout_s=params.message_timeout_s,
            )

        print(f"N={n} r{seen[n]}: direct baseline ...", file=sys.stderr, flush=True)
        runs.append(
            await run_load(
                "direct",
                n,
                seen[n],
                params,
                make_user=direct_maker,
                watched=watched,
                fakeai_url=fakeai_url,
            )
        )
        await client.close()
        await asyncio.sleep(PAUSE_BETWEEN_RUNS_S)
        print(f"N={n} r{seen[n]}: {params.mode} ...", file=sys.stderr, flush=True)
        runs.append(
            await run_load(
                params.mode,
                n,
                seen[n],
                params,
                make_user=ws_maker,
                watched=watched,
                fakeai_url=fakeai_url,
                profile_pid=daphne_pid if params.profile else None,
            )
        )
        await asyncio.sleep(PAUSE_BETWEEN_RUNS_S)
    return runs


def site_environment(params: Params, *, fakeai_url: str, tmp: Path) -> dict:
    if params.redis_postgres:
        recreate_postgres(params.pg_url, params.pg_database)
        flush_redis(params.redis_url)
        database_url = f"{params.pg_url}/{params.pg_database}"
        extra = {"REDIS_URL": params.redis_url}
    else:
        database_url = f"sqlite:///{tmp / 'bench.sqlite3'}"
        extra = {}
    if params.db_query:
        database_url += f"?{params.db_query}"
    return processes.site_env(
        fakeai_url=fakeai_url,
        database_url=database_url,
        extra={**extra, "CHAT_RATE_LIMIT_PER_MINUTE": "0", **params.site_env},
    )


def run_benchmark(params: Params) -> dict:
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    code = code_version()
    with tempfile.TemporaryDirectory(prefix="chat_load-") as tmp_name:
        tmp = Path(tmp_name)
        fake_port = processes.free_port()
        fake_args = [
            "-m",
            "fakeai",
            "--port",
            str(fake_port),
            "--ttft-ms",
            str(params.ttft_ms),
            "--tps",
            str(params.tps),
            "--tokens",
            str(params.tokens),
        ]
        fakeai_url = f"http://127.0.0.1:{fake_port}/v1"
        with spawn(
            fake_args,
            env=dict(os.environ),
            log_path=tmp / "fakeai.log",
            ready_url=f"{fakeai_url}/models",
        ) as fake:
            env = site_environment(params, fakeai_url=fakeai_url, tmp=tmp)
            print("migrating and creating users ...", file=sys.stderr, flush=True)
            manage("migrate", "--noinput", env=env)
            tokens = create_users(max(params.users), env=env)
            site_port = processes.free_port()
            daphne_args = [
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(site_port),
                "realtime_site.asgi:application",
            ]
            site_url = f"http://127.0.0.1:{site_port}"
            daphne_log = tmp / "daphne.log"
            with spawn(
                daphne_args, env=env, log_path=daphne_log, ready_url=f"{site_url}/healthz"
            ) as site:
                runs = asyncio.run(
                    asyncio.wait_for(
                        measure(
                            params,
                            site_url=site_url,
                            fakeai_url=fakeai_url,
                            tokens=tokens,
                            daphne_pid=site.pid,
                            fakeai_pid=fake.pid,
                        ),
                        params.max_seconds,
                    )
                )
            server_log = log_problems(daphne_log)
            if server_log["error_lines"]:
                # Keep the evidence (first 2 MB); the temporary directory goes away.
                kept = RESULTS_DIR / f"chat_load-{STAMP}-daphne.log"
                RESULTS_DIR.mkdir(parents=True, exist_ok=True)
                with open(daphne_log, "rb") as source:
                    kept.write_bytes(source.read(2 * 2**20))
                server_log["log"] = str(kept.relative_to(ROOT))
    rows, direct_by_key = [], {}
    for run in runs:
        stats = summarize(run, params)
        row = {"mode": run.mode, "users": run.users, "repeat": run.repeat, **stats}
        if run.profile:
            row["profile"] = run.profile
        if run.mode == "direct":
            direct_by_key[(run.users, run.repeat)] = row
        else:
            add_baseline_comparison(row, direct_by_key[(run.users, run.repeat)])
        rows.append(row)
    parameters = {k: v for k, v in asdict(params).items()}
    parameters.update(
        mode=params.mode,
        plan=params.plan(),
        connect_concurrency=CONNECT_CONCURRENCY,
        sample_interval_s=SAMPLE_INTERVAL_S,
        chat_rate_limit_per_minute=0,
    )
    return {
        "benchmark": "chat_load",
        "started_at": started_at,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "code": code,
        "parameters": parameters,
        "server_log_problems": server_log,
        "target": judge(rows, server_errors=server_log["error_lines"]),
        "runs": rows,
    }


def main(argv: list[str] | None = None) -> None:
    params = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the child processes are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run_benchmark(params)
    print_tables(report["runs"], report["target"], params)
    if report["server_log_problems"]["error_lines"]:
        print(f"\ndaphne log problems: {report['server_log_problems']}")
    # Smoke, what-if and profiled runs never replace the latest standard result.
    special = params.quick or params.db_query or params.site_env or params.profile
    paths = write_json(report, name="chat_load", stamp=STAMP, latest=not special)
    print(f"\nwrote {', '.join(str(p.relative_to(ROOT)) for p in paths)}")


if __name__ == "__main__":
    main()
