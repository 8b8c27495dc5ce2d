"""Budgets of failed authentications, per client address and for everyone together.

Every failed authentication spends one unit of its address's budget and one of
the global budget; both refill at a steady rate. While a budget is empty, new
attempts are refused before any credential is checked, which bounds what
guessing costs and how fast it can go. Requests refused this way spend nothing,
so one noisy address cannot empty the global budget for everyone else.
Clock injected; no I/O.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass(frozen=True, slots=True)
class Refusal:
    limit: str
    """`address` or `global`."""
    retry_after: float
    """Seconds until one attempt is allowed again."""


class FailureBudget:
    """Token buckets of failed attempts: `check` before an attempt, `spend` after it failed."""

    def __init__(
        self,
        *,
        per_address_burst: int,
        per_address_per_second: float,
        global_burst: int,
        global_per_second: float,
        max_addresses: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_address_burst < 1 or global_burst < 1 or per_address_per_second <= 0 or global_per_second <= 0:
            raise ValueError("budgets need a burst of at least 1 and a positive rate")
        self._burst, self._rate = float(per_address_burst), per_address_per_second
        self._global_burst, self._global_rate = float(global_burst), global_per_second
        self._max_addresses = max_addresses
        self._clock = clock
        self._global = _Bucket(self._global_burst, clock())
        self._addresses: OrderedDict[str, _Bucket] = OrderedDict()

    @staticmethod
    def _refill(bucket: _Bucket, burst: float, rate: float, now: float) -> None:
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now

    def check(self, address: str) -> Refusal | None:
        """None when an attempt from `address` may go ahead, else which budget is empty and for how long."""
        now = self._clock()
        bucket = self._addresses.get(address)
        if bucket is not None:
            self._refill(bucket, self._burst, self._rate, now)
            if bucket.tokens < 1:
                return Refusal("address", (1 - bucket.tokens) / self._rate)
        self._refill(self._global, self._global_burst, self._global_rate, now)
        if self._global.tokens < 1:
            return Refusal("global", (1 - self._global.tokens) / self._global_rate)
        return None

    def spend(self, address: str) -> None:
        """One failed attempt from `address`."""
        now = self._clock()
        bucket = self._addresses.get(address)
        if bucket is None:
            bucket = self._addresses[address] = _Bucket(self._burst, now)
            while len(self._addresses) > self._max_addresses:
                self._addresses.popitem(last=False)
        else:
            self._addresses.move_to_end(address)
        self._refill(bucket, self._burst, self._rate, now)
        bucket.tokens -= 1
        self._refill(self._global, self._global_burst, self._global_rate, now)
        self._global.tokens -= 1
