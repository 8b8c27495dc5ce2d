"""A replay split by client gives one process's alerts, in its order (docs/events.md, "Replay file").

The shards run here one after the other in this process (the CLI's worker
processes and separate jobs are tested in tests/integration/test_backtest_shards.py).
"""

from __future__ import annotations

import heapq
import zlib
from collections import Counter
from datetime import UTC, datetime
from operator import itemgetter

import orjson
import pytest

from handlers.alerting import alert_json
from handlers.jsonbytes import dumps
from handlers.notify import NotifyReplay
from handlers.replay import MAX_REPORTED_PROBLEMS, Replay, ReplaySummary, Shard, shard_of
from handlers.ruleset import Ruleset
from schemas.alerts import ALERT_TYPES, Alert
from streams.tools.sharding import ShardSpecError, parse_shard
from tests import sharding_history
from tests.sharding_history import LATE_DEAD_LETTER_AT, UNTIL

DETECTED_AT = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return sharding_history.lines()


def whole(rules: Ruleset, lines: list[bytes], until: datetime | None) -> tuple[list[Alert], Replay]:
    replay = Replay(rules, detected_at=DETECTED_AT)
    return list(replay.run_lines(lines, until)), replay


def sharded(rules: Ruleset, lines: list[bytes], count: int, until: datetime | None) -> tuple[list[Alert], list[Replay]]:
    replays = [Replay(rules, detected_at=DETECTED_AT, shard=Shard(k, count)) for k in range(count)]
    parts = [list(r.run_ordered(lines, until)) for r in replays]
    return [alert for _key, alert in heapq.merge(*parts, key=itemgetter(0))], replays


# ------------------------------------------------------------------ who owns a record
def test_a_record_goes_to_the_crc32_of_its_key_and_keyless_ones_to_shard_0() -> None:
    keys = [f"c-{i:06d}".encode() for i in range(4000)]
    for count in (2, 3, 7):
        owners = Counter(shard_of(key, count) for key in keys)
        assert set(owners) == set(range(count))
        assert min(owners.values()) > 0.8 * len(keys) / count, owners  # about even
        assert all(shard_of(key, count) == zlib.crc32(key) % count for key in keys[:50])
        assert shard_of(None, count) == 0
    assert {shard_of(key, 1) for key in keys} == {0}


@pytest.mark.parametrize(("text", "index", "count"), [("0/1", 0, 1), ("0/4", 0, 4), ("3/4", 3, 4), (" 2/3 ", 2, 3)])
def test_a_shard_is_k_of_n_with_k_from_0(text: str, index: int, count: int) -> None:
    assert parse_shard(text) == Shard(index, count)


@pytest.mark.parametrize(
    ("text", "says"),
    [("4/4", "0 to 3"), ("1/0", "N must be"), ("2", "K/N"), ("a/3", "whole numbers"), ("-1/3", "0 to 2"), ("", "K/N")],
)
def test_a_shard_that_does_not_exist_is_refused_with_the_range(text: str, says: str) -> None:
    with pytest.raises(ShardSpecError, match=says):
        parse_shard(text)


def test_a_shard_object_checks_its_index() -> None:
    with pytest.raises(ValueError, match="from 0 to 2"):
        Shard(3, 3)


# ------------------------------------------------------------------ summaries
def test_summaries_merge_by_adding_counts_and_keep_the_first_problems_by_line() -> None:
    a, b = ReplaySummary(), ReplaySummary()
    a.events_by_topic.update({"bank.transactions.v1": 5, "bank.clients.v1": 1})
    b.events_by_topic.update({"bank.transactions.v1": 2})
    a.alerts_by_type.update({("dormancy", "warning"): 3})
    b.alerts_by_type.update({("dormancy", "warning"): 1, ("complaint", "critical"): 2})
    a.suppressed.update({("large_inflow", "consent"): 1})
    b.dead_letters.update({"schema": 2})
    a.duplicates, b.duplicates, a.erased, b.bad_lines = 1, 2, 1, 4
    for n in range(0, 2 * MAX_REPORTED_PROBLEMS, 2):
        a.problem(n + 1, "odd line")
        b.problem(n + 2, "even line")
    merged = ReplaySummary.from_json(orjson.loads(orjson.dumps(a.to_json())))
    merged.merge(ReplaySummary.from_json(orjson.loads(orjson.dumps(b.to_json()))))
    assert merged.events_by_topic == Counter({"bank.transactions.v1": 7, "bank.clients.v1": 1})
    assert merged.alerts_by_type == Counter({("dormancy", "warning"): 4, ("complaint", "critical"): 2})
    assert merged.alerts == 6
    assert merged.suppressed == a.suppressed and merged.dead_letters == b.dead_letters
    assert (merged.duplicates, merged.erased, merged.bad_lines) == (3, 1, 4)
    assert merged.problems[:3] == ["line 1: odd line", "line 2: even line", "line 3: odd line"]
    assert len(merged.problems) == MAX_REPORTED_PROBLEMS
    assert merged.problems[-1] == f"line {MAX_REPORTED_PROBLEMS}: even line"


def test_a_summary_reads_back_what_it_wrote() -> None:
    summary = ReplaySummary()
    summary.alerts_by_type.update({("tier_upgrade", "info"): 2})
    summary.suppressed.update({("birthday", "snoozed"): 1})
    summary.problem(9, "dead letter (schema): amount: must be > 0")
    assert ReplaySummary.from_json(summary.to_json()) == summary


# ------------------------------------------------------------------ the shards' union is the whole
def test_the_history_exercises_every_rule_and_every_kind_of_line(rules: Ruleset, lines: list[bytes]) -> None:
    alerts, replay = whole(rules, lines, UNTIL)
    assert sorted({a.type for a in alerts}) == sorted(ALERT_TYPES)
    summary = replay.summary
    assert summary.bad_lines == 2 and summary.erased == 1
    assert summary.dead_letters["key_mismatch"] == 1 and summary.dead_letters["schema"] == 3


@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize("until", [UNTIL, None], ids=["until", "no-until"])
def test_shards_give_the_whole_replays_alerts_in_its_order(
    rules: Ruleset, lines: list[bytes], count: int, until: datetime | None
) -> None:
    expected, replay = whole(rules, lines, until)
    merged, replays = sharded(rules, lines, count, until)
    assert all(r.summary.alerts > 0 for r in replays), "every shard has clients"
    assert [alert_json(a) for a in merged] == [alert_json(a) for a in expected]
    assert {r.watermark for r in replays} == {replay.watermark}
    assert {r.events_clock for r in replays} == {replay.events_clock}
    summary = ReplaySummary()
    for r in replays:
        summary.merge(r.summary)
    assert summary.to_json() == replay.summary.to_json()


def test_a_late_dead_letter_moves_no_shards_clock(rules: Ruleset, lines: list[bytes]) -> None:
    """Without --until the clock ends at the last event; the dead letter dated after it counts nowhere."""
    _alerts, replay = whole(rules, lines, None)
    late = datetime.fromisoformat(LATE_DEAD_LETTER_AT)
    assert 0 < replay.watermark < int(late.timestamp() * 1_000_000)
    _merged, replays = sharded(rules, lines, 2, None)
    owner = shard_of(b"c-000007", 2)
    assert replays[1 - owner].watermark == replay.watermark, "the other shard read the dead letter's time and held it"


def test_shards_of_an_unsorted_history_agree_with_the_whole(rules: Ruleset, lines: list[bytes]) -> None:
    """Even out of time order (where the contract promises less) the shards see the same clock at every record."""
    shuffled = lines[::2] + lines[1::2]
    expected, _replay = whole(rules, shuffled, UNTIL)
    merged, _replays = sharded(rules, shuffled, 3, UNTIL)
    assert [alert_json(a) for a in merged] == [alert_json(a) for a in expected]


def test_the_merged_sequence_gives_the_same_notifications(rules: Ruleset, lines: list[bytes]) -> None:
    def notifications(alerts: list[Alert], clock: int) -> list[bytes]:
        notifier = NotifyReplay(rules)
        out = [dumps(o.record(full=False)) for a in alerts for o in notifier.feed([a])]
        return out + [dumps(o.record(full=False)) for o in notifier.finish(clock)]

    expected, replay = whole(rules, lines, UNTIL)
    merged, _replays = sharded(rules, lines, 2, UNTIL)
    pushes = notifications(expected, replay.watermark)
    assert any(b'"digest"' in p for p in pushes) and any(b'"push"' in p for p in pushes)
    assert notifications(merged, replay.watermark) == pushes
