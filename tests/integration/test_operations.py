"""What an operator of several daphne processes sees: the metrics of all from any one
(PROMETHEUS_MULTIPROC_DIR), and JSON log lines that carry request and run ids."""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import processes
from tests.support.chat_socket import recv_until, ws_connect
from tests.support.metrics import Samples

METRICS_TOKEN = "operations-metrics-token"
CANARY = "okapi-canary-9130"


@dataclass
class Site:
    url: str
    env: dict
    token: str
    log: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory, fakeai_url) -> Site:
    """One daphne logging JSON lines to a file, its metrics in a directory shared with others."""
    root = tmp_path_factory.mktemp("operations")
    (root / "metrics").mkdir()
    env = processes.site_env(
        fakeai_url=fakeai_url,
        database_url=f"sqlite:///{root / 'db.sqlite3'}",
        extra={
            "LOG_FORMAT": "json",
            "METRICS_TOKEN": METRICS_TOKEN,
            "PROMETHEUS_MULTIPROC_DIR": str(root / "metrics"),
        },
    )
    processes.manage("migrate", "--noinput", env=env)
    token = processes.create_user_with_token("operator", env=env)
    log = root / "first.log"
    with log.open("w") as stderr, processes.daphne(env=env, stderr=stderr) as url:
        yield Site(url=url, env=env, token=token, log=log)


def scrape(url: str) -> Samples:
    request = urllib.request.Request(
        url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return Samples(response.read().decode())


def chat_once(url: str, token: str) -> dict:
    """One reply over a socket of the process at `url`; its `complete` event."""
    with ws_connect(url, token) as ws:
        ws.send(json.dumps({"content": "count me"}))
        return recv_until(ws, "complete")[-1]


def log_lines(site: Site) -> list[dict]:
    return [json.loads(line) for line in site.log.read_text().splitlines()]


def wait_for_line(site: Site, matches, timeout_s: float = 10.0) -> dict:
    """The first log line that `matches`; the site writes it from another process."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [line for line in log_lines(site) if matches(line)]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError("no such log line")
        time.sleep(0.05)


# --- metrics of several processes -------------------------------------------------------
def test_any_process_answers_for_the_sockets_and_replies_of_all(site):
    before = scrape(site.url)
    with site_process(site) as other:
        complete = chat_once(other, site.token)
        with ws_connect(other, site.token):
            during = scrape(site.url)

    assert complete["type"] == "complete"
    assert during.minus(before, "realtime_open_sockets", route="chat") == 1
    assert during.minus(before, "realtime_runs_total", status="complete") == 1
    assert during.minus(before, "realtime_llm_tokens_total") == complete["total_tokens"]


def test_a_stopped_process_keeps_its_counts_but_not_its_open_sockets(site):
    before = scrape(site.url)
    with site_process(site) as other:
        chat_once(other, site.token)
        socket = ws_connect(other, site.token)  # still open when the process stops
    after = scrape(site.url)
    socket.close()

    assert after.minus(before, "realtime_runs_total", status="complete") == 1
    assert after.minus(before, "realtime_open_sockets", route="chat") == 0
    assert after.minus(before, "realtime_runs_in_flight") == 0


def test_a_new_process_reports_every_run_status_and_the_chat_route_as_zero(site):
    env = {k: v for k, v in site.env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    printed = processes.manage(
        "shell", "--no-imports", "-c",
        "import realtime_site.asgi; from realtime.metrics import exposition; "
        "print(exposition('')[0].decode())",
        env=env,
    )  # fmt: skip
    samples = Samples(printed)

    for status in ("complete", "cancelled", "error"):
        assert ("realtime_runs_total", frozenset({("status", status)})) in samples.values
        assert samples("realtime_runs_total", status=status) == 0
    assert samples("realtime_open_sockets", route="chat") == 0
    assert ("realtime_open_sockets", frozenset({("route", "chat")})) in samples.values


def site_process(site: Site):
    """Another daphne of the same site, sharing the metrics directory."""
    return processes.daphne(env=site.env)


# --- JSON logs --------------------------------------------------------------------------
def test_a_requests_json_line_carries_the_request_id_it_came_with(site):
    request = urllib.request.Request(
        site.url + "/metrics",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}", "X-Request-ID": "lb-req-77"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["X-Request-ID"] == "lb-req-77"

    line = wait_for_line(site, lambda line: line.get("request_id") == "lb-req-77")
    assert line["logger"] == "realtime.requests"
    assert line["level"] == "INFO"
    assert line["message"].startswith("request method=GET path=/metrics status=200")
    assert {"time", "pid"} <= line.keys()


@pytest.fixture(scope="module")
def sse_reply(site) -> dict:
    """One reply over SSE on the site, sent with request id sse-req-1; its ack event."""
    request = urllib.request.Request(
        site.url + "/api/chat/stream",
        data=json.dumps({"content": f"hello {CANARY}"}).encode(),
        headers={
            "Authorization": f"Bearer {site.token}",
            "Content-Type": "application/json",
            "X-Request-ID": "sse-req-1",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        events = [json.loads(line[6:]) for line in response if line.startswith(b"data: ")]
    assert events[-1]["type"] == "complete" and CANARY in events[-1]["content"]
    return events[0]


def test_a_replys_json_lines_carry_its_run_id(site, sse_reply):
    run_id = f"reply:{sse_reply['message_id']}"
    finished = wait_for_line(site, lambda line: line["message"].startswith("reply finished"))
    started = wait_for_line(site, lambda line: line["message"].startswith("reply started"))

    assert finished["run_id"] == run_id
    assert started["request_id"] == "sse-req-1"


def test_every_line_is_json_and_none_carries_message_content(site, sse_reply):
    wait_for_line(site, lambda line: line["message"].startswith("reply finished"))
    text = site.log.read_text()
    assert len(log_lines(site)) == len(text.splitlines())  # each line parsed as JSON
    assert CANARY not in text
