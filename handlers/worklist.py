"""The order of an RM's work: which alerts are in the inbox.

The inbox holds the `open` and `acknowledged` alerts, highest priority first
(docs/rules.md, "Priority"), then newest; closed alerts are on the client's
timeline and in the rule report.
"""

from __future__ import annotations

INBOX_STATUSES: tuple[str, ...] = ("open", "acknowledged")
