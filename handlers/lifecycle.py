"""The alert lifecycle: which action may move an alert from which status to which.

A policy of the product, not of the database: the store enforces it in one
transaction with the audit record, the API names it in its errors.
"""

from __future__ import annotations

from typing import Literal

Status = Literal["open", "acknowledged", "resolved", "dismissed"]
STATUSES: tuple[str, ...] = ("open", "acknowledged", "resolved", "dismissed")
Action = Literal["ack", "resolve", "dismiss"]
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "ack": (frozenset({"open"}), "acknowledged"),
    "resolve": (frozenset({"acknowledged"}), "resolved"),
    "dismiss": (frozenset({"open", "acknowledged"}), "dismissed"),
}
"""Action -> (statuses it may start from, status it leads to). resolved and dismissed are final."""
