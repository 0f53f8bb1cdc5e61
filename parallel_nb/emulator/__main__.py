"""Command line: ``python -m parallel_nb.emulator`` (or ``parallel-nb-emulator``).

Prints one line with the base URL once the server accepts requests, then serves until SIGINT
or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from .server import DEFAULT_TIME_SCALE, EmulatorConfig, start_emulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parallel-nb-emulator",
        description="Serve an offline emulator of Parallel's Task API on loopback.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    add("--port", type=int, default=8787, help="port to listen on; 0 picks a free one (8787)")
    add("--api-key", help="accept only this x-api-key (default: any non-empty key)")
    add(
        "--time-scale",
        type=float,
        default=DEFAULT_TIME_SCALE,
        help="multiplier on documented processor latencies; 0 = instant "
        f"(default {DEFAULT_TIME_SCALE})",
    )
    add("--seed", type=int, default=0, help="seed for simulated timings, answers, faults (0)")
    add("--faults", metavar="SPEC", help='fault injection, e.g. "429=0.2,500=0.1,drop=0.3"')
    add(
        "--fixtures",
        nargs="+",
        action="extend",
        metavar="PATH",
        help="extra fixture files or directories (*.json); later ones win ties",
    )
    add("--webhook-secret", help="secret for webhook signatures (default: a random whsec_ one)")
    add(
        "--rate-limit",
        type=int,
        default=2000,
        help="task-creating POSTs per minute per key; 0 = unlimited (2000)",
    )
    add(
        "--stream-max-seconds",
        type=float,
        default=570.0,
        help="close event streams after this many seconds; clients reconnect (570)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = EmulatorConfig(
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            time_scale=args.time_scale,
            seed=args.seed,
            faults=args.faults,
            fixtures=args.fixtures,
            webhook_secret=args.webhook_secret,
            rate_limit=args.rate_limit,
            stream_max_seconds=args.stream_max_seconds,
        )
    except ValueError as exc:
        parser.error(str(exc))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        handle = start_emulator(config)
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"parallel-nb-emulator: {exc}", file=sys.stderr)
        return 1
    print(f"Parallel Task API emulator ready at {handle.base_url}", flush=True)
    try:
        while not stop.wait(0.5):
            if not handle.running:
                print("parallel-nb-emulator: the server stopped unexpectedly", file=sys.stderr)
                return 1
    finally:
        handle.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
