"""The processes a benchmark runs and watches: spawning, users, services, resources.

Nothing here measures latency; bench.chat_load and bench.soak do, with these.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import openai
import psutil

from bench.stats import rnd
from tests.support import processes

if TYPE_CHECKING:
    from bench.chat_load import Params

ROOT = processes.ROOT
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PYTHON = processes.PYTHON
SAMPLE_INTERVAL_S = 0.1


@contextlib.contextmanager
def spawn(args: list[str], *, env: dict, log_path: Path, ready_url: str) -> Iterator:
    """A child process logging to a file; stopped on exit. Yields the Popen."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [PYTHON, *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            processes.wait_for_http(ready_url, process=process, timeout_s=60)
            yield process
        finally:
            processes.stop(process)


@dataclass(frozen=True)
class Server:
    """A started server process: its name in the report, where it answers, its log."""

    name: str
    url: str
    pid: int
    log_path: Path

    @property
    def chat_socket_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/ws/chat/"


def start_server(
    stack: contextlib.ExitStack,
    name: str,
    args: list[str],
    *,
    port: int,
    env: dict,
    log_dir: Path,
    ready_path: str,
) -> Server:
    """Spawn a server on `port`, wait until `ready_path` answers; stopped when `stack` closes."""
    url = f"http://127.0.0.1:{port}"
    log_path = log_dir / f"{name}.log"
    process = stack.enter_context(
        spawn(args, env=env, log_path=log_path, ready_url=url + ready_path)
    )
    return Server(name=name, url=url, pid=process.pid, log_path=log_path)


def start_fakeai(
    stack: contextlib.ExitStack, *, log_dir: Path, ttft_ms: float, tps: float, tokens: int
) -> Server:
    port = processes.free_port()
    args = ["-m", "fakeai", "--port", str(port), "--ttft-ms", str(ttft_ms)]
    args += ["--tps", str(tps), "--tokens", str(tokens)]
    env = dict(os.environ)
    return start_server(
        stack, "fakeai", args, port=port, env=env, log_dir=log_dir, ready_path="/v1/models"
    )


def start_daphnes(
    stack: contextlib.ExitStack, count: int, *, env: dict, log_dir: Path
) -> list[Server]:
    """`count` daphne processes serving the site, named daphne-1..count."""
    servers = []
    for number in range(1, count + 1):
        port = processes.free_port()
        args = ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
        args.append("realtime_site.asgi:application")
        name = f"daphne-{number}"
        servers.append(
            start_server(
                stack, name, args, port=port, env=env, log_dir=log_dir, ready_path="/healthz"
            )
        )
    return servers


def start_lean_relay(stack: contextlib.ExitStack, *, upstream_url: str, log_dir: Path) -> Server:
    port = processes.free_port()
    args = ["-m", "bench.lean_relay", "--port", str(port), "--upstream", upstream_url]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return start_server(
        stack, "lean", args, port=port, env=env, log_dir=log_dir, ready_path="/healthz"
    )


def site_environment(
    *,
    fakeai_url: str,
    sqlite_path: Path,
    redis_postgres: bool,
    pg_url: str,
    pg_database: str,
    redis_url: str,
    db_query: str = "",
    extra: dict[str, str] | None = None,
) -> dict:
    """The site's environment; in Redis + PostgreSQL mode the database is recreated, Redis flushed.

    One SECRET_KEY for every process: the site requires it once REDIS_URL is set,
    and processes sharing a database must agree on it.
    """
    if redis_postgres:
        recreate_postgres(pg_url, pg_database)
        flush_redis(redis_url)
        database_url = f"{pg_url}/{pg_database}"
        mode_env = {"REDIS_URL": redis_url}
    else:
        database_url = f"sqlite:///{sqlite_path}"
        mode_env = {}
    if db_query:
        database_url += f"?{db_query}"
    return processes.site_env(
        fakeai_url=fakeai_url,
        database_url=database_url,
        extra={
            **mode_env,
            "SECRET_KEY": secrets.token_urlsafe(50),
            "CHAT_RATE_LIMIT_PER_MINUTE": "0",
            **(extra or {}),
        },
    )


def start_site(
    stack: contextlib.ExitStack, params: Params, *, log_dir: Path
) -> tuple[Server, dict]:
    """fakeai, and the site's environment with its database migrated, as `params` say."""
    fakeai = start_fakeai(
        stack, log_dir=log_dir, ttft_ms=params.ttft_ms, tps=params.tps, tokens=params.tokens
    )
    env = site_environment(
        fakeai_url=fakeai.url + "/v1",
        sqlite_path=log_dir / "bench.sqlite3",
        redis_postgres=params.redis_postgres,
        pg_url=params.pg_url,
        pg_database=params.pg_database,
        redis_url=params.redis_url,
        db_query=params.db_query,
        extra=params.site_env,
    )
    print("migrating and creating users ...", file=sys.stderr, flush=True)
    manage("migrate", "--noinput", env=env)
    return fakeai, env


def manage(*args: str, env: dict, timeout_s: float = 300) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed:\n{result.stderr[-3000:]}")
    return result.stdout


USERS_SCRIPT = """
import json
from django.contrib.auth import get_user_model
from django.db import transaction
from accounts.services import create_api_token
User = get_user_model()
raws = []
with transaction.atomic():
    for i in range({count}):
        user, _ = User.objects.get_or_create(username=f"bench-{{i}}")
        raws.append(create_api_token(user=user, name="bench")[1])
print(json.dumps(raws))
"""


def create_users(count: int, *, env: dict) -> list[str]:
    """Users bench-0..count-1 with one new API token each, in one process."""
    out = manage("shell", "-c", USERS_SCRIPT.format(count=count), env=env)
    return json.loads(out.strip().splitlines()[-1])


def recreate_postgres(pg_url: str, database: str) -> None:
    import psycopg

    with psycopg.connect(f"{pg_url}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def fakeai_stats(base_url: str) -> dict:
    root = base_url.removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/_fakeai/stats", timeout=5) as response:
        return json.loads(response.read())


def log_problems(path: Path, *, start: int = 0, end: int | None = None, limit: int = 10) -> dict:
    """ERROR lines and tracebacks in bytes [start, end) of a server log, counted by exception."""
    if not path.exists():
        return {"error_lines": 0, "exceptions": {}}
    with open(path, "rb") as log:
        log.seek(start)
        data = log.read() if end is None else log.read(max(0, end - start))
    lines = data.decode(errors="replace").splitlines()
    errors = sum(" ERROR " in line for line in lines)
    exceptions: Counter = Counter()
    in_traceback = False
    for line in lines:
        if line.startswith("Traceback"):
            in_traceback = True
        elif (
            in_traceback
            and line
            and not line[0].isspace()
            and not line.startswith(("During handling", "The above exception"))
        ):
            exceptions[line[:300]] += 1
            in_traceback = False
    return {"error_lines": errors, "exceptions": dict(exceptions.most_common(limit))}


def keep_log(path: Path, kept_as: Path, *, limit_bytes: int = 2 * 2**20) -> str:
    """Copy a log that had errors under bench/results (the temporary directory goes away)."""
    kept_as.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "rb") as source:
        kept_as.write_bytes(source.read(limit_bytes))
    return str(kept_as.relative_to(ROOT))


def server_log_report(servers: list[Server], ends: dict[str, int], *, keep_prefix: str) -> dict:
    """Problems in each server's log during the runs (up to `ends`) and at shutdown.

    A log with problems during the runs is kept as bench/results/<keep_prefix>-<name>.log.
    """
    report: dict = {"error_lines": 0, "servers": {}}
    for server in servers:
        end = ends.get(server.name)
        during = log_problems(server.log_path, end=end)
        shutdown = (
            log_problems(server.log_path, start=end)
            if end is not None
            else {"error_lines": 0, "exceptions": {}}
        )
        entry: dict = {"during_runs": during, "at_shutdown": shutdown}
        if during["error_lines"] or during["exceptions"]:
            kept_as = RESULTS_DIR / f"{keep_prefix}-{server.name}.log"
            entry["log"] = keep_log(server.log_path, kept_as)
        report["servers"][server.name] = entry
        report["error_lines"] += during["error_lines"]
    return report


def print_log_problems(problems: dict) -> None:
    """Problems during the runs in full; those at shutdown counted (they are not load)."""
    for name, entry in problems["servers"].items():
        if entry["during_runs"]["error_lines"] or entry["during_runs"]["exceptions"]:
            print(f"{name} log problems during the runs: {entry}")
        elif entry["at_shutdown"]["error_lines"]:
            print(f"{name} logged {entry['at_shutdown']['error_lines']} ERROR lines at shutdown")


# --- resource sampling ------------------------------------------------------------
class ResourceSampler:
    """Peak RSS (polled every SAMPLE_INTERVAL_S) and CPU% of processes, in a thread.

    `result` after the block: {"wall_s", "processes": {name: {"pid", "cpu_percent",
    "peak_rss_mb"}}, "machine_busy_percent", "other_cpu_percent", "top_other_processes"};
    CPU% is 100 for one core.
    """

    def __init__(self, watched: dict[str, psutil.Process]) -> None:
        self.watched = watched
        self.peak_rss: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="sampler", daemon=True)

    def __enter__(self) -> ResourceSampler:
        self._started = time.monotonic()
        self._cpu = {name: p.cpu_times() for name, p in self.watched.items()}
        self._system = psutil.cpu_times()
        self._others = self._all_cpu()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        wall = time.monotonic() - self._started
        per_process: dict[str, dict] = {}
        for name, proc in self.watched.items():
            try:
                now = proc.cpu_times()
            except psutil.Error:
                continue
            before = self._cpu[name]
            used = (now.user - before.user) + (now.system - before.system)
            per_process[name] = {
                "pid": proc.pid,
                "cpu_percent": round(100 * used / wall, 1) if wall else None,
                "peak_rss_mb": round(self.peak_rss.get(name, 0) / 2**20, 1),
            }
        self.result: dict = {"wall_s": round(wall, 3), "processes": per_process}
        system = psutil.cpu_times()
        total = sum(system) - sum(self._system)
        idle = (system.idle + getattr(system, "iowait", 0)) - (
            self._system.idle + getattr(self._system, "iowait", 0)
        )
        busy = 100 * (1 - idle / total) if total else None
        self.result["machine_busy_percent"] = rnd(busy, 1)
        if busy is not None:
            # CPU (100 = one core) used by everything else: Postgres, Redis, other work.
            ours = sum(p["cpu_percent"] or 0 for p in per_process.values())
            self.result["other_cpu_percent"] = max(
                0.0, round(busy * (os.cpu_count() or 1) - ours, 1)
            )
        self.result["top_other_processes"] = self._top_others(wall)

    def _all_cpu(self) -> dict[int, tuple[str, float]]:
        usage = {}
        for proc in psutil.process_iter(["name", "cpu_times"]):
            times = proc.info["cpu_times"]
            if times is not None:
                usage[proc.pid] = (proc.info["name"], times.user + times.system)
        return usage

    def _top_others(self, wall: float, count: int = 3) -> list[str]:
        """Busiest other processes that lived through the run (short-lived ones are missed)."""
        ours = {proc.pid for proc in self.watched.values()}
        now = self._all_cpu()
        deltas = [
            (used - self._others[pid][1], name)
            for pid, (name, used) in now.items()
            if pid in self._others and pid not in ours
        ]
        deltas.sort(reverse=True)
        return [f"{name} {100 * used / wall:.0f}%" for used, name in deltas[:count] if used > 0]

    def _poll(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self._sample()

    def _sample(self) -> None:
        for name, proc in self.watched.items():
            try:
                rss = proc.memory_info().rss
            except psutil.Error:
                continue
            self.peak_rss[name] = max(self.peak_rss.get(name, 0), rss)


@contextlib.contextmanager
def py_spy(pid: int, output: Path, *, duration_s: float, idle: bool) -> Iterator[None]:
    """Sample a process's Python stacks (collapsed format, per thread); on-CPU unless idle."""
    exe = Path(PYTHON).with_name("py-spy")
    if not exe.exists():
        print("  (py-spy not installed: no profile)", file=sys.stderr)
        yield
        return
    options = ["--rate", "100", "--nonblocking", "--threads", "--format", "raw"]
    if idle:
        options.append("--idle")
    spy = subprocess.Popen(
        [str(exe), "record", "--pid", str(pid), *options,
         "--duration", str(int(duration_s) + 1), "--output", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)  # attach before the load starts
    try:
        yield
    finally:
        if spy.poll() is None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                spy.wait(timeout=15)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()


def machine_info() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "memory_total_mb": round(psutil.virtual_memory().total / 2**20),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "openai": openai.__version__,
        "event_loop": "asyncio",
    }


def code_version() -> dict:
    """The commit measured, and files changed on top of it (the code moves while we measure)."""

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        return result.stdout.strip()

    changed = [line[3:] for line in git("status", "--porcelain").splitlines()]
    return {"commit": git("rev-parse", "HEAD"), "changed_files": changed}


def write_json(report: dict, *, name: str, stamp: str, latest: bool) -> list[Path]:
    """bench/results/<name>-<stamp>.json, and <name>-latest.json if `latest`."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    paths = [RESULTS_DIR / f"{name}-{stamp}.json"]
    if latest:
        paths.append(RESULTS_DIR / f"{name}-latest.json")
    text = json.dumps(report, indent=1)
    for path in paths:
        path.write_text(text)
    return paths
