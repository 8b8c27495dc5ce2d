"""`clientpulse bench-api`: the workbench and the store at a bank's size (docs/performance.md, "The workbench").

1. A database of its own (`clientpulse_bench_api` on the server of DATABASE_URL, else 127.0.0.1:5432),
   migrated like the sink's, then loaded with COPY: by default 5,000,000 alerts over 1,000 RMs and
   200,000 clients, their audit trails (creation, acknowledgement, closing), the clients' snapshots.
   Most alerts are closed, as in a store that has run for a year; 5% are open or acknowledged, and
   the open ones past their due_by are already escalated, except those that fell due in the last
   minute: the work of one sweep.
2. The sink's HTTP app (the same app, runner and store code, without the Kafka consumer) in a child
   process; N users sign in through the sign-in page (sessions in PostgreSQL, as browsers do) and
   each one, with a think time between requests, opens its inbox's first page, an alert page and a
   client page (the timeline). p50/p95/p99 per page.
3. One escalation sweep over the whole store (marking, the outbox of pushes, the overdue count),
   timed.
Figures go to bench/results/api-*.json and are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

RESULTS_DIR = Path("bench/results")
TYPES = (
    ("large_outflow", 24),
    ("outflow_velocity", 72),
    ("aum_drain", 24),
    ("complaint", 24),
    ("large_inflow", 72),
    ("tier_upgrade", 72),
    ("tier_downgrade", 72),
    ("dormancy", 72),
    ("no_rm_contact", 72),
    ("new_client_first_txn", 24),
    ("product_maturity", 72),
    ("reactivation", 72),
)
TIERS = ("mass", "gold", "platinum", "diamond", "private")
OUTCOMES = ("contacted", "retained", "sold", "no_action_needed")
REASONS = ("false_positive", "not_relevant", "duplicate", "unreachable")
SEVERITY_POINTS = {"critical": 70, "warning": 40, "info": 10}
TIER_POINTS = {"private": 25, "diamond": 20, "platinum": 15, "gold": 5, "mass": 0}
PAGES = ("inbox", "alert", "client")


@dataclass
class ApiFigures:
    alerts: int = 0
    audit_records: int = 0
    rms: int = 0
    clients: int = 0
    users: int = 0
    think_seconds: float = 0.0
    load_seconds: float = 0.0
    index_seconds: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)
    p50_ms: dict[str, float] = field(default_factory=dict)
    p95_ms: dict[str, float] = field(default_factory=dict)
    p99_ms: dict[str, float] = field(default_factory=dict)
    errors: int = 0
    sweep_seconds: float = 0.0
    sweep_phases_ms: dict[str, float] = field(default_factory=dict)
    sweep_escalated: int = 0
    sweep_pushes: int = 0
    overdue_open: int = 0
    open_or_acknowledged: int = 0
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        rows = [
            (
                "store",
                f"{self.alerts:,} alerts, {self.audit_records:,} audit records, {self.rms:,} RMs, "
                f"{self.clients:,} clients ({self.open_or_acknowledged:,} open or acknowledged)",
            ),
            ("load (COPY) / indexes", f"{self.load_seconds:.0f} s / {self.index_seconds:.0f} s"),
            ("users", f"{self.users} signed in, think time {self.think_seconds:g} s"),
        ]
        for page in PAGES:
            rows.append(
                (
                    f"{page} page",
                    f"p50 {self.p50_ms.get(page, 0):.1f} ms, p95 {self.p95_ms.get(page, 0):.1f} ms, "
                    f"p99 {self.p99_ms.get(page, 0):.1f} ms ({self.requests.get(page, 0):,} requests)",
                )
            )
        rows.append(("errors", str(self.errors)))
        rows.append(
            (
                "escalation sweep",
                f"{self.sweep_seconds * 1000:.0f} ms: {self.sweep_escalated:,} escalated, "
                f"{self.sweep_pushes:,} pushes, {self.overdue_open:,} overdue counted "
                f"({', '.join(f'{k} {v:.0f} ms' for k, v in self.sweep_phases_ms.items())})",
            )
        )
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _admin_url() -> str:
    """The `postgres` database of DATABASE_URL's server, else of 127.0.0.1:5432."""
    return _with_database(os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres", "postgres")


# ---------------------------------------------------------------------- the data
def _alert_rows(
    offset: int, n: int, rms: int, clients: int, now: datetime
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(alert rows, audit rows) for COPY of alerts offset .. offset + n, deterministic for the offset."""
    rng = random.Random(offset)
    alerts: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    span = 365 * 86400
    for i in range(offset, offset + n):
        client = rng.randrange(clients)
        rm_id = f"rm-{client % rms:04d}" if client % 97 else None
        alert_type, sla = TYPES[rng.randrange(len(TYPES))]
        severity = ("critical", "warning", "info")[rng.randrange(3)]
        tier = TIERS[min(4, int(rng.expovariate(1.2)))]
        age = rng.random() ** 2 * span  # more recent alerts than old ones
        occurred = now - timedelta(seconds=age)
        due = occurred + timedelta(hours=sla)
        priority = min(
            100, SEVERITY_POINTS[severity] + TIER_POINTS[tier] + (5 if alert_type in ("complaint", "aum_drain") else 0)
        )
        stored = occurred + timedelta(seconds=2)
        roll = rng.random()
        outcome = acked = closed = escalated = sent = None
        if roll < 0.03 or (age < 86400 and roll < 0.5):
            status = "open"
            if due < now - timedelta(minutes=1):
                escalated = sent = due + timedelta(seconds=30)
        elif roll < 0.05 or (age < 86400 and roll < 0.7):
            status = "acknowledged"
            acked = occurred + timedelta(seconds=rng.expovariate(1 / (sla * 1800)))
        else:
            acked = occurred + timedelta(seconds=rng.expovariate(1 / (sla * 1800)))
            closed = acked + timedelta(seconds=rng.expovariate(1 / 7200))
            if rng.random() < 0.7:
                status, outcome = "resolved", OUTCOMES[rng.randrange(4)]
            else:
                status, outcome = "dismissed", REASONS[rng.randrange(4)]
        alert_id = f"b{i:011d}"
        amount = f"{rng.randrange(50_000, 5_000_000)}.00"
        alerts.append(
            (
                alert_id,
                alert_type,
                severity,
                f"c-{client:06d}",
                rm_id,
                tier,
                occurred,
                stored,
                f"Outflow of {int(float(amount)):,}.00 CNY to another bank",
                f'{{"amount": "{amount}", "limit": "500000.00", "counterparty_bank": "external"}}',
                "2026.1+bench",
                [f"e-{i}"],
                status,
                stored,
                closed or acked or stored,
                priority,
                due,
                outcome,
                acked,
                closed,
                escalated,
                sent,
            )
        )
        events.append((alert_id, stored, "clientpulse", "system", None, "open", None, "created", None))
        if escalated is not None:
            events.append((alert_id, escalated, "system", "system", "open", "open", None, "escalated", None))
        if acked is not None:
            events.append((alert_id, acked, rm_id or "maria", "rm", "open", "acknowledged", None, "ack", None))
        if closed is not None:
            action = "resolve" if status == "resolved" else "dismiss"
            events.append((alert_id, closed, rm_id or "maria", "rm", "acknowledged", status, "done", action, outcome))
    return alerts, events


ALERT_COLUMNS = (
    "alert_id",
    "type",
    "severity",
    "client_id",
    "rm_id",
    "tier",
    "occurred_at",
    "detected_at",
    "title",
    "facts",
    "rule_version",
    "source_event_ids",
    "status",
    "stored_at",
    "updated_at",
    "priority",
    "due_by",
    "outcome",
    "acknowledged_at",
    "closed_at",
    "escalated_at",
    "escalation_sent_at",
)
EVENT_COLUMNS = ("alert_id", "at", "actor", "actor_role", "from_status", "to_status", "note", "action", "outcome")


async def add_fresh_due(conn: Any, n: int, rms: int, clients: int, now: datetime) -> None:
    """The work of one sweep: open alerts that fell due in the last minute, not escalated yet."""
    run = int(now.timestamp())
    fresh = [
        (
            f"f{run}-{i:07d}",
            "complaint",
            "critical",
            f"c-{i % clients:06d}",
            f"rm-{i % clients % rms:04d}" if i % clients % 97 else None,
            "gold",
            now - timedelta(hours=24, seconds=30),
            now - timedelta(hours=24),
            "Complaint (high severity) via branch",
            '{"severity": "high", "channel": "branch", "tier": "gold"}',
            "2026.1+bench",
            [f"f-{run}-{i}"],
            "open",
            now - timedelta(hours=24),
            now - timedelta(hours=24),
            80,
            now - timedelta(seconds=30),
            None,
            None,
            None,
            None,
            None,
        )
        for i in range(n)
    ]
    await conn.copy_records_to_table("alerts", records=fresh, columns=ALERT_COLUMNS)
    await conn.copy_records_to_table(
        "alert_events",
        records=[(r[0], r[13], "clientpulse", "system", None, "open", None, "created", None) for r in fresh],
        columns=EVENT_COLUMNS,
    )


async def load(url: str, figures: ApiFigures, alerts: int, rms: int, clients: int, fresh_due: int) -> None:
    import asyncpg  # type: ignore[import-untyped]

    from streams.sink.store import AlertStore

    store = AlertStore(url)
    await store.connect()
    await store.migrate()
    await store.close()
    conn = await asyncpg.connect(url)
    try:
        # Load without the secondary indexes, then build them as the migrations define them.
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            " AND tablename IN ('alerts', 'alert_events', 'client_snapshots') AND indexname NOT LIKE '%pkey'"
        )
        for ix in indexes:
            await conn.execute(f'DROP INDEX "{ix["indexname"]}"')
        await conn.execute("ALTER TABLE alert_events DISABLE TRIGGER alert_events_no_change")
        now = datetime.now(UTC)
        started = time.perf_counter()
        chunk = 250_000
        for start in range(0, alerts, chunk):
            rows, events = _alert_rows(start, min(chunk, alerts - start), rms, clients, now)
            await conn.copy_records_to_table("alerts", records=rows, columns=ALERT_COLUMNS)
            await conn.copy_records_to_table("alert_events", records=events, columns=EVENT_COLUMNS)
            figures.audit_records += len(events)
            print(f"  loaded {start + len(rows):,} alerts", flush=True)
        await add_fresh_due(conn, fresh_due, rms, clients, now)
        snapshots = [
            (
                f"c-{c:06d}",
                TIERS[c % 5],
                f"{(c * 7919) % 9_000_000}.00",
                f"rm-{c % rms:04d}" if c % 97 else None,
                "retail",
                now - timedelta(days=c % 90),
                now - timedelta(days=c % 120),
                False,
                False,
                now,
                now,
            )
            for c in range(clients)
        ]
        await conn.copy_records_to_table(
            "client_snapshots",
            records=snapshots,
            columns=(
                "client_id",
                "tier",
                "aum",
                "rm_id",
                "segment",
                "last_activity",
                "last_rm_contact",
                "dormant",
                "closed",
                "as_of",
                "updated_at",
            ),
        )
        figures.load_seconds = time.perf_counter() - started
        await conn.execute("ALTER TABLE alert_events ENABLE TRIGGER alert_events_no_change")
        started = time.perf_counter()
        for ix in indexes:
            await conn.execute(ix["indexdef"])
        await conn.execute("VACUUM (ANALYZE)")  # what autovacuum does on a store that has run for a while
        figures.index_seconds = time.perf_counter() - started
        figures.alerts = alerts + fresh_due
        figures.audit_records += fresh_due
        figures.open_or_acknowledged = await conn.fetchval(
            "SELECT count(*) FROM alerts WHERE status IN ('open', 'acknowledged')"
        )
    finally:
        await conn.close()


# ---------------------------------------------------------------------- the server
def _serve(url: str, port: int, tokens_json: str, ready: Any) -> None:
    from aiohttp import web

    from streams.api.app import create_api
    from streams.api.auth import Principals, parse_token_config
    from streams.api.server import ApiRunner
    from streams.settings import Settings
    from streams.sink.store import AlertStore

    async def main() -> None:
        store = AlertStore(url, max_size=20)
        await store.connect()
        await store.migrate()
        settings = Settings(session_cookie_secure=False, auth_failure_burst=10_000)
        app = create_api(store, Principals(parse_token_config(tokens_json)), settings=settings)
        runner = ApiRunner(app, header_timeout=10)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


# ---------------------------------------------------------------------- the users
async def _user(
    base: str, token: str, rm_id: str, url: str, think: float, until: float, seed: int, samples: dict[str, list[float]]
) -> int:
    import aiohttp
    import asyncpg

    rng = random.Random(seed)
    conn = await asyncpg.connect(url)
    try:
        mine = await conn.fetch(
            # The RM's work on its own clients (a client moved to another RM is rightly not found for it).
            "SELECT a.alert_id, a.client_id FROM alerts a JOIN client_snapshots s USING (client_id)"
            " WHERE a.rm_id = $1 AND s.rm_id = $1 AND a.status IN ('open', 'acknowledged') LIMIT 200",
            rm_id,
        )
    finally:
        await conn.close()
    errors = 0
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{base}/signin") as resp:
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
        assert csrf is not None
        for _ in range(30):
            # People do not all sign in at the same instant: a 429 (token checks queued) waits its Retry-After.
            form = {"csrf_token": csrf[1], "token": token}
            async with http.post(f"{base}/signin", data=form, allow_redirects=False) as r:
                if r.status == 303:
                    break
                if r.status != 429:
                    raise RuntimeError(f"sign-in failed: {r.status}")
                await asyncio.sleep(float(r.headers.get("Retry-After", "1")) * rng.random() + 0.1)
        else:
            raise RuntimeError("sign-in still refused after 30 tries")
        while time.monotonic() < until:
            await asyncio.sleep(rng.expovariate(1 / think) if think > 0 else 0)
            page = PAGES[rng.randrange(3)]
            if page == "inbox" or not mine:
                path = "/inbox"
                page = "inbox"
            else:
                alert_id, client_id = mine[rng.randrange(len(mine))]
                path = f"/alerts/{alert_id}" if page == "alert" else f"/clients/{client_id}"
            started = time.perf_counter()
            async with http.get(f"{base}{path}", allow_redirects=False) as resp:
                await resp.read()
                ok = resp.status == 200
            elapsed = time.perf_counter() - started
            if ok:
                samples[page].append(elapsed * 1000)
            else:
                errors += 1
                samples.setdefault("failed", []).append(float(resp.status))
                print(f"  {path}: HTTP {resp.status}", flush=True)
    return errors


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(url: str, figures: ApiFigures, users: int, seconds: float, think: float, rms: int) -> None:
    from streams.api.auth import hash_token
    from streams.tools.embedded import free_port, wait_for_port

    people = [
        (f"user{i:03d}", f"rm-{(i * (rms // max(1, users))) % rms:04d}", f"bench-token-{i:03d}-{os.urandom(8).hex()}")
        for i in range(users)
    ]
    tokens_json = json.dumps(
        {"tokens": [{"name": n, "role": "rm", "rm_id": rm, "hash": hash_token(t, log2_n=10)} for n, rm, t in people]}
    )
    port = free_port()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    server = ctx.Process(target=_serve, args=(url, port, tokens_json, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the workbench server did not start")
        wait_for_port("127.0.0.1", port)
        base = f"http://127.0.0.1:{port}"
        samples: dict[str, list[float]] = {p: [] for p in PAGES}
        until = time.monotonic() + seconds
        errors = await asyncio.gather(
            *(_user(base, t, rm, url, think, until, i, samples) for i, (_, rm, t) in enumerate(people))
        )
        figures.errors = sum(errors)
        for page in PAGES:
            figures.requests[page] = len(samples[page])
            figures.p50_ms[page] = round(_quantile(samples[page], 0.50), 2)
            figures.p95_ms[page] = round(_quantile(samples[page], 0.95), 2)
            figures.p99_ms[page] = round(_quantile(samples[page], 0.99), 2)
    finally:
        server.terminate()
        server.join(10)


async def sweep(url: str, figures: ApiFigures) -> None:
    """One escalation sweep as the sink runs it; the pushes are built and serialized, not sent to a broker."""
    from streams.sink.escalation import SEND_BATCH, SWEEP_BATCH, pushes_for
    from streams.sink.store import AlertStore

    store = AlertStore(url)
    await store.connect()
    try:
        managers = {f"rm-{i:04d}": [f"manager-{i // 10:03d}"] for i in range(figures.rms)}
        pushes = 0

        async def send(alerts: list[dict[str, Any]]) -> None:
            nonlocal pushes
            for alert in alerts:
                for push in pushes_for(alert, managers):
                    push.model_dump_json()
                    pushes += 1

        now = datetime.now(UTC)
        started = time.perf_counter()
        escalated = 0
        while True:
            n = await store.escalate_due(now, limit=SWEEP_BATCH)
            escalated += n
            if n < SWEEP_BATCH:
                break
        marked = time.perf_counter()
        while await store.send_escalations(send, limit=SEND_BATCH) == SEND_BATCH:
            pass
        sent = time.perf_counter()
        overdue = await store.overdue_by_type(now)
        done = time.perf_counter()
        figures.sweep_seconds = done - started
        figures.sweep_phases_ms = {
            "mark": round((marked - started) * 1000, 1),
            "pushes": round((sent - marked) * 1000, 1),
            "overdue_count": round((done - sent) * 1000, 1),
        }
        figures.sweep_escalated, figures.sweep_pushes = escalated, pushes
        figures.overdue_open = sum(overdue.values())
    finally:
        await store.close()


async def explain(url: str, rm_id: str) -> dict[str, str]:
    """The query plans of the three pages' main queries, for the record."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        client = await conn.fetchval("SELECT client_id FROM alerts WHERE rm_id = $1 LIMIT 1", rm_id)
        plans = {}
        for name, sql, args in (
            (
                "inbox",
                "SELECT * FROM alerts a WHERE a.rm_id = ANY($1::text[]) AND a.status IN ('open', 'acknowledged')"
                " ORDER BY a.priority DESC, a.occurred_at DESC, a.alert_id DESC LIMIT 51",
                [[rm_id]],
            ),
            (
                "timeline",
                "SELECT * FROM alerts a WHERE a.client_id = $1 AND a.rm_id = ANY($2::text[])"
                " ORDER BY a.occurred_at DESC, a.alert_id DESC LIMIT 101",
                [client, [rm_id]],
            ),
            (
                "escalation",
                "SELECT alert_id FROM alerts WHERE status = 'open' AND escalated_at IS NULL AND due_by < now()"
                " ORDER BY due_by LIMIT 10000",
                [],
            ),
        ):
            rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
            plans[name] = "\n".join(r[0] for r in rows)
        return plans
    finally:
        await conn.close()


def run_bench_api(args: argparse.Namespace) -> int:
    import asyncpg

    admin = _admin_url()
    db_name = args.database
    url = _with_database(admin, db_name)
    figures = ApiFigures(rms=args.rms, clients=args.clients, users=args.users, think_seconds=args.think)

    async def prepare() -> None:
        conn = await asyncpg.connect(admin)
        try:
            if not args.reuse:
                await conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
                await conn.execute(f'CREATE DATABASE "{db_name}"')
        finally:
            await conn.close()

    asyncio.run(prepare())
    if not args.reuse:
        print(f"loading {args.alerts:,} alerts into {db_name} ...", flush=True)
        asyncio.run(load(url, figures, args.alerts, args.rms, args.clients, args.fresh_due))
    else:
        figures.notes.append("reused the loaded database")

        async def count() -> None:
            conn = await asyncpg.connect(url)
            try:
                await add_fresh_due(conn, args.fresh_due, args.rms, args.clients, datetime.now(UTC))
                figures.alerts = await conn.fetchval("SELECT count(*) FROM alerts")
                figures.audit_records = await conn.fetchval("SELECT count(*) FROM alert_events")
                figures.open_or_acknowledged = await conn.fetchval(
                    "SELECT count(*) FROM alerts WHERE status IN ('open', 'acknowledged')"
                )
            finally:
                await conn.close()

        asyncio.run(count())
    print("measuring the pages ...", flush=True)
    asyncio.run(measure(url, figures, args.users, args.seconds, args.think, args.rms))
    print("one escalation sweep ...", flush=True)
    asyncio.run(sweep(url, figures))
    plans = asyncio.run(explain(url, "rm-0001"))
    figures.notes.append(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores")
    print(figures.table())
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS_DIR / f"api-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_bytes(orjson.dumps({**asdict(figures), "plans": plans}, option=orjson.OPT_INDENT_2))
    print(f"figures written to {out}")
    if not args.keep:

        async def drop() -> None:
            conn = await asyncpg.connect(admin)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            finally:
                await conn.close()

        asyncio.run(drop())
    return 0 if figures.errors == 0 else 1
