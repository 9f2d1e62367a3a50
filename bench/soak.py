"""The memory line: one daphne's RSS over many replies (`python -m bench.chat_load --soak 10000`).

The claim it checks: "daphne's RSS is flat after 10,000 replies". One daphne
(in the mode chosen: embedded, or Redis + PostgreSQL) serves `--soak` replies
to `--soak-concurrency` users, each sending messages one after another (a new
conversation every MESSAGES_PER_CONVERSATION, as people do) until the total is
reached. Its RSS is sampled before the load and every SAMPLE_EVERY_REPLIES
finished replies; the growth is measured from the first 1,000 replies (when
caches, pools and the allocator have warmed up) to the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING

import psutil
from websockets.exceptions import InvalidHandshake

from bench.clients import CONNECT_CONCURRENCY, MessageResult, open_socket, ws_message
from bench.harness import (
    ROOT,
    Server,
    code_version,
    create_users,
    machine_info,
    print_log_problems,
    server_log_report,
    start_daphnes,
    start_site,
    write_json,
)
from bench.stats import fmt, pcts, rnd, slope_per_thousand

if TYPE_CHECKING:
    from bench.chat_load import Params

SAMPLE_EVERY_REPLIES = 1000
MESSAGES_PER_CONVERSATION = 10
# "Flat": RSS at the end at most this much above its value after the first 1,000 replies.
FLAT_GROWTH_PERCENT = 5.0


@dataclass
class SoakProgress:
    """Hands out replies until the total is reached; samples the server's memory as they finish."""

    total: int
    server: psutil.Process
    sample_every: int = SAMPLE_EVERY_REPLIES
    claimed: int = 0
    finished: int = 0
    statuses: Counter = field(default_factory=Counter)
    ttft_ms: list[float] = field(default_factory=list)
    tokens_per_s: list[float] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    started: float = field(default_factory=perf_counter)

    def claim(self) -> bool:
        """Whether the caller may send one more message."""
        if self.claimed >= self.total:
            return False
        self.claimed += 1
        return True

    def finish(self, result: MessageResult) -> None:
        self.finished += 1
        self.statuses[result.status] += 1
        if result.ok:
            self.ttft_ms.append(result.ttft_ms)
            if result.tokens_per_s is not None:
                self.tokens_per_s.append(result.tokens_per_s)
        if self.finished % self.sample_every == 0 or self.finished == self.total:
            self.sample()

    def sample(self) -> None:
        """The server's RSS and CPU time now (a /proc read: cheap enough for the loop)."""
        cpu = self.server.cpu_times()
        self.samples.append(
            {
                "replies": self.finished,
                "rss_mb": round(self.server.memory_info().rss / 2**20, 1),
                "cpu_s": round(cpu.user + cpu.system, 2),
                "elapsed_s": round(perf_counter() - self.started, 1),
            }
        )


def memory_line(samples: list[dict], *, warm_replies: int = SAMPLE_EVERY_REPLIES) -> dict:
    """Growth of RSS from the first sample at or after `warm_replies` to the last one."""
    warm = [s for s in samples if s["replies"] >= warm_replies]
    if len(warm) < 2:
        return {"from_replies": None, "growth_mb": None, "growth_percent": None, "flat": None}
    first, last = warm[0], warm[-1]
    growth = last["rss_mb"] - first["rss_mb"]
    slope = slope_per_thousand([(s["replies"], s["rss_mb"]) for s in warm])
    growth_percent = 100 * growth / first["rss_mb"]
    return {
        "from_replies": first["replies"],
        "to_replies": last["replies"],
        "from_rss_mb": first["rss_mb"],
        "to_rss_mb": last["rss_mb"],
        "growth_mb": round(growth, 1),
        "growth_percent": round(growth_percent, 1),
        "slope_mb_per_1000_replies": rnd(slope, 2),
        "flat_at_most_percent": FLAT_GROWTH_PERCENT,
        "flat": growth_percent <= FLAT_GROWTH_PERCENT,
    }


async def soak_user(
    url: str,
    token: str,
    progress: SoakProgress,
    connect_slots: asyncio.Semaphore,
    *,
    start_offset_s: float,
    timeout_s: float,
) -> None:
    """Send messages one after another while replies remain to be claimed."""
    try:
        async with connect_slots:
            ws = await open_socket(url, token)
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        progress.statuses[f"connect_failed:{type(exc).__name__}"] += 1
        return
    try:
        await asyncio.sleep(start_offset_s)
        conversation_id, in_conversation = None, 0
        while progress.claim():
            if in_conversation == MESSAGES_PER_CONVERSATION:
                conversation_id, in_conversation = None, 0
            result = MessageResult()
            conversation_id = await ws_message(
                ws, result, in_conversation, conversation_id, timeout_s
            )
            in_conversation += 1
            progress.finish(result)
            if result.status in ("timeout", "disconnect"):
                break
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(ws.close())


async def soak(params: Params, *, daphne: Server, tokens: list[str]) -> SoakProgress:
    # One warm-up reply, then the "before" sample.
    warm = await open_socket(daphne.chat_socket_url, tokens[0])
    await ws_message(warm, MessageResult(), 0, None, params.message_timeout_s)
    await warm.close()
    progress = SoakProgress(total=params.soak, server=psutil.Process(daphne.pid))
    progress.sample()
    connect_slots = asyncio.Semaphore(CONNECT_CONCURRENCY)
    users = [
        soak_user(
            daphne.chat_socket_url,
            token,
            progress,
            connect_slots,
            start_offset_s=params.start_offset_s(i, "steady"),
            timeout_s=params.message_timeout_s,
        )
        for i, token in enumerate(tokens)
    ]
    await asyncio.gather(*users)
    return progress


def run_soak(params: Params, *, stamp: str) -> dict:
    """Run the soak, print the memory line, write its JSON; returns the report."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    code = code_version()
    with tempfile.TemporaryDirectory(prefix="chat_soak-") as tmp_name:
        tmp = Path(tmp_name)
        with contextlib.ExitStack() as stack:
            fakeai, env = start_site(stack, params, log_dir=tmp)
            tokens = create_users(params.soak_concurrency, env=env)
            (daphne,) = start_daphnes(stack, 1, env=env, log_dir=tmp)
            print(
                f"soak: {params.soak} replies, {params.soak_concurrency} users ...",
                file=sys.stderr,
                flush=True,
            )
            progress = asyncio.run(
                asyncio.wait_for(soak(params, daphne=daphne, tokens=tokens), params.max_seconds)
            )
            log_ends = {daphne.name: daphne.log_path.stat().st_size}
        server_log = server_log_report([daphne], log_ends, keep_prefix=f"chat_load-soak-{stamp}")
    ok = progress.statuses.get("ok", 0)
    result = {
        "mode": params.mode,
        "replies_target": params.soak,
        "replies_finished": progress.finished,
        "ok": ok,
        "errors": sum(progress.statuses.values()) - ok,
        "errors_by_kind": {k: v for k, v in progress.statuses.items() if k != "ok"},
        "concurrency": params.soak_concurrency,
        "messages_per_conversation": MESSAGES_PER_CONVERSATION,
        "sample_every_replies": SAMPLE_EVERY_REPLIES,
        "samples": progress.samples,
        "memory_line": memory_line(progress.samples),
        "ttft_ms": pcts(progress.ttft_ms),
        "tokens_per_s_delivered": pcts(progress.tokens_per_s, qs=(5, 50)),
    }
    report = {
        "benchmark": "chat_load",
        "kind": "soak",
        "started_at": started_at,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "code": code,
        "parameters": {
            "soak": params.soak,
            "soak_concurrency": params.soak_concurrency,
            "ttft_ms": params.ttft_ms,
            "tps": params.tps,
            "tokens": params.tokens,
            "redis_postgres": params.redis_postgres,
            "db_query": params.db_query,
            "site_env": params.site_env,
        },
        "server_log_problems": server_log,
        "soak": result,
    }
    print_memory_line(result, params)
    print_log_problems(server_log)
    special = params.quick or params.db_query or params.site_env
    paths = write_json(report, name="chat_load-soak", stamp=stamp, latest=not special)
    print(f"\nwrote {', '.join(str(p.relative_to(ROOT)) for p in paths)}")
    return report


def print_memory_line(result: dict, params: Params) -> None:
    print(
        f"\nMemory line: {result['replies_finished']} of {result['replies_target']} replies "
        f"through one daphne ({result['mode']}), {result['concurrency']} concurrent users; "
        f"fakeai: ttft {params.ttft_ms:g} ms, {params.tps:g} tok/s, {params.tokens} tokens"
    )
    print(f"{'replies':>8}{'RSS MB':>9}{'elapsed s':>11}{'CPU s':>8}")
    for sample in result["samples"]:
        print(
            f"{sample['replies']:>8}{fmt(sample['rss_mb']):>9}"
            f"{fmt(sample['elapsed_s']):>11}{fmt(sample['cpu_s']):>8}"
        )
    line = result["memory_line"]
    if line["flat"] is None:
        print("too few samples after the first 1,000 replies to judge the growth")
    else:
        print(
            f"growth from {line['from_replies']} to {line['to_replies']} replies: "
            f"{line['growth_mb']:+.1f} MB ({line['growth_percent']:+.1f} %); "
            f"slope {fmt(line['slope_mb_per_1000_replies'], 2)} MB per 1,000 replies"
        )
        verdict = "HOLDS" if line["flat"] else "DOES NOT HOLD"
        print(
            f'claim "daphne\'s RSS is flat after {line["to_replies"]} replies" '
            f"(growth <= {FLAT_GROWTH_PERCENT:g} %): {verdict}"
        )
    ttft, tps = result["ttft_ms"], result["tokens_per_s_delivered"]
    errors = f"errors {result['errors']}" + (
        f" {result['errors_by_kind']}" if result["errors_by_kind"] else ""
    )
    print(
        f"{errors}; TTFT p50 {fmt(ttft['p50'])} p99 {fmt(ttft['p99'])} ms; "
        f"tokens/s p50 {fmt(tps['p50'])}"
    )
