"""``python -m MetaPuppet.testing.ilink``: the simulator as a process, for tests in other languages.

Prints one JSON line (the URLs and the control token) on stdout, then serves until SIGTERM or
SIGINT. The clock is wall time plus an offset that ``POST /_sim/clock/advance`` grows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys

from ._clock import OffsetClock
from ._simulator import ILinkSimulator

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m MetaPuppet.testing.ilink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=0, help="API + CDN + control port (default: a free one)"
    )
    parser.add_argument(
        "--redirect-port", type=int, default=0, help="the QR redirect host's port (default: free)"
    )
    parser.add_argument(
        "--updates-hold", type=float, default=2.0, help="getupdates long-poll hold, s"
    )
    parser.add_argument(
        "--qr-hold", type=float, default=1.0, help="get_qrcode_status long-poll hold, s"
    )
    parser.add_argument("--small-ids", action="store_true", help="message_ids below 2**53")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    sim = ILinkSimulator(
        host=args.host,
        port=args.port,
        redirect_port=args.redirect_port,
        clock=OffsetClock(),
        updates_hold_s=args.updates_hold,
        qr_hold_s=args.qr_hold,
        big_message_ids=not args.small_ids,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with sim:
        line = {
            "base_url": sim.base_url,
            "cdn_base_url": sim.cdn_base_url,
            "control_url": sim.control_url,
            "control_token": sim.control_token,
            "redirect_base_url": sim.redirect_base_url,
            "redirect_host": sim.redirect_host,
            "pid": os.getpid(),
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
