"""The processes a benchmark runs and watches: spawning, users, services, resources.

Nothing here measures latency; bench.chat_load and bench.soak do, with these.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import openai
import psutil

from bench.stats import rnd
from tests.support import processes

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


def log_problems(path: Path, limit: int = 10) -> dict:
    """ERROR lines and tracebacks in a server log, counted by exception line."""
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
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


# --- resource sampling ------------------------------------------------------------
class ResourceSampler:
    """Peak RSS (polled every SAMPLE_INTERVAL_S) and CPU% of processes, in a thread."""

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
        self.result: dict = {"wall_s": round(wall, 3)}
        for name, proc in self.watched.items():
            try:
                now = proc.cpu_times()
            except psutil.Error:
                continue
            before = self._cpu[name]
            used = (now.user - before.user) + (now.system - before.system)
            self.result[f"{name}_cpu_percent"] = round(100 * used / wall, 1) if wall else None
            self.result[f"{name}_peak_rss_mb"] = round(self.peak_rss.get(name, 0) / 2**20, 1)
        system = psutil.cpu_times()
        total = sum(system) - sum(self._system)
        idle = (system.idle + getattr(system, "iowait", 0)) - (
            self._system.idle + getattr(self._system, "iowait", 0)
        )
        busy = 100 * (1 - idle / total) if total else None
        self.result["machine_busy_percent"] = rnd(busy, 1)
        if busy is not None:
            # CPU (100 = one core) used by everything else: Postgres, Redis, other work.
            ours = sum(v for k, v in self.result.items() if k.endswith("_cpu_percent"))
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
