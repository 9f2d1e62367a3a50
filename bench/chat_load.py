"""Chat WebSocket load benchmark: time to first token under N concurrent streams.

Run from the repository root:

    python -m bench.chat_load                   # SQLite + in-memory layer, N = 1, 50, 200
    python -m bench.chat_load --redis-postgres  # PostgreSQL `bench_chat` + Redis DB 15, 2 daphnes
    python -m bench.chat_load --arrival steady,burst   # both arrival modes in one invocation
    python -m bench.chat_load --quick           # smoke run: N = 1, 10; 1 message each
    python -m bench.chat_load --soak 10000      # memory line: RSS of one daphne every 1,000 replies
    python -m bench.chat_load --profile         # also py-spy daphne in each run (if installed)
    python -m bench.chat_load --db-query conn_max_age=60 --site-env REPLY_PERSIST_INTERVAL_MS=2000
                                                # what-if: same load, changed site settings

It starts its own fakeai (default TTFT 200 ms, 50 tokens/s, 50 tokens), the
lean relay (bench/lean_relay.py) and one daphne (`--processes K` daphnes in
Redis + PostgreSQL mode, 2 by default, sharing the database and Redis; the
clients are dealt to them round-robin, as a load balancer would), creates
users `bench-<i>` with API tokens, then for each N opens N WebSockets (all
connected first) and has each send `--messages` messages one after another
(the next right after the previous `complete`). With `--arrival steady` (the
default) the users' first messages are spread evenly over one reply's
duration, so about N replies stream at every moment; with `--arrival burst`
all N first messages leave in the same instant (worst case). Every process
stops by itself: per-message and per-run timeouts, and a cap on the whole
benchmark.

Per message the client measures, with perf_counter:
- TTFT: send -> first `token` frame; total: send -> `complete`;
- tokens received (by the frames' `index`: a late reader's frame carries its
  backlog) and tokens/s delivered (tokens after the first frame / first-to-last frame);
- errors: `error` events, disconnects, timeouts, messages never sent.
Per run: each server process's peak RSS (sampled every 100 ms) and CPU%
(100 = one core), plus fakeai's and this load generator's CPU%, and aggregate
tokens/s.

Two baselines run before ours at every N, with the same clients, arrivals and fakeai:
- direct: the clients stream straight from fakeai with `openai.AsyncOpenAI`
  (one shared client, max_retries=0): fakeai plus a Python client at that
  concurrency on this machine;
- lean: the same WebSocket clients against the lean relay, a separate aiohttp
  process that relays each reply with no auth, storage or SDK: what a Python
  relay costs at its least. The key figures are ours / lean at each TTFT
  percentile.

The target (at N = 200 and 50 tokens/s): our TTFT p99 within 1.3x the lean
relay's in embedded mode and 1.6x in Redis + PostgreSQL mode, zero errors
(client side and ERROR lines in the server logs during the runs), and tokens/s
per stream (p50) within 5 % of the model's. "added (b)" is our percentile minus
the direct baseline's. The breakdown table splits our TTFT with the server's
own upstream TTFT (reported in `complete.metrics`): send -> `ack`; client TTFT
minus upstream TTFT; upstream TTFT minus fakeai's configured TTFT. The load
generator shares the machine's cores with the servers: a high "load CPU%"
means client-side queueing is inside every number, and "other processes"
(Postgres, Redis, anything else running) shows how quiet the machine was.

Results: bench/results/chat_load-<UTC time>.json (every message's TTFT
included) and chat_load-latest.json (not replaced by --quick, what-if or
profiled runs); the soak writes chat_load-soak-<UTC time>.json (and
chat_load-soak-latest.json). With --profile, one py-spy file per run of ours
(read it with `python -m bench.pyspy_summary FILE`); a server log that had
errors is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import re
import signal
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Coroutine
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
    Server,
    code_version,
    create_users,
    fakeai_stats,
    machine_info,
    print_log_problems,
    py_spy,
    server_log_report,
    start_daphnes,
    start_lean_relay,
    start_site,
    write_json,
)
from bench.soak import run_soak
from bench.stats import fmt, fmt_ratio, pcts, ratio, rnd

TARGET_USERS = 200
TARGET_TPS = 50.0
# Our TTFT p99 over the lean relay's, at TARGET_USERS streams of TARGET_TPS tokens/s.
TARGET_P99_RATIO = {"ws-sqlite": 1.3, "ws-redis-pg": 1.6}
# "Tokens/s per stream equal to the upstream's": the delivered p50 within this fraction.
TARGET_TPS_TOLERANCE = 0.05

DIRECT, LEAN = "direct", "lean"
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
    arrivals: tuple[str, ...] = ("steady",)
    processes: int = 1
    soak: int = 0
    soak_concurrency: int = 100
    db_query: str = ""
    site_env: dict[str, str] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return "ws-redis-pg" if self.redis_postgres else "ws-sqlite"

    @property
    def reply_s(self) -> float:
        """How long one reply takes at fakeai's pace."""
        return self.ttft_ms / 1000 + (self.tokens / self.tps if self.tps else 0)

    def start_offset_s(self, user: int, arrival: str) -> float:
        """When this user sends its first message, after the run starts.

        "burst": everyone at once, the worst case (N messages in the same
        millisecond, and again after each reply since all replies take as
        long). "steady": first messages spread evenly over one reply's
        duration, then each next message right after `complete`, so about N
        replies stream at every moment: N concurrent streams in steady state.
        Every baseline uses the same offsets.
        """
        if arrival == "burst":
            return 0.0
        return self.reply_s * random.Random(1000 + user).random()

    def plan(self) -> list[tuple[str, int]]:
        """(arrival, N) of each run, in order; the largest N repeated to show run-to-run noise."""
        largest = max(self.users)
        sizes = list(self.users) + [largest] * (self.repeat_largest - 1)
        return [(arrival, n) for arrival in self.arrivals for n in sizes]


def parse_args(argv: list[str] | None = None) -> Params:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chat_load", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--users", default="1,50,200", help="comma-separated N of concurrent users")
    parser.add_argument("--messages", type=int, default=3, help="messages per user, sequential")
    parser.add_argument("--ttft-ms", type=float, default=200.0, help="fakeai time to first token")
    parser.add_argument("--tps", type=float, default=TARGET_TPS, help="fakeai tokens/second")
    parser.add_argument("--tokens", type=int, default=50, help="fakeai reply length in tokens")
    parser.add_argument(
        "--redis-postgres",
        action="store_true",
        help="PostgreSQL (database --pg-database, recreated) + Redis (--redis-url, flushed)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="daphne processes sharing the database and Redis, clients dealt round-robin "
        "(default 2 with --redis-postgres; the embedded mode runs 1)",
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
    parser.add_argument("--profile", action="store_true", help="py-spy daphne in runs of ours")
    parser.add_argument(
        "--profile-idle",
        action="store_true",
        help="with --profile: sample waiting threads too (shows how busy the DB thread is)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: N = 1,10; 1 message")
    parser.add_argument(
        "--arrival",
        default="steady",
        help="steady: first messages spread over one reply's duration (N concurrent streams); "
        "burst: all N sent in the same instant; steady,burst: both, one after the other",
    )
    parser.add_argument(
        "--soak",
        type=int,
        default=0,
        metavar="REPLIES",
        help="instead of the load runs: this many replies through one daphne, its RSS "
        "sampled every 1,000 (the memory line)",
    )
    parser.add_argument(
        "--soak-concurrency", type=int, default=100, help="concurrent users during --soak"
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
    arrivals = tuple(a.strip() for a in args.arrival.split(",") if a.strip())
    if not arrivals or not set(arrivals) <= {"steady", "burst"}:
        parser.error("--arrival takes steady, burst or steady,burst")
    processes = args.processes or (2 if args.redis_postgres else 1)
    if processes < 1 or (processes > 1 and not args.redis_postgres):
        parser.error("--processes above 1 needs --redis-postgres (shared layer and streams)")
    if args.soak < 0 or args.soak_concurrency < 1:
        parser.error("--soak and --soak-concurrency must be positive")
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
        arrivals=arrivals,
        processes=1 if args.soak else processes,
        soak=args.soak,
        soak_concurrency=args.soak_concurrency,
        db_query=args.db_query.lstrip("?"),
        site_env=site_env,
    )


# --- one run ------------------------------------------------------------------------
@dataclass
class Run:
    mode: str
    arrival: str
    users: int
    repeat: int
    results: list[MessageResult]
    resources: dict
    wall_s: float
    ramp_s: float
    server_names: list[str]
    upstream_requests: int | None = None
    profile: str | None = None


MakeUser = Callable[[int, list[MessageResult], Ramp], Coroutine]


def round_robin(user: int, servers: list[Server]) -> Server:
    """The server a load balancer would deal this user's connection to."""
    return servers[user % len(servers)]


async def run_load(
    mode: str,
    arrival: str,
    n: int,
    repeat: int,
    params: Params,
    *,
    make_user: MakeUser,
    watched: dict[str, psutil.Process],
    server_names: list[str],
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
        profile_path = RESULTS_DIR / f"chat_load-{STAMP}-{mode}-{arrival}-N{n}-r{repeat}.pyspy.txt"
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
        arrival=arrival,
        users=n,
        repeat=repeat,
        results=[r for rs in per_user for r in rs],
        resources=sampler.result,
        wall_s=wall_s,
        ramp_s=ramp_s,
        server_names=server_names,
        upstream_requests=after["requests"] - before["requests"],
        profile=str(profile_path.relative_to(ROOT)) if profile_path else None,
    )


# --- statistics ---------------------------------------------------------------------
def server_resources(resources: dict, names: list[str]) -> dict:
    """CPU% and peak RSS of the processes that served a run (none for the direct baseline)."""
    per_process = [
        {"name": name, **resources["processes"][name]}
        for name in names
        if name in resources["processes"]
    ]
    return {
        "server_processes": per_process,
        # 100 = one core; several processes add up.
        "server_cpu_percent": rnd(sum(p["cpu_percent"] or 0 for p in per_process), 1)
        if per_process
        else None,
        "server_peak_rss_mb": max((p["peak_rss_mb"] for p in per_process), default=None),
    }


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
        # Fewer frames than tokens: a reader that fell behind got its backlog in one frame.
        "token_frames_per_message": pcts([r.frames for r in ok], qs=(50,))
        | {"min": min((r.frames for r in ok), default=None)},
        "tokens_per_s_delivered": pcts(
            [v for r in ok if (v := r.tokens_per_s) is not None], qs=(5, 50)
        ),
        "aggregate_tokens_per_s": rnd(tokens_total / run.wall_s if run.wall_s else None, 1),
        "tokens_total": tokens_total,
        "wall_s": rnd(run.wall_s, 3),
        "ramp_s": rnd(run.ramp_s, 3),
        "upstream_requests": run.upstream_requests,
        **server_resources(run.resources, run.server_names),
        "resources": run.resources,
        "ttft_ms_samples": [rnd(t) for t in ttft],
    }
    if run.mode not in (DIRECT, LEAN):
        acks = [r.ack_ms for r in ok if r.ack_ms is not None]
        server = [r.server_ttft_ms for r in ok if r.server_ttft_ms is not None]
        outside = [r.ttft_ms - r.server_ttft_ms for r in ok if r.server_ttft_ms is not None]
        stats["breakdown_ms"] = {
            "send_to_ack": pcts(acks, qs=(50, 99)),
            "outside_upstream": pcts(outside, qs=(50, 99)),
            "upstream_extra": pcts([t - params.ttft_ms for t in server], qs=(50, 99)),
            "server_upstream_ttft": pcts(server, qs=(50, 99)),
        }
    # With steady arrivals only the first messages are spread over the start; with
    # burst arrivals every message number leaves together.
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


PERCENTILES = ("p50", "p95", "p99")


def add_comparisons(rows: list[dict]) -> None:
    """Put the baselines beside every relay row of the same arrival, N and repeat.

    Lean and ours get "added (b)" (minus the direct baseline); ours gets
    "ratio_to_lean" (ours / the lean relay's TTFT), the key figures.
    """
    by_key = {(r["mode"], r["arrival"], r["users"], r["repeat"]): r for r in rows}
    for row in rows:
        if row["mode"] == DIRECT:
            continue
        key = (row["arrival"], row["users"], row["repeat"])
        direct, lean = by_key.get((DIRECT, *key)), by_key.get((LEAN, *key))
        if direct is not None:
            row["baseline_ttft_ms"] = {k: direct["ttft_ms"][k] for k in PERCENTILES}
            row["added_b_ms"] = {
                k: rnd(row["ttft_ms"][k] - direct["ttft_ms"][k])
                if row["ttft_ms"][k] is not None and direct["ttft_ms"][k] is not None
                else None
                for k in PERCENTILES
            }
        if row["mode"] != LEAN and lean is not None:
            row["lean_ttft_ms"] = {k: lean["ttft_ms"][k] for k in PERCENTILES}
            row["lean_errors"] = lean["errors"]
            row["ratio_to_lean"] = {
                k: ratio(row["ttft_ms"][k], lean["ttft_ms"][k]) for k in PERCENTILES
            }


def judge(rows: list[dict], *, mode: str, tps: float, server_errors: int) -> dict:
    """PASS/FAIL of our runs at TARGET_USERS streams of TARGET_TPS tokens/s.

    Per run: zero errors, TTFT p99 / the lean relay's p99 at most the mode's
    limit, delivered tokens/s p50 within TARGET_TPS_TOLERANCE of fakeai's
    rate. "Zero errors" also covers ERROR lines in the server logs during the runs.
    """
    limit = TARGET_P99_RATIO[mode]
    target = {
        "users": TARGET_USERS,
        "tokens_per_s": TARGET_TPS,
        "p99_ratio_to_lean_at_most": limit,
        "tokens_per_s_tolerance": TARGET_TPS_TOLERANCE,
        "zero_errors": True,
        "server_log_error_lines": server_errors,
        "runs": [],
        "verdict": "NOT EVALUATED",
    }
    if tps != TARGET_TPS:
        target["note"] = f"fakeai streams {tps:g} tokens/s; the target is set at {TARGET_TPS:g}"
        return target
    for row in rows:
        if row["mode"] != mode or row["users"] != TARGET_USERS:
            continue
        p99_ratio = (row.get("ratio_to_lean") or {}).get("p99")
        delivered = row["tokens_per_s_delivered"]["p50"]
        checks = {
            "zero_errors": row["errors"] == 0,
            "p99_ratio": p99_ratio is not None and p99_ratio <= limit,
            "tokens_per_s": delivered is not None
            and abs(delivered - tps) <= TARGET_TPS_TOLERANCE * tps,
        }
        target["runs"].append(
            {
                "arrival": row["arrival"],
                "repeat": row["repeat"],
                "p99_ratio": p99_ratio,
                "tokens_per_s_p50": delivered,
                "errors": row["errors"],
                "checks": checks,
                "pass": all(checks.values()),
            }
        )
    if target["runs"]:
        passed = all(run["pass"] for run in target["runs"]) and server_errors == 0
        target["verdict"] = "PASS" if passed else "FAIL"
    return target


# --- output -------------------------------------------------------------------------
def print_tables(rows: list[dict], target: dict, params: Params) -> None:
    head = (
        f"{'mode':<12}{'N':>5}{'msgs':>6}{'err':>5} | {'TTFT p50':>9}{'p95':>8}{'p99':>8} | "
        f"{'add(b) p50':>11}{'p99':>8} | {'/lean p50':>10}{'p95':>7}{'p99':>7} | "
        f"{'tok/s p50':>10}{'agg tok/s':>10} | {'CPU%':>6}{'RSS MB':>8} | {'load CPU%':>9}"
    )
    print(
        f"\nTTFT in ms; fakeai: ttft {params.ttft_ms:g} ms, {params.tps:g} tok/s, "
        f"{params.tokens} tokens; {params.messages} message(s) per user; ours: {params.mode} "
        f"on {params.processes} daphne process(es)"
        + (", clients dealt round-robin" if params.processes > 1 else "")
    )
    if params.db_query or params.site_env:
        print(f"what-if: DATABASE_URL ?{params.db_query or '-'}; site env {params.site_env or '-'}")
    goal = (
        f"target at N={target['users']}: /lean p99 <= {target['p99_ratio_to_lean_at_most']:g}x, "
        f"err 0, tok/s p50 {target['tokens_per_s']:g} +/- "
        f"{100 * target['tokens_per_s_tolerance']:g} %"
    )
    for arrival in params.arrivals:
        print(f"\n{arrival} arrivals ({goal})")
        print(head)
        print("-" * len(head))
        for row in (r for r in rows if r["arrival"] == arrival):
            t, b, q = row["ttft_ms"], row.get("added_b_ms", {}), row.get("ratio_to_lean", {})
            print(
                f"{row['mode']:<12}{row['users']:>5}{row['messages']:>6}{row['errors']:>5} | "
                f"{fmt(t['p50']):>9}{fmt(t['p95']):>8}{fmt(t['p99']):>8} | "
                f"{fmt(b.get('p50')):>11}{fmt(b.get('p99')):>8} | "
                f"{fmt_ratio(q.get('p50')):>10}{fmt_ratio(q.get('p95')):>7}"
                f"{fmt_ratio(q.get('p99')):>7} | "
                f"{fmt(row['tokens_per_s_delivered']['p50']):>10}"
                f"{fmt(row['aggregate_tokens_per_s'], 0):>10} | "
                f"{fmt(row['server_cpu_percent'], 0):>6}{fmt(row['server_peak_rss_mb']):>8} | "
                f"{fmt(row['resources']['processes']['client']['cpu_percent'], 0):>9}"
            )
    if params.processes > 1:
        print("\nPer daphne process (CPU% / peak RSS MB):")
        for row in rows:
            if row["mode"] == params.mode:
                cells = "   ".join(
                    f"{p['name']} {fmt(p['cpu_percent'], 0)}% / {fmt(p['peak_rss_mb'])}"
                    for p in row["server_processes"]
                )
                print(f"  {row['arrival']:<7} N={row['users']:<4} r{row['repeat']}  {cells}")
    print(
        "\nOur TTFT breakdown, ms (p50 / p99): send->ack | client TTFT minus server's"
        " upstream TTFT | server's upstream TTFT minus fakeai's configured TTFT"
    )
    for row in rows:
        if row["mode"] != params.mode:
            continue
        bd = row["breakdown_ms"]
        parts = " | ".join(
            f"{fmt(bd[k]['p50'])} / {fmt(bd[k]['p99'])}"
            for k in ("send_to_ack", "outside_upstream", "upstream_extra")
        )
        res = row["resources"]
        print(
            f"  {row['arrival']:<7} N={row['users']:<4} r{row['repeat']}  {parts}   (fakeai CPU "
            f"{fmt(res['processes']['fakeai']['cpu_percent'], 0)}%, other processes "
            f"{fmt(res.get('other_cpu_percent'), 0)}%, run {row['wall_s']:.1f} s)"
            + (
                f" others: {', '.join(res['top_other_processes'])}"
                if res.get("top_other_processes")
                else ""
            )
        )
    print("\nTTFT by message number, ms (p50 / p99):")
    for row in rows:
        cells = "   ".join(
            f"#{m['index'] + 1} {fmt(m['ttft_ms']['p50'])} / {fmt(m['ttft_ms']['p99'])}"
            for m in row["by_message_index"]
        )
        print(
            f"  {row['mode']:<12}{row['arrival']:<7} N={row['users']:<4} r{row['repeat']}  {cells}"
        )
    for row in rows:
        if row["errors"]:
            print(
                f"  errors {row['mode']} {row['arrival']} N={row['users']}: {row['errors_by_kind']}"
            )
    for arrival in params.arrivals:
        repeats = [
            r
            for r in rows
            if r["mode"] == params.mode
            and r["arrival"] == arrival
            and r["users"] == max(params.users)
        ]
        if len(repeats) > 1:
            values = ", ".join(
                f"p50 {fmt(r['ttft_ms']['p50'])} / p99 {fmt(r['ttft_ms']['p99'])} "
                f"({fmt_ratio(r.get('ratio_to_lean', {}).get('p99'))} lean)"
                for r in repeats
            )
            print(f"\nNoise, {arrival} N={repeats[0]['users']} repeated: TTFT {values}")
    print_target(target, params)


def print_target(target: dict, params: Params) -> None:
    print(
        f"\nTarget at N={target['users']}, {target['tokens_per_s']:g} tok/s: our TTFT p99 <= "
        f"{target['p99_ratio_to_lean_at_most']:g}x the lean relay's ({params.mode}), zero errors, "
        f"tokens/s p50 within {100 * target['tokens_per_s_tolerance']:g} % of "
        f"{params.tps:g} -> {target['verdict']}"
    )
    if target.get("note"):
        print(f"  {target['note']}")
    for run in target["runs"]:
        failed = [name for name, ok in run["checks"].items() if not ok]
        print(
            f"  {run['arrival']} r{run['repeat']}: {'PASS' if run['pass'] else 'FAIL'} "
            f"(p99 {fmt_ratio(run['p99_ratio'])} lean, tokens/s p50 "
            f"{fmt(run['tokens_per_s_p50'])}, errors {run['errors']})"
            + (f" failed: {', '.join(failed)}" if failed else "")
        )
    if target["server_log_error_lines"]:
        print(
            f"  the server logs had {target['server_log_error_lines']} ERROR lines during the runs"
        )


# --- the whole benchmark ---------------------------------------------------------------
async def measure(
    params: Params,
    *,
    daphnes: list[Server],
    lean: Server,
    fakeai: Server,
    tokens: list[str],
) -> list[Run]:
    """Every (arrival, N) of the plan: the direct baseline, the lean relay, then ours."""
    fakeai_url = fakeai.url + "/v1"
    watched = {server.name: psutil.Process(server.pid) for server in (*daphnes, lean, fakeai)}
    watched["client"] = psutil.Process()
    daphne_names = [server.name for server in daphnes]
    connect_slots = asyncio.Semaphore(CONNECT_CONCURRENCY)

    def socket_users(servers: list[Server], *, with_tokens: bool, arrival: str) -> MakeUser:
        def make_user(i: int, results: list[MessageResult], ramp: Ramp) -> Coroutine:
            return ws_user(
                round_robin(i, servers).chat_socket_url,
                tokens[i] if with_tokens else None,
                results,
                ramp,
                connect_slots,
                start_offset_s=params.start_offset_s(i, arrival),
                timeout_s=params.message_timeout_s,
            )

        return make_user

    # Warm up every path (imports, first connections, client objects); not recorded.
    warm = openai.AsyncOpenAI(base_url=fakeai_url, api_key="bench", max_retries=0)
    await direct_message(warm, MessageResult(), 0, timeout_s=params.message_timeout_s)
    await warm.close()
    for index, server in enumerate([lean, *daphnes]):
        warm_ramp = Ramp(1)
        warm_ramp.start.set()
        await ws_user(
            server.chat_socket_url,
            None if server is lean else tokens[index % len(tokens)],
            [MessageResult()],
            warm_ramp,
            connect_slots,
            start_offset_s=0.0,
            timeout_s=params.message_timeout_s,
        )

    runs: list[Run] = []
    seen: Counter = Counter()
    for arrival, n in params.plan():
        seen[arrival, n] += 1
        repeat = seen[arrival, n]
        client = openai.AsyncOpenAI(base_url=fakeai_url, api_key="bench", max_retries=0)

        def direct_users(i, results, ramp, client=client, arrival=arrival) -> Coroutine:
            return direct_user(
                client,
                results,
                ramp,
                start_offset_s=params.start_offset_s(i, arrival),
                timeout_s=params.message_timeout_s,
            )

        contenders: list[tuple[str, MakeUser, list[str]]] = [
            (DIRECT, direct_users, []),
            (LEAN, socket_users([lean], with_tokens=False, arrival=arrival), [lean.name]),
            (params.mode, socket_users(daphnes, with_tokens=True, arrival=arrival), daphne_names),
        ]
        for mode, make_user, server_names in contenders:
            print(f"{arrival} N={n} r{repeat}: {mode} ...", file=sys.stderr, flush=True)
            runs.append(
                await run_load(
                    mode,
                    arrival,
                    n,
                    repeat,
                    params,
                    make_user=make_user,
                    watched=watched,
                    server_names=server_names,
                    fakeai_url=fakeai_url,
                    profile_pid=daphnes[0].pid if params.profile and mode == params.mode else None,
                )
            )
            await asyncio.sleep(PAUSE_BETWEEN_RUNS_S)
        await client.close()
    return runs


def run_benchmark(params: Params) -> dict:
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    code = code_version()
    with tempfile.TemporaryDirectory(prefix="chat_load-") as tmp_name:
        tmp = Path(tmp_name)
        with contextlib.ExitStack() as stack:
            fakeai, env = start_site(stack, params, log_dir=tmp)
            tokens = create_users(max(params.users), env=env)
            lean = start_lean_relay(stack, upstream_url=fakeai.url + "/v1", log_dir=tmp)
            daphnes = start_daphnes(stack, params.processes, env=env, log_dir=tmp)
            runs = asyncio.run(
                asyncio.wait_for(
                    measure(params, daphnes=daphnes, lean=lean, fakeai=fakeai, tokens=tokens),
                    params.max_seconds,
                )
            )
            # What the servers log from here on is their shutdown, not the load.
            log_ends = {s.name: s.log_path.stat().st_size for s in (*daphnes, lean)}
        server_log = server_log_report([*daphnes, lean], log_ends, keep_prefix=f"chat_load-{STAMP}")
    rows = []
    for run in runs:
        stats = summarize(run, params)
        row = {"mode": run.mode, "arrival": run.arrival, "users": run.users, "repeat": run.repeat}
        row.update(stats)
        if run.profile:
            row["profile"] = run.profile
        rows.append(row)
    add_comparisons(rows)
    parameters = dict(asdict(params))
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
        "target": judge(
            rows, mode=params.mode, tps=params.tps, server_errors=server_log["error_lines"]
        ),
        "runs": rows,
    }


def main(argv: list[str] | None = None) -> None:
    params = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the child processes are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if params.soak:
        run_soak(params, stamp=STAMP)
        return
    report = run_benchmark(params)
    print_tables(report["runs"], report["target"], params)
    print_log_problems(report["server_log_problems"])
    # Smoke, what-if and profiled runs never replace the latest standard result.
    special = params.quick or params.db_query or params.site_env or params.profile
    paths = write_json(report, name="chat_load", stamp=STAMP, latest=not special)
    print(f"\nwrote {', '.join(str(p.relative_to(ROOT)) for p in paths)}")


if __name__ == "__main__":
    main()
