"""Money in the rules is whole cents of the base currency: exact, and cheap to add and compare."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

_CENT = Decimal("0.01")


def to_cents(amount: Decimal, rate: Decimal) -> int:
    """Convert an amount in some currency to base-currency cents (banker's rounding)."""
    return int((amount * rate).quantize(_CENT, rounding=ROUND_HALF_EVEN) * 100)


def cents_to_str(cents: int) -> str:
    """Plain decimal text for alert facts: 1200000.00."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def cents_to_display(cents: int) -> str:
    """Grouped text for human titles: 1,200,000.00."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole:,}.{frac:02d}"
