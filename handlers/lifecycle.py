"""The alert lifecycle: which action may move an alert from which status to which, and what closing it records.

A policy of the product, not of the database: the store enforces it in one
transaction with the audit record, the API and the workbench name it in their
errors (docs/api.md, "Lifecycle").

Closing an alert says what came of it. `resolve` needs an outcome, `dismiss`
a reason (and a note for `false_positive`, so the analyst tuning the rule can
read why). An alert is *useful* when it was resolved with an outcome other
than `no_action_needed`: the rule report and the labels exported for what-if
runs count those.
"""

from __future__ import annotations

from typing import Literal

Status = Literal["open", "acknowledged", "resolved", "dismissed"]
STATUSES: tuple[str, ...] = ("open", "acknowledged", "resolved", "dismissed")
FINAL: frozenset[str] = frozenset({"resolved", "dismissed"})
Action = Literal["ack", "resolve", "dismiss"]
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "ack": (frozenset({"open"}), "acknowledged"),
    "resolve": (frozenset({"acknowledged"}), "resolved"),
    "dismiss": (frozenset({"open", "acknowledged"}), "dismissed"),
}
"""Action -> (statuses it may start from, status it leads to). resolved and dismissed are final."""

ASSIGNABLE: frozenset[str] = frozenset({"open", "acknowledged"})
"""`assign` gives an alert (to) an RM without changing its status; a closed alert keeps its RM."""

RESOLVE_OUTCOMES: tuple[str, ...] = ("contacted", "retained", "sold", "no_action_needed")
DISMISS_REASONS: tuple[str, ...] = ("false_positive", "not_relevant", "duplicate", "unreachable")
NOTE_REQUIRED: frozenset[str] = frozenset({"false_positive"})
"""Reasons that need a note saying why."""
NOT_USEFUL_OUTCOMES: frozenset[str] = frozenset({"no_action_needed"})

AUDIT_ACTIONS: tuple[str, ...] = ("created", "ack", "resolve", "dismiss", "assign", "escalated")
"""What an audit record says happened (`escalated` is the system's, when an alert's SLA passed while open)."""


class ClosingError(ValueError):
    """The outcome or reason given does not close an alert this way; the message says what would."""


def check_closing(action: str, outcome: str | None, note: str | None) -> str | None:
    """The outcome to record for `action` (None for ack), or ClosingError naming what is missing."""
    if action == "resolve":
        if outcome not in RESOLVE_OUTCOMES:
            raise ClosingError(f"outcome: resolve needs one of {', '.join(RESOLVE_OUTCOMES)}")
        return outcome
    if action == "dismiss":
        if outcome not in DISMISS_REASONS:
            raise ClosingError(f"reason: dismiss needs one of {', '.join(DISMISS_REASONS)}")
        if outcome in NOTE_REQUIRED and not note:
            raise ClosingError(f"note: required when dismissing as {outcome} (say why, for whoever tunes the rule)")
        return outcome
    if outcome is not None:
        raise ClosingError(f"{action} takes no outcome")
    return None


def is_useful(status: str, outcome: str | None) -> bool:
    """Resolved with an outcome that means the alert led to something."""
    return status == "resolved" and outcome is not None and outcome not in NOT_USEFUL_OUTCOMES
