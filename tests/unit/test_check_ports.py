"""`make run` with a busy port: one line naming it and the variables to change, exit 1."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.support import processes


def check_ports(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [processes.PYTHON, "manage.py", "check_ports", *arguments],
        cwd=processes.ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_busy_port_is_one_line_naming_it_and_the_variables():
    with socket.create_server(("127.0.0.1", 0)) as held:
        busy = held.getsockname()[1]
        free = processes.free_port()
        result = check_ports(f"PORT=127.0.0.1:{free}", f"FAKEAI_PORT=127.0.0.1:{busy}")

    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"Port {busy} on 127.0.0.1 is already in use (FAKEAI_PORT)" in lines[0]
    assert "make run PORT=<port> FAKEAI_PORT=<port>" in lines[0]


def test_free_ports_pass_silently():
    result = check_ports(f"PORT=127.0.0.1:{processes.free_port()}")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_make_run_checks_its_ports_before_starting_anything():
    recipe = (Path(processes.ROOT) / "Makefile").read_text().split("\nrun:", 1)[1]
    assert recipe.index("manage.py check_ports") < recipe.index("ensure_admin")
    assert "PORT=$(HOST):$(PORT)" in recipe and "FAKEAI_PORT=127.0.0.1:$(FAKEAI_PORT)" in recipe
