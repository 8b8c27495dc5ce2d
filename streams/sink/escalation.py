"""Escalation: open alerts past their due_by go to the RM's manager, once, whatever sinks run and restart.

Every CLIENTPULSE_ESCALATION_SECONDS each sink sweeps the store (wall clock):
1. one UPDATE marks every open alert past due_by that is not escalated yet,
   with its audit record `escalated` by `system` (store.escalate_due: rows
   another sink holds are skipped, and a row is marked once);
2. the escalations whose push is not out yet are sent to rm.notifications.v1,
   one push per manager of the alert's RM (schemas/notifications.py), and
   recorded as sent in the same transaction that read them;
3. the count of overdue alerts by type is published as a gauge.
The managers of an RM are those whose team lists it: the token file's manager
entries and the org file, as they are at the sweep. Escalation is the store's
wall-clock duty; the notifier's replayable decisions do not include it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from handlers.access import Principal
from schemas.notifications import EscalationPush, push_id
from streams import metrics
from streams.settings import Settings
from streams.sink.store import AlertStore

log = logging.getLogger("clientpulse.sink.escalation")

SWEEP_BATCH = 10_000
SEND_BATCH = 500


def managers_by_rm(principals: Iterable[Principal], teams: dict[str, frozenset[str]]) -> dict[str, list[str]]:
    """RM id -> names of the managers whose team holds it (token entries' teams, then the org file's)."""
    out: dict[str, set[str]] = {}
    for p in principals:
        if p.role == "manager":
            for rm in p.team or teams.get(p.name, frozenset()):
                out.setdefault(rm, set()).add(p.name)
    for manager, rms in teams.items():
        for rm in rms:
            out.setdefault(rm, set()).add(manager)
    return {rm: sorted(names) for rm, names in out.items()}


def pushes_for(alert: dict[str, Any], managers: dict[str, list[str]]) -> list[EscalationPush]:
    rm = alert["rm_id"]
    recipients: list[str | None] = list(managers.get(rm, [])) if rm is not None else []
    if not recipients:
        recipients = [None]
    return [
        EscalationPush(
            push_id=push_id(alert["alert_id"], manager),
            manager=manager,
            rm_id=rm,
            alert_id=alert["alert_id"],
            type=alert["type"],
            severity=alert["severity"],
            priority=alert["priority"],
            client_id=alert["client_id"],
            title=alert["title"],
            occurred_at=datetime.fromisoformat(alert["occurred_at"]),
            due_by=datetime.fromisoformat(alert["due_by"]),
            escalated_at=datetime.fromisoformat(alert["escalated_at"]),
        )
        for manager in recipients
    ]


class Escalator:
    def __init__(
        self,
        settings: Settings,
        store: AlertStore,
        managers: Callable[[], dict[str, list[str]]],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.store = store
        self.managers = managers
        self.clock = clock
        self.escalated = 0
        self.pushed = 0

    async def sweep(self, producer: AIOKafkaProducer) -> tuple[int, int]:
        """One sweep: (alerts escalated, pushes sent)."""
        started = time.perf_counter()
        now = self.clock()
        escalated = 0
        while True:
            n = await self.store.escalate_due(now, limit=SWEEP_BATCH)
            escalated += n
            if n < SWEEP_BATCH:
                break
        managers = self.managers()
        pushed = 0

        async def send(alerts: list[dict[str, Any]]) -> None:
            nonlocal pushed
            futures = []
            for alert in alerts:
                metrics.ALERTS_ESCALATED.labels(type=alert["type"]).inc()
                for push in pushes_for(alert, managers):
                    value = push.model_dump_json().encode()
                    futures.append(await producer.send(self.settings.notifications_topic, value, key=push.key.encode()))
            await asyncio.gather(*futures)
            pushed += len(futures)

        while await self.store.send_escalations(send, limit=SEND_BATCH) == SEND_BATCH:
            pass
        overdue = await self.store.overdue_by_type(now)
        metrics.ALERTS_OVERDUE.clear()
        for alert_type, count in overdue.items():
            metrics.ALERTS_OVERDUE.labels(type=alert_type).set(count)
        metrics.ESCALATION_SWEEP_SECONDS.observe(time.perf_counter() - started)
        self.escalated += escalated
        self.pushed += pushed
        if escalated or pushed:
            log.info("escalated %d overdue alert(s); %d push(es) to managers", escalated, pushed)
        return escalated, pushed

    async def run(self, producer: AIOKafkaProducer, stopping: asyncio.Event) -> None:
        """Sweep every CLIENTPULSE_ESCALATION_SECONDS until `stopping`; a failed sweep is retried at the next."""
        while not stopping.is_set():
            try:
                await self.sweep(producer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database or the broker: the next sweep picks up where this one stopped
                metrics.ESCALATION_FAILURES.inc()
                log.warning(
                    "escalation sweep failed (%s: %s); retrying in %.0fs",
                    type(exc).__name__,
                    exc,
                    self.settings.escalation_seconds,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.settings.escalation_seconds)
