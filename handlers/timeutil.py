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
    """RFC 3339 as datetime.isoformat() writes it, from integer arithmetic and a cache of day texts.

    Alerts and snapshots format several times per event; this is about twice as
    fast as building a datetime first.
    """
    day, rest = divmod(us, US_PER_DAY)
    day_text = _DAY_TEXTS.get(day)
    if day_text is None:
        if len(_DAY_TEXTS) >= _MAX_CACHED_DAYS:
            _DAY_TEXTS.clear()
        day_text = _DAY_TEXTS[day] = (_EPOCH + timedelta(days=day)).date().isoformat()
    seconds, fraction = divmod(rest, US_PER_SECOND)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    if fraction:
        return f"{day_text}T{hour:02d}:{minute:02d}:{second:02d}.{fraction:06d}+00:00"
    return f"{day_text}T{hour:02d}:{minute:02d}:{second:02d}+00:00"


_DAY_TEXTS: dict[int, str] = {}
_MAX_CACHED_DAYS = 100_000


def midnight_us(day: date) -> int:
    return to_us(datetime.combine(day, time(0), tzinfo=UTC))


def wall_us() -> int:
    return to_us(datetime.now(UTC))
