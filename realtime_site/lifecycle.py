"""Process shutdown: finish in-flight replies before the server exits.

daphne runs on Twisted, which replaces SIGTERM/SIGINT handlers installed by
application code; the supported hook is a reactor "before shutdown" trigger.
Replies still streaming are stopped and saved with their partial text as
`error/interrupted`, so nothing is left `streaming` after a clean stop.
"""

from __future__ import annotations

import asyncio
import logging
import sys

logger = logging.getLogger(__name__)


def install_shutdown_hook() -> bool:
    """Register with daphne's reactor if we run under daphne; True if installed."""
    if "twisted.internet.reactor" not in sys.modules:
        return False  # not daphne; importing the reactor here would install the wrong one
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    def before_shutdown():
        from chat.services import interrupt_replies

        logger.info("shutdown: interrupting in-flight replies")
        return Deferred.fromFuture(asyncio.ensure_future(interrupt_replies()))

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
    return True
