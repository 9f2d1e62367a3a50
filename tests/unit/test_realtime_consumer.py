"""The base consumer's own edges, without a server."""

from __future__ import annotations

import pytest
from autobahn.exception import Disconnected

from realtime.consumers import RealtimeConsumer


@pytest.mark.parametrize(
    "gone",
    [
        Disconnected("Attempt to send on a closed protocol"),  # daphne
        ConnectionResetError("peer closed"),  # the ASGI spec's OSError
    ],
)
async def test_a_send_that_races_the_peers_close_is_dropped_and_later_ones_skipped(gone):
    sent = []

    async def server_send(message: dict) -> None:
        sent.append(message)
        raise gone

    consumer = RealtimeConsumer()
    consumer.base_send = server_send
    consumer.closing = False

    await consumer.send_event({"type": "token"})
    await consumer.send_event({"type": "token"})

    assert consumer.closing is True
    assert len(sent) == 1
