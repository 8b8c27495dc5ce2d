"""The alert store on a real PostgreSQL: idempotence, the lifecycle, the audit trail, visibility."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import pytest

from schemas.alerts import Alert
from schemas.snapshot import ClientSnapshot
from streams.api.auth import Scope
from streams.sink.store import AlertFilter, AlertStore, InvalidTransition, NotFound, load_migrations

pytestmark = pytest.mark.db

ALL = Scope(None, True)
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def make_alert(
    alert_id: str | None = None,
    *,
    rm_id: str | None = "rm-1",
    client_id: str = "c-1",
    minute: int = 0,
    type_: str = "large_outflow",
) -> Alert:
    return Alert.model_validate(
        {
            "alert_id": alert_id or uuid.uuid4().hex,
            "type": type_,
            "severity": "critical",
            "priority": 85,  # the shipped points of a critical alert at platinum
            "client_id": client_id,
            "rm_id": rm_id,
            "tier": "platinum",
            "occurred_at": (T0 + timedelta(minutes=minute)).isoformat(),
            "detected_at": datetime.now(UTC).isoformat(),
            "title": "Outflow of 1,200,000.00 CNY to another bank",
            "titles": {"en": "Outflow of 1,200,000.00 CNY to another bank", "zh-CN": "向他行转出 1,200,000.00 元"},
            "facts": {"amount": "1200000.00", "limit": "500000.00", "counterparty_bank": "external"},
            "rule_version": "v-test",
            "source_event_ids": ["e-42"],
        }
    )


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[AlertStore]:
    s = AlertStore(database_url)
    await s.connect()
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


async def _rows(database_url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def test_migrations_are_versioned_and_applied_once(store: AlertStore, database_url: str) -> None:
    assert await store.migrate() == []
    rows = await _rows(database_url, "SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    shipped = load_migrations()
    assert [(r["version"], r["name"], r["checksum"]) for r in rows] == [
        (m.version, m.name, m.checksum) for m in shipped
    ]
    tables = {r["tablename"] for r in await _rows(database_url, "SELECT tablename FROM pg_tables")}
    assert {"alerts", "alert_events", "client_snapshots", "schema_migrations"} <= tables


async def test_concurrent_starts_migrate_safely(database_url: str) -> None:
    stores = [AlertStore(database_url, max_size=1) for _ in range(3)]
    try:
        await asyncio.gather(*(s.connect() for s in stores))
        results = await asyncio.gather(*(s.migrate() for s in stores))
        applied = [name for names in results for name in names]
        assert len(applied) == len(set(applied))  # each migration ran at most once, whoever got there first
        assert all(s.migrated for s in stores)
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_alerts_stored_before_priorities_existed_get_the_shipped_points(database_url: str) -> None:
    """Migration 0003 on a store that already holds alerts: severity + tier + type points, capped at 100."""
    name = f"clientpulse_old_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    try:
        conn = await asyncpg.connect(url)
        try:
            for migration in [m for m in load_migrations() if m.version < 3]:
                await conn.execute(migration.sql)
            await conn.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for m in [m for m in load_migrations() if m.version < 3]:
                await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2, $3)", m.version, m.name, m.checksum)
            for alert_id, type_, severity, tier in [
                ("old-1", "complaint", "critical", "private"),  # 70 + 25 + 5, capped: 100
                ("old-2", "aum_drain", "critical", "gold"),  # 70 + 5 + 5
                ("old-3", "large_outflow", "warning", "platinum"),  # 40 + 15
                ("old-4", "tier_upgrade", "info", None),  # 10 + 0
            ]:
                await conn.execute(
                    "INSERT INTO alerts (alert_id, type, severity, client_id, rm_id, tier, occurred_at, detected_at,"
                    " title, facts, rule_version, source_event_ids)"
                    " VALUES ($1, $2, $3, 'c-1', 'rm-1', $4, now(), now(), 'old', '{}', 'v-old', '{}')",
                    alert_id,
                    type_,
                    severity,
                    tier,
                )
        finally:
            await conn.close()
        old = AlertStore(url)
        await old.connect()
        try:
            assert await old.migrate() == [m.name for m in load_migrations() if m.version >= 3]
            page = await old.list_alerts(Scope(None, True), AlertFilter(), sort="priority")
            assert [(a["alert_id"], a["priority"], a["titles"]) for a in page.alerts] == [
                ("old-1", 100, {"en": "old"}),
                ("old-2", 80, {"en": "old"}),
                ("old-3", 55, {"en": "old"}),
                ("old-4", 10, {"en": "old"}),
            ]
        finally:
            await old.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_a_duplicated_alert_is_stored_once(store: AlertStore, database_url: str) -> None:
    alert = make_alert()
    other = make_alert()
    assert await store.insert_alerts([alert, alert, other]) == 2
    assert await store.insert_alerts([alert]) == 0
    assert await store.insert_alerts([alert, other]) == 0
    rows = await _rows(database_url, "SELECT alert_id FROM alerts WHERE alert_id = ANY($1)", [alert.alert_id])
    assert len(rows) == 1
    events = await _rows(
        database_url, "SELECT from_status, to_status FROM alert_events WHERE alert_id = $1", alert.alert_id
    )
    assert [(e["from_status"], e["to_status"]) for e in events] == [(None, "open")]
    stored = await store.get_alert(alert.alert_id, ALL)
    assert stored is not None
    assert stored["status"] == "open"
    assert stored["facts"] == alert.facts
    assert stored["source_event_ids"] == ["e-42"]
    assert datetime.fromisoformat(stored["occurred_at"]) == alert.occurred_at


async def test_every_lifecycle_path_is_audited(store: AlertStore) -> None:
    a, b, c = make_alert(), make_alert(), make_alert()
    await store.insert_alerts([a, b, c])
    kw = {"scope": ALL, "actor": "alice", "actor_role": "rm"}
    acked = await store.transition(a.alert_id, "ack", note=None, **kw)  # type: ignore[arg-type]
    assert acked["status"] == "acknowledged"
    resolved = await store.transition(a.alert_id, "resolve", note="called the client", **kw)  # type: ignore[arg-type]
    assert resolved["status"] == "resolved"
    assert [(e["from"], e["to"], e["actor"], e["note"]) for e in resolved["events"]] == [
        (None, "open", "clientpulse", None),
        ("open", "acknowledged", "alice", None),
        ("acknowledged", "resolved", "alice", "called the client"),
    ]
    assert resolved["updated_at"] >= resolved["stored_at"]

    dismissed = await store.transition(b.alert_id, "dismiss", note="known travel", **kw)  # type: ignore[arg-type]
    assert dismissed["status"] == "dismissed"
    assert dismissed["events"][-1]["from"] == "open" and dismissed["events"][-1]["note"] == "known travel"

    await store.transition(c.alert_id, "ack", note=None, **kw)  # type: ignore[arg-type]
    dismissed = await store.transition(c.alert_id, "dismiss", note="duplicate", **kw)  # type: ignore[arg-type]
    assert [e["to"] for e in dismissed["events"]] == ["open", "acknowledged", "dismissed"]


@pytest.mark.parametrize(
    ("path", "action", "status"),
    [
        ((), "resolve", "open"),
        (("ack",), "ack", "acknowledged"),
        (("ack", "resolve"), "ack", "resolved"),
        (("ack", "resolve"), "resolve", "resolved"),
        (("ack", "resolve"), "dismiss", "resolved"),
        (("dismiss",), "ack", "dismissed"),
        (("dismiss",), "resolve", "dismissed"),
        (("dismiss",), "dismiss", "dismissed"),
    ],
)
async def test_invalid_transitions_are_rejected_and_change_nothing(
    store: AlertStore, path: tuple[str, ...], action: str, status: str
) -> None:
    alert = make_alert()
    await store.insert_alerts([alert])
    for step in path:
        await store.transition(alert.alert_id, step, scope=ALL, actor="alice", actor_role="rm", note="n")
    before = await store.get_alert(alert.alert_id, ALL)
    with pytest.raises(InvalidTransition) as info:
        await store.transition(alert.alert_id, action, scope=ALL, actor="alice", actor_role="rm", note="n")
    assert info.value.status == status
    assert f"cannot {action} an alert that is {status}" in str(info.value)
    assert await store.get_alert(alert.alert_id, ALL) == before


async def test_concurrent_acks_succeed_once(store: AlertStore) -> None:
    alert = make_alert()
    await store.insert_alerts([alert])
    results = await asyncio.gather(
        *(
            store.transition(alert.alert_id, "ack", scope=ALL, actor=f"u{i}", actor_role="rm", note=None)
            for i in range(5)
        ),
        return_exceptions=True,
    )
    assert sum(isinstance(r, dict) for r in results) == 1
    assert sum(isinstance(r, InvalidTransition) for r in results) == 4
    stored = await store.get_alert(alert.alert_id, ALL)
    assert stored is not None and [e["to"] for e in stored["events"]] == ["open", "acknowledged"]


async def test_the_audit_trail_is_append_only(store: AlertStore, database_url: str) -> None:
    alert = make_alert()
    await store.insert_alerts([alert])
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("UPDATE alert_events SET actor = 'mallory' WHERE alert_id = $1", alert.alert_id)
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("DELETE FROM alert_events WHERE alert_id = $1", alert.alert_id)
    finally:
        await conn.close()


async def test_scope_hides_other_rms_alerts(store: AlertStore) -> None:
    rm_a, rm_b = f"rm-{uuid.uuid4().hex[:6]}", f"rm-{uuid.uuid4().hex[:6]}"
    mine, theirs, nobody = make_alert(rm_id=rm_a), make_alert(rm_id=rm_b), make_alert(rm_id=None)
    await store.insert_alerts([mine, theirs, nobody])
    scope_a = Scope(frozenset({rm_a}), False)
    assert await store.get_alert(theirs.alert_id, scope_a) is None
    assert await store.get_alert(nobody.alert_id, scope_a) is None
    assert await store.get_alert(mine.alert_id, scope_a) is not None
    with pytest.raises(NotFound):
        await store.transition(theirs.alert_id, "ack", scope=scope_a, actor="a", actor_role="rm", note=None)
    page = await store.list_alerts(scope_a, AlertFilter(), limit=200)
    ids = {a["alert_id"] for a in page.alerts}
    assert mine.alert_id in ids and theirs.alert_id not in ids and nobody.alert_id not in ids
    assert (await store.list_alerts(scope_a, AlertFilter(rm_id=rm_b))).alerts == []

    team = Scope(frozenset({rm_a, rm_b}), True)
    unassigned = await store.list_alerts(team, AlertFilter(unassigned=True), limit=200)
    assert nobody.alert_id in {a["alert_id"] for a in unassigned.alerts}
    assert all(a["rm_id"] is None for a in unassigned.alerts)
    assert await store.get_alert(theirs.alert_id, Scope(frozenset(), False)) is None


async def test_filters_combine(store: AlertStore) -> None:
    rm = f"rm-{uuid.uuid4().hex[:6]}"
    client = f"c-{uuid.uuid4().hex[:6]}"
    early = make_alert(rm_id=rm, client_id=client, minute=0, type_="complaint")
    late = make_alert(rm_id=rm, client_id=client, minute=30)
    other_client = make_alert(rm_id=rm, minute=40)
    await store.insert_alerts([early, late, other_client])
    await store.transition(late.alert_id, "ack", scope=ALL, actor="a", actor_role="rm", note=None)

    def ids(page: object) -> list[str]:
        return [a["alert_id"] for a in page.alerts]  # type: ignore[attr-defined]

    assert ids(await store.list_alerts(ALL, AlertFilter(rm_id=rm))) == [
        other_client.alert_id,
        late.alert_id,
        early.alert_id,
    ]
    assert ids(await store.list_alerts(ALL, AlertFilter(rm_id=rm, statuses=("open",)))) == [
        other_client.alert_id,
        early.alert_id,
    ]
    assert ids(await store.list_alerts(ALL, AlertFilter(rm_id=rm, types=("complaint",)))) == [early.alert_id]
    since = T0 + timedelta(minutes=30)
    assert ids(await store.list_alerts(ALL, AlertFilter(rm_id=rm, since=since))) == [
        other_client.alert_id,
        late.alert_id,
    ]
    assert ids(await store.list_alerts(ALL, AlertFilter(client_id=client))) == [late.alert_id, early.alert_id]


async def test_snapshots_upsert_with_the_latest_winning(store: AlertStore) -> None:
    client = f"c-{uuid.uuid4().hex[:6]}"

    def snap(aum: str, rm: str | None, tier: str) -> ClientSnapshot:
        return ClientSnapshot.model_validate(
            {
                "client_id": client,
                "tier": tier,
                "aum": aum,
                "rm_id": rm,
                "segment": "retail",
                "last_activity": "2026-03-01T10:00:00+00:00",
                "last_rm_contact": None,
                "dormant": False,
                "closed": False,
                "as_of": "2026-03-01T10:00:00+00:00",
            }
        )

    assert await store.upsert_snapshots([snap("100.00", "rm-1", "mass"), snap("60000.50", "rm-2", "gold")]) == 1
    row = await store.get_client(client)
    assert row is not None
    assert (row["aum"], row["rm_id"], row["tier"]) == ("60000.50", "rm-2", "gold")
    assert Decimal(row["aum"]) == Decimal("60000.50")
    await store.upsert_snapshots([snap("600000.00", None, "platinum")])
    row = await store.get_client(client)
    assert row is not None and (row["aum"], row["rm_id"], row["tier"]) == ("600000.00", None, "platinum")
    assert row["last_rm_contact"] is None
    assert await store.get_client("c-never-seen") is None
