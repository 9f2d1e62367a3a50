"""Process lifecycle: work that must run before the server process exits.

daphne runs on Twisted, which replaces SIGTERM/SIGINT handlers installed by
application code; the supported hook is a reactor "before shutdown" trigger.
The core and apps register their shutdown work here (`on_shutdown`); the
trigger runs all of it, in registration order. The core registers
`realtime.runs.shutdown`, so runs still going are stopped and saved as
`interrupted` and nothing is left `streaming` after a clean stop.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

_shutdown_work: list[tuple[str, Callable[[], Awaitable[None]]]] = []


def on_shutdown(name: str, work: Callable[[], Awaitable[None]]) -> None:
    """Register `work` to run when the process stops (once per name)."""
    if all(existing != name for existing, _ in _shutdown_work):
        _shutdown_work.append((name, work))


async def run_shutdown_work() -> None:
    """Run every registered piece of shutdown work; one failing does not stop the rest."""
    for name, work in list(_shutdown_work):
        logger.info("shutdown: %s", name)
        try:
            await work()
        except Exception:
            logger.exception("shutdown work failed: %s", name)


def install_shutdown_hook() -> bool:
    """Register with daphne's reactor if we run under daphne; True if installed."""
    if "twisted.internet.reactor" not in sys.modules:
        return False  # not daphne; importing the reactor here would install the wrong one
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    def before_shutdown():
        return Deferred.fromFuture(asyncio.ensure_future(run_shutdown_work()))

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
    return True
