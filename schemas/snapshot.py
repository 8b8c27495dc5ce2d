"""The client snapshot: the picture of a client the worker publishes and the sink stores (no account numbers)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.values import ContactPreference, Segment, Tier


class ClientSnapshot(BaseModel):
    """A client's picture as published by the worker (`ClientState.snapshot()`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    client_id: str = Field(min_length=1, max_length=64)
    tier: Tier | None = None
    aum: Decimal = Field(allow_inf_nan=False, max_digits=30)
    rm_id: str | None = Field(None, max_length=64)
    segment: Segment | None = None
    last_activity: AwareDatetime | None = None
    last_rm_contact: AwareDatetime | None = None
    dormant: bool = False
    closed: bool = False
    contact_preference: ContactPreference = "any"
    birthday: str | None = Field(None, pattern=r"^\d{2}-\d{2}$")
    """`MM-DD` (the year is never kept)."""
    as_of: AwareDatetime | None = None


SNAPSHOT_FIELDS: tuple[str, ...] = tuple(ClientSnapshot.model_fields)
"""The snapshot's fields in order: the worker publishes them, the store's columns are named after them."""
