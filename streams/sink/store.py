"""The alert store in PostgreSQL: idempotent alert inserts, client snapshots, the lifecycle, the audit trail,
and the snoozes people gave (their audit, and the outbox of their control events).

Every statement is parameterised; the visibility of an alert (the caller's
`Scope`) is part of each query, so an alert outside it is simply not found.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from typing import Any, Literal

import asyncpg  # type: ignore[import-untyped]
import orjson

from handlers.access import Scope
from handlers.lifecycle import ASSIGNABLE, TRANSITIONS
from handlers.ruleset import Ruleset
from handlers.sla import due_by
from handlers.worklist import INBOX_STATUSES
from schemas.alerts import Alert
from schemas.controls import ControlEvent
from schemas.snapshot import SNAPSHOT_FIELDS, ClientSnapshot

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "clientpulse"
ESCALATION_ACTOR = "system"
MIGRATION_LOCK = 0x636C_7075_6C73_6501
"""Advisory lock key: one process migrates at a time."""
FEED_LOCK = 0x636C_7075_6C73_6502
"""Advisory transaction lock taken by every alert insert: store sequences become visible in order."""
FEED_CHANNEL = "clientpulse_alerts"
"""NOTIFY channel: a batch of new alerts was stored (the payload is the highest sequence)."""
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class StoreError(Exception):
    pass


class StoreUnavailable(StoreError):
    """Not connected (yet): the database was unreachable at start."""


class NotFound(StoreError):
    pass


class InvalidTransition(StoreError):
    def __init__(self, action: str, status: str) -> None:
        if action == "assign":
            self.action, self.status, self.target = action, status, status
            super().__init__(f"cannot assign an alert that is {status}: only open or acknowledged alerts are assigned")
            return
        allowed, target = TRANSITIONS[action]
        self.action, self.status, self.target = action, status, target
        super().__init__(
            f"cannot {action} an alert that is {status}: {action} goes to {target} "
            f"and is allowed only from {' or '.join(sorted(allowed))}"
        )


class OutsideScope(StoreError):
    """An assignment to an RM the caller may not give work to."""


class MigrationError(StoreError):
    pass


@dataclass(frozen=True, slots=True)
class AlertFilter:
    rm_id: str | None = None
    unassigned: bool = False
    """Only alerts with no RM (`rm_id=unassigned` in the API)."""
    statuses: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    since: datetime | None = None
    """occurred_at >= since."""
    client_id: str | None = None
    overdue_at: datetime | None = None
    """Only alerts still open with due_by before this time."""


@dataclass(frozen=True, slots=True)
class AlertPage:
    alerts: list[dict[str, Any]]
    next_after: Position | None
    """The position to continue after, or None on the last page."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """The versioned SQL files shipped in streams/sink/migrations, in order."""
    found: list[Migration] = []
    for entry in resources.files("streams.sink").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a version: {versions}")
    return found


def aware(value: datetime) -> datetime:
    """A stored time with its offset. asyncpg turns PostgreSQL's +/-infinity, which is what
    9999-12-31T23:59:59.999999Z and 0001-01-01T00:00:00Z become, into naive datetime.max/min."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    return aware(value).isoformat() if value is not None else None


Position = tuple[datetime, str] | tuple[int, datetime, str]
"""Where a page ended: (occurred_at, alert_id) of its last alert, with its priority first when sorted by priority."""

Sort = Literal["newest", "priority"]
SORTS: tuple[Sort, ...] = ("newest", "priority")
_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "newest": (("occurred_at", "timestamptz"), ("alert_id", "text")),
    "priority": (("priority", "smallint"), ("occurred_at", "timestamptz"), ("alert_id", "text")),
}
"""The sort keys of each order (all descending) with their SQL types."""


_ALERT_COLUMNS = (
    "a.alert_id, a.type, a.severity, a.priority, a.client_id, a.rm_id, a.tier, a.occurred_at, a.detected_at, "
    "a.title, a.titles::text AS titles, a.facts::text AS facts, a.rule_version, a.source_event_ids, a.status, "
    "a.stored_at, a.updated_at, a.seq, a.due_by, a.outcome, a.acknowledged_at, a.closed_at, a.escalated_at"
)
InboxPosition = tuple[int, datetime, str]
"""Where an inbox page ended: (priority, occurred_at, alert_id) of its last alert."""


def _alert_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "alert_id": row["alert_id"],
        "type": row["type"],
        "severity": row["severity"],
        "priority": row["priority"],
        "client_id": row["client_id"],
        "rm_id": row["rm_id"],
        "tier": row["tier"],
        "occurred_at": _iso(row["occurred_at"]),
        "detected_at": _iso(row["detected_at"]),
        "title": row["title"],
        # Alerts of workers that wrote no titles have their English title only.
        "titles": orjson.loads(row["titles"]) if row["titles"] is not None else {"en": row["title"]},
        "facts": orjson.loads(row["facts"]),
        "rule_version": row["rule_version"],
        "source_event_ids": list(row["source_event_ids"]),
        "status": row["status"],
        "stored_at": _iso(row["stored_at"]),
        "updated_at": _iso(row["updated_at"]),
        "seq": row["seq"],
        "due_by": _iso(row["due_by"]),
        "outcome": row["outcome"],
        "acknowledged_at": _iso(row["acknowledged_at"]),
        "closed_at": _iso(row["closed_at"]),
        "escalated_at": _iso(row["escalated_at"]),
    }


_EVENT_COLUMNS = "at, actor, actor_role, from_status, to_status, note, action, outcome, assigned_from, assigned_to"


def _event_action(row: asyncpg.Record) -> str:
    """What an audit record says happened; records from before actions were written say it by their statuses."""
    if row["action"]:
        return str(row["action"])
    if row["from_status"] is None:
        return "created"
    return {"acknowledged": "ack", "resolved": "resolve", "dismissed": "dismiss"}.get(row["to_status"], "ack")


def _event_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "at": _iso(row["at"]),
        "action": _event_action(row),
        "actor": row["actor"],
        "actor_role": row["actor_role"],
        "from": row["from_status"],
        "to": row["to_status"],
        "note": row["note"],
        "outcome": row["outcome"],
        "assigned_from": row["assigned_from"],
        "assigned_to": row["assigned_to"],
    }


def _snapshot_json(row: asyncpg.Record) -> dict[str, Any]:
    """A stored snapshot in the published shape (money as text, times RFC 3339), plus when it was stored."""
    out: dict[str, Any] = {}
    for name in (*SNAPSHOT_FIELDS, "updated_at"):
        value = row[name]
        if isinstance(value, datetime):
            value = aware(value).isoformat()
        elif isinstance(value, Decimal):
            value = str(value)
        out[name] = value
    return out


_CONTROL_COLUMNS = "event_id, client_id, kind, alert_type, occurred_at, until, actor, actor_role, reason, published_at"


def _control_json(row: asyncpg.Record) -> dict[str, Any]:
    """A snooze or unsnooze as the API shows it: what, until when, who in which role, why, and whether it is out."""
    return {
        "event_id": row["event_id"],
        "kind": row["kind"],
        "alert_type": row["alert_type"],
        "at": _iso(row["occurred_at"]),
        "until": _iso(row["until"]),
        "actor": row["actor"],
        "actor_role": row["actor_role"],
        "reason": row["reason"],
        "published_at": _iso(row["published_at"]),
    }


class _Query:
    """A WHERE clause built from numbered parameters only."""

    def __init__(self) -> None:
        self.args: list[Any] = []
        self.where: list[str] = []

    def param(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def scope(self, scope: Scope) -> None:
        if scope.rm_ids is None:
            return
        parts = []
        if scope.rm_ids:
            parts.append(f"a.rm_id = ANY({self.param(sorted(scope.rm_ids))}::text[])")
        if scope.unassigned:
            parts.append("a.rm_id IS NULL")
        self.where.append("(" + " OR ".join(parts) + ")" if parts else "FALSE")

    def sql(self) -> str:
        return " AND ".join(self.where) if self.where else "TRUE"


_STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS alert_staging (
    alert_id text, type text, severity text, priority smallint, client_id text, rm_id text, tier text,
    occurred_at timestamptz, detected_at timestamptz, title text, titles text, facts text,
    rule_version text, source_event_ids text[], due_by timestamptz
) ON COMMIT DELETE ROWS
"""
_STAGING_COLUMNS = (
    "alert_id",
    "type",
    "severity",
    "priority",
    "client_id",
    "rm_id",
    "tier",
    "occurred_at",
    "detected_at",
    "title",
    "titles",
    "facts",
    "rule_version",
    "source_event_ids",
    "due_by",
)
_INSERT_FROM_STAGING = f"""
WITH ins AS (
    INSERT INTO alerts ({", ".join(_STAGING_COLUMNS)})
    SELECT alert_id, type, severity, priority, client_id, rm_id, tier, occurred_at, detected_at, title,
           titles::jsonb, facts::jsonb, rule_version, source_event_ids, due_by
    FROM alert_staging
    ON CONFLICT (alert_id) DO NOTHING
    RETURNING alert_id, stored_at
)
INSERT INTO alert_events (alert_id, at, actor, actor_role, from_status, to_status, action)
SELECT alert_id, stored_at, '{SYSTEM_ACTOR}', 'system', NULL, 'open', 'created' FROM ins
"""
_FEED_NOTIFY = "SELECT pg_notify($1, (SELECT coalesce(max(seq), 0)::text FROM alerts))"
_SNAPSHOT_COLUMNS = ", ".join(SNAPSHOT_FIELDS)
_UPSERT_SNAPSHOT = (
    f"INSERT INTO client_snapshots ({_SNAPSHOT_COLUMNS}, updated_at)"
    f" VALUES ({', '.join(f'${i}' for i in range(1, len(SNAPSHOT_FIELDS) + 1))}, now())"
    " ON CONFLICT (client_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in SNAPSHOT_FIELDS if c != "client_id")
    + ", updated_at = now()"
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Per-connection staging table for COPY; emptied at every commit.
    await conn.execute(_STAGING_DDL)


class AlertStore:
    """An asyncpg pool over the clientpulse schema. `connect` then `migrate` before use."""

    def __init__(
        self,
        dsn: str,
        *,
        rules: Ruleset | None = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        command_timeout: float = 15.0,
    ) -> None:
        self.dsn = dsn
        self._rules = rules
        self._min_size, self._max_size = min_size, max_size
        self._connect_timeout, self._command_timeout = connect_timeout, command_timeout
        self._pool: asyncpg.Pool | None = None
        self.migrated = False

    @property
    def rules(self) -> Ruleset:
        """The rules file whose SLAs give stored alerts their due_by (the shipped one unless given)."""
        if self._rules is None:
            from handlers.ruleset import load_rules
            from streams.settings import DEFAULT_RULES

            self._rules = load_rules(DEFAULT_RULES)
        return self._rules

    @property
    def connected(self) -> bool:
        return self._pool is not None

    def _require(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreUnavailable("database not connected")
        return self._pool

    async def connect(self) -> None:
        if self._pool is not None:
            return
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            timeout=self._connect_timeout,
            command_timeout=self._command_timeout,
            init=_init_connection,
            server_settings={"application_name": "clientpulse"},
        )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def ping(self, timeout: float = 2.0) -> bool:
        """True when a query round-trips within `timeout`."""
        if self._pool is None:
            return False
        try:
            async with self._pool.acquire(timeout=timeout) as conn:
                await conn.fetchval("SELECT 1", timeout=timeout)
        except Exception:  # any failure means: not usable right now
            return False
        return True

    async def migrate(self) -> list[str]:
        """Apply the migrations not yet applied, each in its own transaction; return their names."""
        pool = self._require()
        applied_now: list[str] = []
        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = {
                    r["version"]: r for r in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
                }
                for migration in load_migrations():
                    previous = done.get(migration.version)
                    if previous is not None:
                        if previous["checksum"] != migration.checksum:
                            raise MigrationError(
                                f"migration {migration.name} changed after it was applied; add a new migration instead"
                            )
                        continue
                    async with conn.transaction():
                        await conn.execute(migration.sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                            migration.version,
                            migration.name,
                            migration.checksum,
                        )
                    log.info("applied migration %s", migration.name)
                    applied_now.append(migration.name)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        self.migrated = True
        return applied_now

    # ------------------------------------------------------------------ writes from the stream
    async def insert_alerts(self, alerts: Sequence[Alert]) -> int:
        """Store alerts not stored before (by alert_id), in one transaction; return how many were new.

        Every alert must carry its priority (the sink works out the priority of an older worker's alert).
        """
        if not alerts:
            return 0
        rules = self.rules
        records = [
            (
                a.alert_id,
                a.type,
                a.severity,
                a.priority,
                a.client_id,
                a.rm_id,
                a.tier,
                a.occurred_at,
                a.detected_at,
                a.title,
                orjson.dumps(a.titles).decode() if a.titles is not None else None,
                orjson.dumps(a.facts).decode(),
                a.rule_version,
                list(a.source_event_ids),
                due_by(rules, a.type, a.occurred_at),
            )
            for a in alerts
        ]
        async with self._require().acquire() as conn, conn.transaction():
            await conn.copy_records_to_table("alert_staging", records=records, columns=_STAGING_COLUMNS)
            # Sequences are taken and committed under one lock, so none becomes visible before a lower one.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", FEED_LOCK)
            status = await conn.execute(_INSERT_FROM_STAGING)
            new = int(status.rsplit(" ", 1)[-1])
            if new:
                await conn.execute(_FEED_NOTIFY, FEED_CHANNEL)  # delivered to listeners at commit
        return new

    async def upsert_snapshots(self, snapshots: Sequence[ClientSnapshot | str]) -> int:
        """Latest per client wins (input order): a snapshot is stored, a client id (an erasure) deletes the row.

        Returns the number of clients written or deleted. Alerts of an erased client stay: they are
        the bank's record of what it was told.
        """
        latest: dict[str, ClientSnapshot | None] = {}
        for snap in snapshots:
            if isinstance(snap, str):
                latest[snap] = None
            else:
                latest[snap.client_id] = snap
        if not latest:
            return 0
        rows = [tuple(getattr(s, name) for name in SNAPSHOT_FIELDS) for s in latest.values() if s is not None]
        erased = [client_id for client_id, s in latest.items() if s is None]
        async with self._require().acquire() as conn, conn.transaction():
            if erased:
                await conn.execute("DELETE FROM client_snapshots WHERE client_id = ANY($1::text[])", erased)
            if rows:
                await conn.executemany(_UPSERT_SNAPSHOT, rows)
        return len(latest)

    # ------------------------------------------------------------------ reads for the API
    async def list_alerts(
        self, scope: Scope, flt: AlertFilter, *, limit: int = 50, after: Position | None = None, sort: Sort = "newest"
    ) -> AlertPage:
        """A keyset page, stable while alerts are added: newest first by (occurred_at, alert_id), or by priority
        first (highest), then newest. `after` is a position of the same order."""
        keys = _KEYS[sort]
        q = _Query()
        q.scope(scope)
        if flt.unassigned:
            q.where.append("a.rm_id IS NULL")
        elif flt.rm_id is not None:
            q.where.append(f"a.rm_id = {q.param(flt.rm_id)}")
        if flt.statuses:
            q.where.append(f"a.status = ANY({q.param(list(flt.statuses))}::text[])")
        if flt.types:
            q.where.append(f"a.type = ANY({q.param(list(flt.types))}::text[])")
        if flt.severities:
            q.where.append(f"a.severity = ANY({q.param(list(flt.severities))}::text[])")
        if flt.since is not None:
            q.where.append(f"a.occurred_at >= {q.param(flt.since)}")
        if flt.client_id is not None:
            q.where.append(f"a.client_id = {q.param(flt.client_id)}")
        if flt.overdue_at is not None:
            q.where.append(f"a.status = 'open' AND a.due_by < {q.param(flt.overdue_at)}")
        if after is not None:
            if len(after) != len(keys):
                raise ValueError(f"a position of the {sort} order has {len(keys)} parts")
            columns = ", ".join(f"a.{name}" for name, _ in keys)
            values = ", ".join(f"{q.param(v)}::{sql_type}" for v, (_, sql_type) in zip(after, keys, strict=True))
            q.where.append(f"({columns}) < ({values})")
        order = ", ".join(f"a.{name} DESC" for name, _ in keys)
        sql = f"SELECT {_ALERT_COLUMNS} FROM alerts a WHERE {q.sql()} ORDER BY {order} LIMIT {q.param(limit + 1)}"
        async with self._require().acquire() as conn:
            rows = await conn.fetch(sql, *q.args)
        more = len(rows) > limit
        rows = rows[:limit]
        next_after: Position | None = None
        if more and rows:
            last = rows[-1]
            at, alert_id = aware(last["occurred_at"]), last["alert_id"]
            next_after = (last["priority"], at, alert_id) if sort == "priority" else (at, alert_id)
        return AlertPage([_alert_json(r) for r in rows], next_after)

    async def feed(self, scope: Scope, flt: AlertFilter, *, after: int, limit: int = 50) -> list[dict[str, Any]]:
        """Alerts stored after sequence `after`, in store order: a reliable feed whatever the event times."""
        q = _Query()
        q.scope(scope)
        q.where.append(f"a.seq > {q.param(after)}")
        if flt.unassigned:
            q.where.append("a.rm_id IS NULL")
        elif flt.rm_id is not None:
            q.where.append(f"a.rm_id = {q.param(flt.rm_id)}")
        if flt.statuses:
            q.where.append(f"a.status = ANY({q.param(list(flt.statuses))}::text[])")
        if flt.types:
            q.where.append(f"a.type = ANY({q.param(list(flt.types))}::text[])")
        if flt.severities:
            q.where.append(f"a.severity = ANY({q.param(list(flt.severities))}::text[])")
        if flt.since is not None:
            q.where.append(f"a.occurred_at >= {q.param(flt.since)}")
        if flt.client_id is not None:
            q.where.append(f"a.client_id = {q.param(flt.client_id)}")
        sql = f"SELECT {_ALERT_COLUMNS} FROM alerts a WHERE {q.sql()} ORDER BY a.seq LIMIT {q.param(limit)}"
        async with self._require().acquire() as conn:
            rows = await conn.fetch(sql, *q.args)
        return [_alert_json(r) for r in rows]

    async def latest_seq(self) -> int:
        """The highest store sequence so far (0 for an empty store)."""
        async with self._require().acquire() as conn:
            value = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM alerts")
        return int(value)

    async def get_alert(self, alert_id: str, scope: Scope) -> dict[str, Any] | None:
        """The alert with its audit trail (oldest change first), or None when absent or not visible."""
        async with self._require().acquire() as conn:
            return await self._get(conn, alert_id, scope)

    async def _get(self, conn: asyncpg.Connection, alert_id: str, scope: Scope) -> dict[str, Any] | None:
        q = _Query()
        q.where.append(f"a.alert_id = {q.param(alert_id)}")
        q.scope(scope)
        row = await conn.fetchrow(f"SELECT {_ALERT_COLUMNS} FROM alerts a WHERE {q.sql()}", *q.args)
        if row is None:
            return None
        events = await conn.fetch(
            f"SELECT {_EVENT_COLUMNS} FROM alert_events WHERE alert_id = $1 ORDER BY id", alert_id
        )
        alert = _alert_json(row)
        alert["events"] = [_event_json(e) for e in events]
        return alert

    async def transition(
        self,
        alert_id: str,
        action: str,
        *,
        scope: Scope,
        actor: str,
        actor_role: str,
        note: str | None,
        outcome: str | None = None,
    ) -> dict[str, Any]:
        """Move an alert along its lifecycle and audit it, atomically; the alert row is locked meanwhile.

        The caller's scope is part of the locking query, so a row outside it is never locked nor waited
        for: another RM's alert and a missing one cost the same and answer the same. `outcome` is the
        resolve outcome or the dismiss reason, already checked against handlers/lifecycle.py.
        """
        allowed, target = TRANSITIONS[action]
        q = _Query()
        q.where.append(f"a.alert_id = {q.param(alert_id)}")
        q.scope(scope)
        async with self._require().acquire() as conn:
            async with conn.transaction():
                row = await conn.fetchrow(f"SELECT a.status FROM alerts a WHERE {q.sql()} FOR UPDATE", *q.args)
                if row is None:
                    raise NotFound(alert_id)
                if row["status"] not in allowed:
                    raise InvalidTransition(action, row["status"])
                await conn.execute(
                    "UPDATE alerts SET status = $2, updated_at = now(),"
                    " outcome = coalesce($3, outcome),"
                    " acknowledged_at = CASE WHEN status = 'open' THEN now() ELSE acknowledged_at END,"
                    " closed_at = CASE WHEN $2 IN ('resolved', 'dismissed') THEN now() ELSE closed_at END"
                    " WHERE alert_id = $1",
                    alert_id,
                    target,
                    outcome,
                )
                await conn.execute(
                    "INSERT INTO alert_events"
                    " (alert_id, actor, actor_role, from_status, to_status, note, action, outcome)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    alert_id,
                    actor,
                    actor_role,
                    row["status"],
                    target,
                    note,
                    action,
                    outcome,
                )
            alert = await self._get(conn, alert_id, scope)
        if alert is None:  # pragma: no cover - the row was just updated under a lock
            raise NotFound(alert_id)
        return alert

    async def assign(
        self, alert_id: str, rm_id: str, *, scope: Scope, actor: str, actor_role: str, note: str | None
    ) -> dict[str, Any]:
        """Give an open or acknowledged alert to an RM of the caller's scope; audited as `assign`.

        The alert must be visible to the caller and the RM one the caller may give work to (a manager's
        team); the RM then sees the alert as its own. Assigning to the RM it already has changes nothing
        and records nothing.
        """
        if scope.rm_ids is not None and rm_id not in scope.rm_ids:
            raise OutsideScope(rm_id)
        q = _Query()
        q.where.append(f"a.alert_id = {q.param(alert_id)}")
        q.scope(scope)
        async with self._require().acquire() as conn:
            async with conn.transaction():
                row = await conn.fetchrow(f"SELECT a.status, a.rm_id FROM alerts a WHERE {q.sql()} FOR UPDATE", *q.args)
                if row is None:
                    raise NotFound(alert_id)
                if row["status"] not in ASSIGNABLE:
                    raise InvalidTransition("assign", row["status"])
                if row["rm_id"] != rm_id:
                    await conn.execute(
                        "UPDATE alerts SET rm_id = $2, updated_at = now() WHERE alert_id = $1", alert_id, rm_id
                    )
                    await conn.execute(
                        "INSERT INTO alert_events (alert_id, actor, actor_role, from_status, to_status, note,"
                        " action, assigned_from, assigned_to) VALUES ($1, $2, $3, $4, $4, $5, 'assign', $6, $7)",
                        alert_id,
                        actor,
                        actor_role,
                        row["status"],
                        note,
                        row["rm_id"],
                        rm_id,
                    )
            alert = await self._get(conn, alert_id, Scope(None, True))
        if alert is None:  # pragma: no cover - the row was just updated under a lock
            raise NotFound(alert_id)
        return alert

    # ------------------------------------------------------------------ the workbench
    async def inbox(
        self,
        scope: Scope,
        *,
        rm_ids: Sequence[str] | None = None,
        unassigned: bool = False,
        statuses: Sequence[str] = INBOX_STATUSES,
        types: Sequence[str] = (),
        severities: Sequence[str] = (),
        limit: int = 50,
        after: InboxPosition | None = None,
    ) -> tuple[list[dict[str, Any]], InboxPosition | None]:
        """Open and acknowledged alerts by priority, then newest: the RM's work, one keyset page."""
        q = _Query()
        q.scope(scope)
        if unassigned:
            q.where.append("a.rm_id IS NULL")
        elif rm_ids is not None:
            q.where.append(f"a.rm_id = ANY({q.param(list(rm_ids))}::text[])")
        wanted = [s for s in statuses if s in INBOX_STATUSES] or list(INBOX_STATUSES)
        # The index holds exactly the inbox statuses: keep them in the query's own words so it is used.
        q.where.append("a.status IN ('open', 'acknowledged')")
        if len(wanted) == 1:
            q.where.append(f"a.status = {q.param(wanted[0])}")
        if types:
            q.where.append(f"a.type = ANY({q.param(list(types))}::text[])")
        if severities:
            q.where.append(f"a.severity = ANY({q.param(list(severities))}::text[])")
        if after is not None:
            priority, at, after_id = after
            q.where.append(
                f"(a.priority, a.occurred_at, a.alert_id) < ({q.param(priority)}::smallint,"
                f" {q.param(at)}::timestamptz, {q.param(after_id)}::text)"
            )
        sql = (
            f"SELECT {_ALERT_COLUMNS} FROM alerts a WHERE {q.sql()}"
            f" ORDER BY a.priority DESC, a.occurred_at DESC, a.alert_id DESC LIMIT {q.param(limit + 1)}"
        )
        async with self._require().acquire() as conn:
            rows = await conn.fetch(sql, *q.args)
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if rows else None
        position = (int(last["priority"]), aware(last["occurred_at"]), last["alert_id"]) if more and last else None
        return [_alert_json(r) for r in rows], position

    async def overdue(self, scope: Scope, now: datetime, *, limit: int = 100) -> list[dict[str, Any]]:
        """Open alerts past their due_by (SLA breached), the longest overdue first."""
        q = _Query()
        q.scope(scope)
        q.where.append("a.status = 'open'")
        q.where.append(f"a.due_by < {q.param(now)}")
        sql = (
            f"SELECT {_ALERT_COLUMNS} FROM alerts a WHERE {q.sql()}"
            f" ORDER BY a.due_by, a.alert_id LIMIT {q.param(limit)}"
        )
        async with self._require().acquire() as conn:
            rows = await conn.fetch(sql, *q.args)
        return [_alert_json(r) for r in rows]

    async def team_counts(self, scope: Scope, rm_ids: Sequence[str], now: datetime) -> dict[str | None, dict[str, int]]:
        """Per RM of `rm_ids` (and None for the unassigned, when the scope has them): open, acknowledged, overdue."""
        q = _Query()
        q.scope(scope)
        q.where.append("a.status IN ('open', 'acknowledged')")
        who = f"a.rm_id = ANY({q.param(list(rm_ids))}::text[])"
        q.where.append(f"({who} OR a.rm_id IS NULL)" if scope.unassigned else who)
        now_param = q.param(now)
        sql = (
            "SELECT a.rm_id, count(*) FILTER (WHERE a.status = 'open') AS open,"
            " count(*) FILTER (WHERE a.status = 'acknowledged') AS acknowledged,"
            f" count(*) FILTER (WHERE a.status = 'open' AND a.due_by < {now_param}) AS overdue"
            f" FROM alerts a WHERE {q.sql()} GROUP BY a.rm_id"
        )
        async with self._require().acquire() as conn:
            rows = await conn.fetch(sql, *q.args)
        counts: dict[str | None, dict[str, int]] = {rm: {"open": 0, "acknowledged": 0, "overdue": 0} for rm in rm_ids}
        for r in rows:
            counts[r["rm_id"]] = {"open": r["open"], "acknowledged": r["acknowledged"], "overdue": r["overdue"]}
        return counts

    async def client_timeline(
        self, client_id: str, scope: Scope, *, limit: int = 100
    ) -> tuple[list[dict[str, Any]], bool]:
        """The client's visible alerts, newest first, each with its whole audit trail; and whether more exist."""
        q = _Query()
        q.where.append(f"a.client_id = {q.param(client_id)}")
        q.scope(scope)
        sql = (
            f"SELECT {_ALERT_COLUMNS} FROM alerts a WHERE {q.sql()}"
            f" ORDER BY a.occurred_at DESC, a.alert_id DESC LIMIT {q.param(limit + 1)}"
        )
        async with self._require().acquire() as conn:
            rows = await conn.fetch(sql, *q.args)
            more = len(rows) > limit
            rows = rows[:limit]
            ids = [r["alert_id"] for r in rows]
            events = await conn.fetch(
                f"SELECT alert_id, {_EVENT_COLUMNS} FROM alert_events WHERE alert_id = ANY($1::text[]) ORDER BY id",
                ids,
            )
        by_alert: dict[str, list[dict[str, Any]]] = {}
        for e in events:
            by_alert.setdefault(e["alert_id"], []).append(_event_json(e))
        alerts = []
        for r in rows:
            alert = _alert_json(r)
            alert["events"] = by_alert.get(r["alert_id"], [])
            alerts.append(alert)
        return alerts, more

    # ------------------------------------------------------------------ SLAs and escalation
    async def fill_due_by(self, batch: int = 10_000) -> int:
        """Give alerts stored before SLAs existed their due_by, from this store's rules; returns how many."""
        rules = self.rules
        types = sorted(rules.sla)
        hours = [rules.sla[t] / 3_600_000_000 for t in types]
        default = rules.sla_default / 3_600_000_000
        total = 0
        async with self._require().acquire() as conn:
            while True:
                status = await conn.execute(
                    "WITH sla AS (SELECT * FROM unnest($1::text[], $2::float8[]) AS s(type, hours)),"
                    " todo AS (SELECT alert_id FROM alerts WHERE due_by IS NULL LIMIT $4)"
                    " UPDATE alerts a SET due_by = a.occurred_at"
                    " + make_interval(secs => coalesce((SELECT hours FROM sla WHERE sla.type = a.type), $3) * 3600)"
                    " FROM todo WHERE todo.alert_id = a.alert_id",
                    types,
                    hours,
                    default,
                    batch,
                )
                done = int(status.rsplit(" ", 1)[-1])
                total += done
                if done < batch:
                    return total

    async def escalate_due(self, now: datetime, *, limit: int = 10_000) -> int:
        """Mark open alerts past due_by as escalated, with their `escalated` audit record; returns how many.

        One statement: under concurrent sweeps (several sinks) PostgreSQL re-checks `escalated_at IS NULL`
        on each row it waited for, so every alert is escalated exactly once, whoever sweeps.
        """
        sql = f"""
WITH due AS (
    SELECT alert_id FROM alerts
    WHERE status = 'open' AND escalated_at IS NULL AND due_by < $1
    ORDER BY due_by LIMIT $2
    FOR UPDATE SKIP LOCKED
), esc AS (
    UPDATE alerts a SET escalated_at = $1
    FROM due WHERE a.alert_id = due.alert_id AND a.status = 'open' AND a.escalated_at IS NULL
    RETURNING a.alert_id
)
INSERT INTO alert_events (alert_id, at, actor, actor_role, from_status, to_status, action)
SELECT alert_id, $1, '{ESCALATION_ACTOR}', 'system', 'open', 'open', 'escalated' FROM esc
"""
        async with self._require().acquire() as conn, conn.transaction():
            status = await conn.execute(sql, now, limit)
        return int(status.rsplit(" ", 1)[-1])

    async def send_escalations(
        self, send: Callable[[list[dict[str, Any]]], Awaitable[None]], *, limit: int = 500
    ) -> int:
        """Hand escalated alerts whose push is not out yet to `send`, then record them as sent; returns how many.

        The rows stay locked (SKIP LOCKED for other sinks) from the read until the record, so two sinks never
        send the same escalation at once; a sink that dies after `send` and before the record leaves them
        unsent, and they go out again (same push ids).
        """
        async with self._require().acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT {_ALERT_COLUMNS} FROM alerts a"
                " WHERE a.escalated_at IS NOT NULL AND a.escalation_sent_at IS NULL"
                " ORDER BY a.escalated_at, a.alert_id LIMIT $1 FOR UPDATE SKIP LOCKED",
                limit,
            )
            if not rows:
                return 0
            await send([_alert_json(r) for r in rows])
            await conn.execute(
                "UPDATE alerts SET escalation_sent_at = now() WHERE alert_id = ANY($1::text[])",
                [r["alert_id"] for r in rows],
            )
        return len(rows)

    async def overdue_by_type(self, now: datetime) -> dict[str, int]:
        async with self._require().acquire() as conn:
            rows = await conn.fetch(
                "SELECT type, count(*) AS n FROM alerts WHERE status = 'open' AND due_by < $1 GROUP BY type", now
            )
        return {r["type"]: r["n"] for r in rows}

    # ------------------------------------------------------------------ the rule report and labels
    async def report_rows(self, scope: Scope, since: datetime, until: datetime) -> dict[str, list[asyncpg.Record]]:
        """The raw figures of the rule report (handlers/report.py makes the report of them)."""
        q = _Query()
        q.scope(scope)
        q.where.append(f"a.occurred_at >= {q.param(since)}")
        q.where.append(f"a.occurred_at < {q.param(until)}")
        where = q.sql()
        per_day = (
            "SELECT a.type, (a.occurred_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n"
            f" FROM alerts a WHERE {where} GROUP BY 1, 2 ORDER BY 1, 2"
        )
        per_type = (
            "SELECT a.type, count(*) AS alerts,"
            " count(*) FILTER (WHERE a.acknowledged_at IS NOT NULL OR a.due_by <= now()) AS sla_decided,"
            " count(*) FILTER (WHERE a.acknowledged_at IS NOT NULL AND a.acknowledged_at <= a.due_by) AS sla_met,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.acknowledged_at - a.occurred_at))"
            "   FILTER (WHERE a.acknowledged_at IS NOT NULL) AS median_ack_seconds,"
            " count(*) FILTER (WHERE a.status IN ('resolved', 'dismissed')) AS closed,"
            " count(*) FILTER (WHERE a.status = 'resolved' AND a.outcome IS NOT NULL"
            "   AND a.outcome <> 'no_action_needed') AS useful"
            f" FROM alerts a WHERE {where} GROUP BY 1 ORDER BY 1"
        )
        async with self._require().acquire() as conn:
            return {
                "per_day": list(await conn.fetch(per_day, *q.args)),
                "per_type": list(await conn.fetch(per_type, *q.args)),
            }

    async def export_labels(
        self, since: datetime | None = None, batch: int = 5000
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Closed alerts with their outcome, oldest first, in batches (an async iterator of lists of dicts)."""
        async with self._require().acquire() as conn, conn.transaction():
            cursor = conn.cursor(
                "SELECT alert_id, type, severity, tier, rm_id, client_id, status, outcome, occurred_at, due_by,"
                " acknowledged_at, closed_at, rule_version FROM alerts"
                " WHERE status IN ('resolved', 'dismissed') AND ($1::timestamptz IS NULL OR occurred_at >= $1)"
                " ORDER BY occurred_at, alert_id",
                since,
                prefetch=batch,
            )
            chunk: list[dict[str, Any]] = []
            async for row in cursor:
                chunk.append(
                    {
                        "alert_id": row["alert_id"],
                        "type": row["type"],
                        "severity": row["severity"],
                        "tier": row["tier"],
                        "rm_id": row["rm_id"],
                        "client_id": row["client_id"],
                        "status": row["status"],
                        "outcome": row["outcome"],
                        "occurred_at": _iso(row["occurred_at"]),
                        "due_by": _iso(row["due_by"]),
                        "acknowledged_at": _iso(row["acknowledged_at"]),
                        "closed_at": _iso(row["closed_at"]),
                        "rule_version": row["rule_version"],
                    }
                )
                if len(chunk) >= batch:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk

    async def get_client(self, client_id: str) -> dict[str, Any] | None:
        async with self._require().acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {_SNAPSHOT_COLUMNS}, updated_at FROM client_snapshots WHERE client_id = $1",
                client_id,
            )
        return _snapshot_json(row) if row is not None else None

    # ------------------------------------------------------------------ snoozes: audit trail and outbox
    async def record_control(self, event: ControlEvent, raw: bytes, actor_role: str) -> dict[str, Any]:
        """Keep a snooze or unsnooze in the audit trail, with the control event to publish (`raw`)."""
        async with self._require().acquire() as conn:
            row = await conn.fetchrow(
                "INSERT INTO client_controls"
                " (event_id, client_id, kind, alert_type, occurred_at, until, actor, actor_role, reason, event)"
                f" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {_CONTROL_COLUMNS}",
                event.event_id,
                event.client_id,
                event.kind,
                event.alert_type,
                event.occurred_at,
                event.until if event.kind == "snooze" else None,
                event.actor,
                actor_role,
                event.reason,
                raw.decode(),
            )
        return _control_json(row)

    async def publish_controls(
        self, send: Callable[[list[tuple[str, str, bytes]]], Awaitable[None]], client_id: str | None = None
    ) -> int:
        """Publish the control events not published yet (of one client, or all), oldest first; return how many.

        `send` gets (client_id, kind, event bytes) of each.

        The rows stay locked while `send` waits for the broker, and are stamped in
        the same transaction: a concurrent publisher waits, then finds them done,
        so one client's events reach the topic in the order they were recorded. If
        `send` fails nothing is stamped and the same rows are sent again later.
        """
        async with self._require().acquire() as conn, conn.transaction():
            if client_id is None:
                rows = await conn.fetch(
                    "SELECT id, client_id, kind, event FROM client_controls WHERE published_at IS NULL"
                    " ORDER BY id LIMIT 500 FOR UPDATE"
                )
            else:
                rows = await conn.fetch(
                    "SELECT id, client_id, kind, event FROM client_controls"
                    " WHERE published_at IS NULL AND client_id = $1 ORDER BY id FOR UPDATE",
                    client_id,
                )
            if not rows:
                return 0
            await send([(r["client_id"], r["kind"], r["event"].encode()) for r in rows])
            await conn.execute(
                "UPDATE client_controls SET published_at = now() WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
            )
        return len(rows)

    async def control(self, event_id: str) -> dict[str, Any] | None:
        async with self._require().acquire() as conn:
            row = await conn.fetchrow(f"SELECT {_CONTROL_COLUMNS} FROM client_controls WHERE event_id = $1", event_id)
        return _control_json(row) if row is not None else None

    async def unpublished_controls(self) -> int:
        async with self._require().acquire() as conn:
            count: int = await conn.fetchval("SELECT count(*) FROM client_controls WHERE published_at IS NULL")
        return count

    async def snoozes(self, client_id: str, *, history: int = 50) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(the client's snoozes in force now, one per type; its snooze trail, newest first, at most `history`)."""
        async with self._require().acquire() as conn:
            active = await conn.fetch(
                f"SELECT {_CONTROL_COLUMNS} FROM ("
                " SELECT DISTINCT ON (alert_type) * FROM client_controls WHERE client_id = $1"
                " ORDER BY alert_type, id DESC"
                ") latest WHERE kind = 'snooze' AND until > now() ORDER BY until, alert_type",
                client_id,
            )
            trail = await conn.fetch(
                f"SELECT {_CONTROL_COLUMNS} FROM client_controls WHERE client_id = $1 ORDER BY id DESC LIMIT $2",
                client_id,
                history,
            )
        return [_control_json(r) for r in active], [_control_json(r) for r in trail]

    async def active_snooze(self, client_id: str, alert_type: str) -> dict[str, Any] | None:
        async with self._require().acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {_CONTROL_COLUMNS}, until > now() AS in_force FROM client_controls"
                " WHERE client_id = $1 AND alert_type = $2 ORDER BY id DESC LIMIT 1",
                client_id,
                alert_type,
            )
        if row is None or row["kind"] != "snooze" or not row["in_force"]:
            return None
        return _control_json(row)

    # ------------------------------------------------------------------ API secrets, sessions, sign-in attempts
    async def api_secret(self, name: str) -> bytes:
        """A 32-byte secret shared by every replica: made by the first process that asks, then read."""
        async with self._require().acquire() as conn:
            await conn.execute(
                "INSERT INTO api_secrets (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                name,
                secrets.token_bytes(32),
            )
            secret: bytes = await conn.fetchval("SELECT secret FROM api_secrets WHERE name = $1", name)
        return secret

    async def create_session(
        self, id_hash: bytes, source: str, principal: dict[str, Any], *, absolute_seconds: float, idle_seconds: float
    ) -> None:
        async with self._require().acquire() as conn, conn.transaction():
            # Sign-ins are rare next to requests: a good moment to forget the sessions that ended.
            await conn.execute(
                "DELETE FROM web_sessions"
                " WHERE expires_at <= now() OR last_seen_at <= now() - make_interval(secs => $1)",
                idle_seconds,
            )
            await conn.execute(
                "INSERT INTO web_sessions (id_hash, source, principal, expires_at)"
                " VALUES ($1, $2, $3::jsonb, now() + make_interval(secs => $4))",
                id_hash,
                source,
                orjson.dumps(principal).decode(),
                absolute_seconds,
            )

    async def get_session(
        self, id_hash: bytes, *, idle_seconds: float, touch_after: float
    ) -> tuple[str, dict[str, Any]] | None:
        """(source, principal) of a live session, or None; refreshes its idle clock at most every `touch_after` s."""
        async with self._require().acquire() as conn:
            row = await conn.fetchrow(
                "SELECT source, principal::text AS principal,"
                " last_seen_at <= now() - make_interval(secs => $3) AS stale"
                " FROM web_sessions WHERE id_hash = $1 AND expires_at > now()"
                " AND last_seen_at > now() - make_interval(secs => $2)",
                id_hash,
                idle_seconds,
                touch_after,
            )
            if row is None:
                return None
            if row["stale"]:
                await conn.execute("UPDATE web_sessions SET last_seen_at = now() WHERE id_hash = $1", id_hash)
        return row["source"], orjson.loads(row["principal"])

    async def delete_session(self, id_hash: bytes) -> bool:
        async with self._require().acquire() as conn:
            status = await conn.execute("DELETE FROM web_sessions WHERE id_hash = $1", id_hash)
        return bool(status.endswith(" 1"))

    async def create_signin_attempt(
        self, state_hash: bytes, browser_hash: bytes, code_verifier: str, nonce: str, *, ttl_seconds: float
    ) -> None:
        async with self._require().acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM signin_attempts WHERE expires_at <= now()")
            await conn.execute(
                "INSERT INTO signin_attempts (state_hash, browser_hash, code_verifier, nonce, expires_at)"
                " VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
                state_hash,
                browser_hash,
                code_verifier,
                nonce,
                ttl_seconds,
            )

    async def take_signin_attempt(self, state_hash: bytes) -> tuple[bytes, str, str] | None:
        """(browser_hash, code_verifier, nonce) of a pending attempt, removed so it can be used once only."""
        async with self._require().acquire() as conn:
            row = await conn.fetchrow(
                "DELETE FROM signin_attempts WHERE state_hash = $1 AND expires_at > now()"
                " RETURNING browser_hash, code_verifier, nonce",
                state_hash,
            )
        return (bytes(row["browser_hash"]), row["code_verifier"], row["nonce"]) if row is not None else None
