"""What the sink publishes on rm.notifications.v1 when an alert's SLA passes while it is still open.

The one definition of the escalation push (docs/api.md, "SLAs and escalation"):
keyed by the manager it is for (`unassigned` when no manager is known for the
alert's RM, or the alert has none), one push per manager. `push_id` is the same
whenever the same escalation is sent again (a sink that died between sending
and recording it), so a consumer drops repeats by it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_serializer

UNASSIGNED_KEY = "unassigned"


class EscalationPush(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: Literal["escalation"] = "escalation"
    push_id: str
    manager: str | None
    """The manager's name (org file or token file), or null: then the key is `unassigned`."""
    rm_id: str | None
    alert_id: str
    type: str
    severity: str
    priority: int
    client_id: str
    title: str
    occurred_at: datetime
    due_by: datetime
    escalated_at: datetime

    @field_serializer("occurred_at", "due_by", "escalated_at")
    def _rfc3339(self, value: datetime) -> str:
        return value.isoformat()

    @property
    def key(self) -> str:
        return self.manager if self.manager is not None else UNASSIGNED_KEY


def push_id(alert_id: str, manager: str | None) -> str:
    return f"escalation:{alert_id}:{manager if manager is not None else UNASSIGNED_KEY}"
