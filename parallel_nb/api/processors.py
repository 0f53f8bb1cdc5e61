"""Parallel's processors: names, documented latency ranges, price per run and field guidance.

One table serves the emulator (simulated timings, 403 on unknown names), the client's dry run
(cost per run) and the local spec checks (the "too many fields" warning). Figures are the
documented ones (docs: choose-a-processor, pricing); the client never rejects a name that is not
listed here, because the service may add processors before this table learns of them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PROCESSORS", "Processor", "get_processor"]

_MIN = 60.0


@dataclass(frozen=True, slots=True)
class Processor:
    """One processor as documented: latency range in seconds, price and rough field capacity."""

    name: str
    min_seconds: float
    max_seconds: float
    usd_per_1000_runs: float
    max_fields: int

    @property
    def usd_per_run(self) -> float:
        return self.usd_per_1000_runs / 1000.0

    @property
    def tier(self) -> str:
        """The processor family without the ``-fast`` suffix (``core-fast`` -> ``core``)."""
        return self.name.removesuffix("-fast")

    @property
    def is_fast(self) -> bool:
        return self.name.endswith("-fast")

    @property
    def is_premium(self) -> bool:
        """``pro`` and above: events on by default and auto schema answers in JSON."""
        return self.tier not in _STANDARD_TIERS


_STANDARD_TIERS = frozenset({"lite", "base", "core", "core2x"})

# name: (standard min, standard max, fast min, fast max, $ per 1000 runs, ~max fields)
_TABLE: dict[str, tuple[float, float, float, float, float, int]] = {
    "lite": (10, 60, 10, 20, 5, 2),
    "base": (15, 100, 15, 50, 10, 5),
    "core": (_MIN, 5 * _MIN, 15, 100, 25, 10),
    "core2x": (_MIN, 10 * _MIN, 15, 3 * _MIN, 50, 10),
    "pro": (2 * _MIN, 10 * _MIN, 30, 5 * _MIN, 100, 20),
    "ultra": (5 * _MIN, 25 * _MIN, _MIN, 10 * _MIN, 300, 20),
    "ultra2x": (5 * _MIN, 50 * _MIN, _MIN, 20 * _MIN, 600, 25),
    "ultra4x": (5 * _MIN, 90 * _MIN, _MIN, 40 * _MIN, 1200, 25),
    "ultra8x": (5 * _MIN, 120 * _MIN, _MIN, 60 * _MIN, 2400, 25),
}


def _build() -> dict[str, Processor]:
    table: dict[str, Processor] = {}
    for name, (lo, hi, fast_lo, fast_hi, price, fields) in _TABLE.items():
        table[name] = Processor(name, lo, hi, price, fields)
        table[f"{name}-fast"] = Processor(f"{name}-fast", fast_lo, fast_hi, price, fields)
    return table


PROCESSORS: dict[str, Processor] = _build()


def get_processor(name: str) -> Processor | None:
    """The documented processor called ``name``, or None when the table does not know it."""
    return PROCESSORS.get(name)
