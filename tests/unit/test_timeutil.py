"""Integer microseconds and datetimes convert both ways without loss."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from handlers.timeutil import from_us, iso, to_us

instants = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30, 23, 59, 59, 999_999), timezones=st.just(UTC)
)


@given(instants, st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_any_instant_survives_the_round_trip_in_any_offset(instant: datetime, offset_minutes: int) -> None:
    local = instant.astimezone(timezone(timedelta(minutes=offset_minutes)))
    us = to_us(local)
    assert from_us(us) == instant and from_us(us).tzinfo == UTC
    assert iso(us) == instant.isoformat()


def test_known_instants() -> None:
    assert iso(0) == "1970-01-01T00:00:00+00:00"
    assert iso(1_796_027_254_657_270) == "2026-11-30T08:27:34.657270+00:00"
    assert from_us(1) - from_us(0) == timedelta(microseconds=1)
    assert iso(-1) == "1969-12-31T23:59:59.999999+00:00"
    assert iso(86_400_000_000 - 1_000_000) == "1970-01-01T23:59:59+00:00"
