"""Command line entry point: ``python -m fakeai --port 8001``.

Flags set the process-wide default Behaviour; requests may override them via
model-name suffix or ``X-Fakeai-*`` headers.
"""

import argparse
import asyncio
import logging
import signal

from aiohttp import web

from fakeai.behaviour import Behaviour, parse_fault
from fakeai.server import create_app

log = logging.getLogger("fakeai")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse CLI flags."""
    parser = argparse.ArgumentParser(prog="python -m fakeai", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--ttft-ms", type=float, default=150.0, help="delay before first token")
    parser.add_argument("--tps", type=float, default=40.0, help="tokens/second, 0 = unpaced")
    parser.add_argument("--tokens", type=int, default=40, help="reply length in tokens")
    parser.add_argument("--fault", type=parse_fault, default=None, help="default fault spec")
    parser.add_argument(
        "--pace", type=float, default=1.0, help="Realtime audio speed: 1 = real time, 0 = unpaced"
    )
    return parser.parse_args(argv)


async def serve(host: str, port: int, defaults: Behaviour) -> None:
    """Serve until SIGINT/SIGTERM, then shut down promptly."""
    runner = web.AppRunner(
        create_app(defaults),
        handler_cancellation=True,  # client disconnects cancel handlers
        access_log=None,  # per-request logging would dominate CPU under load
        shutdown_timeout=1.0,  # don't wait long for hanging streams
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, host, port, backlog=2048)
        await site.start()
        bound_port = runner.addresses[0][1] if runner.addresses else port
        log.info("fakeai listening on http://%s:%s", host, bound_port)
        await stop.wait()
        log.info("fakeai shutting down")
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """Run the server from the command line."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    defaults = Behaviour(
        ttft_ms=args.ttft_ms,
        tokens_per_second=args.tps,
        tokens=args.tokens,
        fault=args.fault,
        pace=args.pace,
    )
    asyncio.run(serve(args.host, args.port, defaults))


if __name__ == "__main__":
    main()
