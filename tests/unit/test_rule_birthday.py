"""Birthday (docs/rules.md, "Birthday"): once a year at 00:00 bank time, `notice_days` before the birthday.

Thresholds of tests/rules/thresholds.yaml: the bank's time zone is Asia/Kolkata
(+05:30 all year, so a local midnight is 18:30 UTC the day before), the notice
is 5 days, clients at diamond (AUM 1,000,000) or above are greeted; diamond is
left below 800,000. A birthday on 20 March is therefore due at 2026-03-14
18:30 UTC.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest

from handlers.decode import Rejection, dead_letter
from handlers.ruleset import Ruleset, parse_rules
from handlers.timeutil import to_us
from schemas.topics import CLIENTS
from tests.unit.builders import THRESHOLDS, Desk, at, client_event, deposit, of_type, one, tx

US = timedelta(microseconds=1)
KOLKATA = ZoneInfo("Asia/Kolkata")


def local_midnight(year: int, month: int, day: int, zone: ZoneInfo = KOLKATA) -> datetime:
    return datetime(year, month, day, tzinfo=zone).astimezone(UTC)


DUE_2026 = local_midnight(2026, 3, 15)  # 20 March less 5 days
DUE_2027 = local_midnight(2027, 3, 15)


def diamond(desk: Desk, when: datetime, birth_date: str | None = "1980-03-20", **kw: object) -> None:
    """Onboard a client with AUM 1,200,000 (diamond) and, unless None, a birth date."""
    fields = {"birth_date": birth_date} if birth_date is not None else {}
    desk.send(client_event(when, "onboarded", rm_id="rm-1", **fields, **kw), deposit(when, "1200000"))


def birthdays(desk: Desk, until: datetime) -> list[datetime]:
    return [a.occurred_at for a in of_type(desk.advance(until), "birthday")]


def test_due_at_local_midnight_notice_days_before_once_a_year(rules: Ruleset) -> None:
    assert datetime(2026, 3, 14, 18, 30, tzinfo=UTC) == DUE_2026
    desk = Desk(rules)
    diamond(desk, at())
    assert birthdays(desk, DUE_2026 - US) == []
    alert = one(desk.advance(DUE_2026), "birthday")
    assert alert.occurred_at == DUE_2026 and alert.severity == "info" and alert.tier == "diamond"
    assert alert.facts == {"birthday": "03-20", "tier": "diamond", "notice_days": "5", "due_at": DUE_2026.isoformat()}
    assert alert.source_event_ids == []
    assert alert.titles == {
        "en": "Birthday in 5 days (20 March): send greetings",
        "zh-CN": "客户 5 天后（3月20日）生日，请送上祝福",
    }
    assert birthdays(desk, DUE_2026 + US) == []
    assert birthdays(desk, DUE_2027 - US) == []
    assert birthdays(desk, DUE_2027) == [DUE_2027]


@pytest.mark.parametrize(("set_at", "first"), [(DUE_2026 - US, DUE_2026), (DUE_2026, DUE_2027)])
def test_the_first_due_time_is_strictly_after_the_event(rules: Ruleset, set_at: datetime, first: datetime) -> None:
    desk = Desk(rules)
    diamond(desk, at(), birth_date=None)
    desk.send(client_event(set_at, "profile_updated", birth_date="1980-03-20"))
    expected = [DUE_2026, DUE_2027] if first == DUE_2026 else [DUE_2027]
    assert birthdays(desk, DUE_2027) == expected


def test_a_due_time_already_past_is_not_caught_up(rules: Ruleset) -> None:
    desk = Desk(rules)
    diamond(desk, datetime(2026, 3, 16, tzinfo=UTC))  # after this year's due time, before the birthday
    assert birthdays(desk, DUE_2027) == [DUE_2027]


def test_29_february_counts_as_28_february_in_other_years(rules: Ruleset) -> None:
    desk = Desk(rules)
    diamond(desk, datetime(2026, 1, 5, tzinfo=UTC), birth_date="1992-02-29")
    found = of_type(desk.advance(datetime(2028, 3, 1, tzinfo=UTC)), "birthday")
    assert [a.occurred_at for a in found] == [
        local_midnight(2026, 2, 23),  # 28 February less 5 days
        local_midnight(2027, 2, 23),
        local_midnight(2028, 2, 24),  # 2028 has a 29 February
    ]
    assert {a.facts["birthday"] for a in found} == {"02-29"}


@pytest.mark.parametrize(
    ("zone", "birth_date", "due"),
    [
        ("America/New_York", "1970-07-20", datetime(2026, 7, 15, 4, tzinfo=UTC)),  # EDT, -04:00
        ("America/New_York", "1970-01-20", datetime(2027, 1, 15, 5, tzinfo=UTC)),  # EST, -05:00
        ("UTC", "1970-07-20", datetime(2026, 7, 15, tzinfo=UTC)),
        ("Asia/Kolkata", "1970-07-20", datetime(2026, 7, 14, 18, 30, tzinfo=UTC)),
    ],
)
def test_midnight_in_the_banks_time_zone(zone: str, birth_date: str, due: datetime) -> None:
    rules = parse_rules(THRESHOLDS.read_text().replace("timezone: Asia/Kolkata", f"timezone: {zone}"))
    assert rules.timezone.key == zone
    desk = Desk(rules)
    diamond(desk, at(), birth_date=birth_date)
    assert birthdays(desk, due - US) == []
    assert birthdays(desk, due) == [due]


def test_the_tier_is_the_tier_at_the_due_time(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(client_event(at(), "onboarded", birth_date="1980-03-20"), deposit(at(), "500000"))  # platinum
    desk.send(deposit(at(days=5), "600000"))  # diamond before the due time
    assert one(desk.advance(DUE_2026), "birthday").facts["tier"] == "diamond"

    desk = Desk(rules)
    diamond(desk, at())
    desk.send(tx(at(days=5), "500000", bank="internal"))  # 700,000: platinum before the due time
    assert desk.state().tier == "platinum"
    assert birthdays(desk, DUE_2026) == [], "not greeted below diamond"
    desk.send(deposit(at(days=100), "400000"))  # diamond again by next year
    assert birthdays(desk, DUE_2027) == [DUE_2027]


def test_a_client_who_declined_marketing_is_not_greeted(rules: Ruleset) -> None:
    desk = Desk(rules)
    diamond(desk, at(), contact_preference="service_only")
    assert birthdays(desk, DUE_2026) == []
    assert desk.suppressions == [("birthday", "consent")]
    desk.send(client_event(at(days=30), "profile_updated", contact_preference="any"))
    assert birthdays(desk, DUE_2027) == [DUE_2027]


def test_never_for_a_closed_client_and_no_catch_up_on_reopening(rules: Ruleset) -> None:
    desk = Desk(rules)
    diamond(desk, at())
    desk.send(client_event(at(days=1), "closed"))
    assert birthdays(desk, DUE_2026 + timedelta(days=2)) == []
    desk.send(client_event(DUE_2026 + timedelta(days=2), "onboarded"))  # reopened after the due time
    assert birthdays(desk, DUE_2027) == [DUE_2027]


def test_changed_cleared_and_left_out(rules: Ruleset) -> None:
    desk = Desk(rules)
    diamond(desk, at())
    desk.send(client_event(at(days=1), "profile_updated", birth_date="1980-04-10"))
    assert birthdays(desk, local_midnight(2026, 4, 5)) == [local_midnight(2026, 4, 5)]
    desk.send(client_event(at(days=60), "profile_updated", segment="corporate"))  # no birth_date: kept
    desk.send(client_event(at(days=61), "profile_updated", birth_date="1980-04-10"))  # the same: schedule kept
    assert desk.state().birthday_due == to_us(local_midnight(2027, 4, 5))
    desk.send(client_event(at(days=62), "profile_updated", birth_date=None))  # cleared
    assert desk.state().birthday is None
    assert birthdays(desk, datetime(2028, 1, 1, tzinfo=UTC)) == []


def test_the_year_is_never_kept(rules: Ruleset) -> None:
    desk = Desk(rules)
    diamond(desk, at(), birth_date="1957-03-20")
    state = desk.state()
    assert state.birthday == "03-20"
    assert b"1957" not in state.to_bytes()
    assert all("1957" not in repr(getattr(state, f)) for f in state.__struct_fields__)
    assert state.snapshot()["birthday"] == "03-20"
    alert = one(desk.advance(DUE_2026), "birthday")
    assert "1957" not in alert.model_dump_json()


def test_a_birth_date_without_its_year(rules: Ruleset) -> None:
    desk = Desk(rules)
    diamond(desk, at(), birth_date="--03-20")
    assert desk.state().birthday == "03-20"
    assert birthdays(desk, DUE_2026) == [DUE_2026]
    desk = Desk(rules)
    diamond(desk, datetime(2026, 1, 5, tzinfo=UTC), birth_date="--02-29")
    assert birthdays(desk, datetime(2026, 3, 1, tzinfo=UTC)) == [local_midnight(2026, 2, 23)]


@pytest.mark.parametrize(
    "birth_date",
    ["1980-02-30", "1981-02-29", "1899-12-31", "80-03-20", "1980-3-20", "--02-30", "1980/03/20", 19800320, ""],
)
def test_bad_birth_dates_are_dead_letters(rules: Ruleset, birth_date: object) -> None:
    problem = Desk(rules).reject(client_event(at(), "onboarded", birth_date=birth_date))
    assert problem.startswith("schema: birth_date"), problem


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event_id": "k-1", "kind": "merged", "birth_date": "1957-03-20"}',
        b'{"event_id":"k-1","kind":"merged","birth_date" : "1957-03-20"}',
        b'{"event_id": "k-1", "kind": "merged", "birth\\u005fdate": "1957-03-20"}',
        b'{"event_id": "k-1", "kind": "merged", "birth_date": "\\u0031957-03-20"}',
        b'{"event_id": "k-1", "birth_date": "1957-03-20", "kind": "merged", "x": "\\u00e9\xff"}',
        b'{"birth_date": "1957-03-20", not json',
    ],
)
def test_a_dead_letter_keeps_the_birth_date_without_its_year(raw: bytes) -> None:
    letter = dead_letter(CLIENTS, 0, 7, b"c-1", raw, Rejection("schema", "kind: bad"), datetime(2030, 1, 1, tzinfo=UTC))
    kept = base64.b64decode(letter.raw) if letter.raw_encoding == "base64" else letter.raw.encode()
    assert b"1957" not in kept and b"03-20" in kept, kept
    if b"not json" not in raw and b"\xff" not in raw:
        assert orjson.loads(kept)["birth_date"] == "--03-20"  # a form events accept: the letter can be re-driven
