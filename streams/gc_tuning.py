"""Garbage-collector settings for processes that hold many clients' states.

A worker or a backtest keeps tens of thousands of decoded client states alive
and allocates several objects per event. With CPython's default thresholds the
cyclic collector runs every 700 net allocations and keeps re-scanning the
young survivors: about a fifth of a backtest's time over 100,000 clients
(29,000 -> 37,500 events/s with the collector off). The rules make no
reference cycles on the hot path (reference counting frees their garbage), so
collecting less often costs little memory.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 20)


def tune_gc() -> None:
    """Collect young objects every 50,000 allocations instead of 700 (idempotent)."""
    gc.set_threshold(*THRESHOLDS)
