"""The terminal client against a live daphne + fakeai, as real subprocesses."""

from __future__ import annotations

import re
import subprocess

from tests.support.processes import PYTHON, ROOT


def run_client(live_site, token: str, stdin: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "chat.client", "--url", live_site.url, "--token", token],
        input=stdin, capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip


def test_client_streams_answers_and_prints_latency(live_site):
    token = live_site.create_user("cli-user")
    result = run_client(live_site, token, "hello from the terminal\nand again\n")

    assert result.returncode == 0, result.stderr
    assert "Echo: hello from the terminal (turn 1)" in result.stdout
    # The second line continues the same conversation.
    assert "Echo: and again (turn 2)" in result.stdout
    stats = re.findall(r"\[TTFT (\d+) ms .*?([\d.]+) tokens/s · (\d+) tokens\]", result.stdout)
    assert len(stats) == 2
    assert all(int(tokens) > 0 for _, _, tokens in stats)


def test_client_reports_a_refused_token(live_site):
    result = run_client(live_site, "rt_not-a-token", "hello\n")
    assert result.returncode == 2
    assert "refused the token (4401)" in result.stderr
