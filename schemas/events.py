"""Input events published by core banking and the CRM (docs/events.md, "Events").

These models are the wire contract: unknown fields are ignored so producers can
add fields without breaking us, while any missing or invalid required field is
a validation error that the stream turns into a dead letter.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from schemas.limits import MAX_AMOUNT_DIGITS, MAX_DECIMAL_PLACES, MAX_TEXT_LENGTH, MAX_YEAR, MIN_BIRTH_YEAR, MIN_YEAR
from schemas.values import (
    ClientEventKind,
    ComplaintSeverity,
    ContactPreference,
    CounterpartyBank,
    Direction,
    InteractionChannel,
    InteractionInitiator,
    InteractionKind,
    Segment,
    TransactionChannel,
    TransactionInitiator,
    TransactionKind,
)


def _require_rfc3339_text(value: Any) -> Any:
    # pydantic also accepts unix numbers for datetimes; the contract is text only.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 string with an offset")
    if len(value) > 40:
        raise ValueError("too long for an RFC 3339 timestamp")
    return value


def _check_year(value: datetime) -> datetime:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"year must be between {MIN_YEAR} and {MAX_YEAR}")
    return value


def _require_iso_date_text(value: Any) -> Any:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or len(value) != 10:
        raise ValueError("must be a date as YYYY-MM-DD")
    return value


def month_day(value: Any) -> str:
    """A birth date (`YYYY-MM-DD`, or `--MM-DD` without the year) as `MM-DD`: the year is checked, then dropped.

    The year is personal data the rules never need (docs/rules.md, "Birthday"),
    so it goes no further than this check. 29 February needs a leap year when a
    year is given, and is kept as `02-29`.
    """
    if not isinstance(value, str) or len(value) not in (7, 10):
        raise ValueError("must be a date as YYYY-MM-DD (or --MM-DD without the year)")
    if value.startswith("--"):
        year, rest = 2000, value[2:]  # a leap year: 02-29 is a valid birthday
    elif value[4:5] == "-" and value[:4].isdigit():
        year, rest = int(value[:4]), value[5:]
        if not MIN_BIRTH_YEAR <= year <= MAX_YEAR:
            raise ValueError(f"the year must be between {MIN_BIRTH_YEAR} and {MAX_YEAR}")
    else:
        raise ValueError("must be a date as YYYY-MM-DD (or --MM-DD without the year)")
    if len(rest) != 5 or rest[2] != "-" or not (rest[:2].isdigit() and rest[3:].isdigit()):
        raise ValueError("must be a date as YYYY-MM-DD (or --MM-DD without the year)")
    try:
        date(year, int(rest[:2]), int(rest[3:]))
    except ValueError:
        raise ValueError("not a calendar date") from None
    return rest


def _reject_bool_amount(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a decimal string or number")
    return value


Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_require_rfc3339_text),
    AfterValidator(_check_year),
]
"""An RFC 3339 time that carries an offset; naive times are rejected."""

EventId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
ClientId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_LENGTH)]
Money = Annotated[
    Decimal,
    BeforeValidator(_reject_bool_amount),
    Field(max_digits=MAX_AMOUNT_DIGITS, decimal_places=MAX_DECIMAL_PLACES, allow_inf_nan=False),
]
PositiveMoney = Annotated[Money, Field(gt=0)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
MonthDay = Annotated[str, BeforeValidator(month_day)]
"""A birthday as `MM-DD`, read from a birth date whose year is dropped."""


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: EventId
    client_id: ClientId
    occurred_at: Timestamp


class Counterparty(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    bank: CounterpartyBank
    name: ShortText | None = None


class TransactionEvent(_Event):
    account_id: ShortText
    amount: PositiveMoney
    currency: Currency
    direction: Direction
    kind: TransactionKind
    channel: TransactionChannel
    initiated_by: TransactionInitiator
    balance_after: Money | None = None
    counterparty: Counterparty | None = None


class InteractionEvent(_Event):
    kind: InteractionKind
    channel: InteractionChannel
    initiated_by: InteractionInitiator
    rm_id: ShortText | None = None
    severity: ComplaintSeverity | None = None
    satisfaction: Annotated[int, Field(ge=1, le=5, strict=True)] | None = None


class Product(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    product_id: ShortText
    maturity_date: Annotated[date, BeforeValidator(_require_iso_date_text)]
    amount: PositiveMoney | None = None
    currency: Currency | None = None


class ClientEvent(_Event):
    kind: ClientEventKind
    rm_id: ShortText | None = None
    segment: Segment | None = None
    product: Product | None = None
    birth_date: MonthDay | None = None
    """Given (a value or null) it sets or clears the birthday; left out it changes nothing."""
    contact_preference: ContactPreference | None = None
    """Given it sets the consent (null is `any`); left out it changes nothing."""

    @model_validator(mode="after")
    def _maturing_names_product(self) -> ClientEvent:
        if self.kind == "product_maturing" and self.product is None:
            raise ValueError("product is required when kind is product_maturing")
        return self


Event = TransactionEvent | InteractionEvent | ClientEvent
