"""`make run` asks first whether its ports are free, so a busy one is one clear line.

    manage.py check_ports PORT=127.0.0.1:8000 FAKEAI_PORT=127.0.0.1:8001

Each argument names the Makefile variable that sets the port, so the message
can say which one to change. Exits 1 at the first busy port.
"""

from __future__ import annotations

import socket
import sys

from django.core.management.base import BaseCommand, CommandError


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (SO_REUSEADDR, as daphne binds)."""
    try:
        socket.create_server((host, port)).close()
    except OSError:
        return False
    return True


def busy_message(*, host: str, port: int, variable: str, variables: list[str]) -> str:
    others = " ".join(f"{name}=<port>" for name in variables)
    return (
        f"Port {port} on {host} is already in use ({variable}): stop the program using it, "
        f"or pick free ports, e.g. make run {others}"
    )


class Command(BaseCommand):
    help = "Exit 1 with one line naming the first busy port (of NAME=HOST:PORT arguments)."
    requires_system_checks: list = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("ports", nargs="+", metavar="NAME=HOST:PORT")

    def handle(self, *args, ports: list[str], **options) -> None:
        named = []
        for argument in ports:
            name, _, address = argument.partition("=")
            host, _, port = address.rpartition(":")
            if not name or not host or not port.isdigit():
                raise CommandError(f"expected NAME=HOST:PORT, not {argument!r}")
            named.append((name, host.strip("[]"), int(port)))
        for name, host, port in named:
            if not port_is_free(host, port):
                message = busy_message(
                    host=host, port=port, variable=name, variables=[n for n, _, _ in named]
                )
                sys.stderr.write(message + "\n")
                sys.exit(1)
