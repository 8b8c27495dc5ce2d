"""Times inside the rules are integer microseconds since the epoch (UTC): exact and compact."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

US_PER_SECOND = 1_000_000
US_PER_HOUR = 3600 * US_PER_SECOND
US_PER_DAY = 24 * US_PER_HOUR
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def to_us(value: datetime) -> int:
    return (value - _EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)  # one C-level addition: alerts format many times


def iso(us: int) -> str:
    return from_us(us).isoformat()


def midnight_us(day: date) -> int:
    return to_us(datetime.combine(day, time(0), tzinfo=UTC))


def wall_us() -> int:
    return to_us(datetime.now(UTC))
