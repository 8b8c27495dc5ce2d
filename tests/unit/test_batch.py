"""The batch processor: records on the wrong partition, tombstones, sweeps, and what it derives per partition.

Thresholds of tests/rules/thresholds.yaml: tier floors gold 10,000, platinum
100,000 CNY; single limits mass 10,000, platinum 100,000; dormancy 100 days.
"""

from __future__ import annotations

from datetime import timedelta

import orjson

from handlers.batch import BatchProcessor, BatchResult, Record
from handlers.ruleset import Ruleset
from handlers.state import ClientState
from handlers.timeutil import to_us
from schemas.topics import CLIENTS, INTERACTIONS, TRANSACTIONS
from tests.unit.builders import DETECTED_AT, at, client_event, deposit, interaction, record, tx

HOME = 3


def _records(*values: dict[str, object], partition: int = HOME) -> list[Record]:
    out = []
    for offset, value in enumerate(values):
        topic, key, body = record(value)
        out.append(Record(topic, partition, offset, key.encode(), orjson.dumps(body)))
    return out


class Stored(dict[str, ClientState]):
    """The states a worker would have written, keyed by client."""

    def keep(self, result: BatchResult) -> None:
        for client_id, entry in result.touched.items():
            self[client_id] = entry.state
        for client_id in result.erased:
            self.pop(client_id, None)


def _run(
    processor: BatchProcessor,
    stored: Stored,
    records: list[Record],
    ticks: dict[int, int] | None = None,
    reading: dict[int, set[str]] | None = None,
) -> BatchResult:
    result = processor.process(records, stored.get, wall_now=0, received_at=DETECTED_AT, ticks=ticks, reading=reading)
    stored.keep(result)
    processor.settle(result)
    return result


def test_a_record_off_its_keys_partition_is_a_dead_letter_naming_the_producer_setting(rules: Ruleset) -> None:
    processor = BatchProcessor(rules, clock="event", home_partition=lambda topic, key: HOME)
    stored = Stored()
    result = _run(processor, stored, _records(deposit(at(), "1000"), partition=HOME + 1))
    assert result.touched == {} and result.alerts == []
    [(key, letter)] = result.dead_letters
    assert key == b"c-1" and letter.reason == "wrong_partition" and letter.partition == HOME + 1
    assert "partitioner=murmur2_random" in letter.error and f"partition {HOME}" in letter.error
    assert result.counts.rejected == {(TRANSACTIONS, "wrong_partition"): 1}
    good = _run(processor, stored, _records(deposit(at(), "1000")))
    assert good.dead_letters == [] and stored["c-1"].aum == 100_000


def test_a_client_counts_once_in_its_tier_however_many_batches_touch_it(rules: Ruleset) -> None:
    processor = BatchProcessor(rules, clock="event")
    stored = Stored()
    _run(processor, stored, _records(client_event(at(), "onboarded", rm_id="rm-1"), deposit(at(hours=1), "600000")))
    for hours in (2, 3):
        _run(processor, stored, _records(deposit(at(hours=hours), "10")))
    totals = processor.tier_totals()
    assert totals["platinum"] == 1 and sum(totals.values()) == 1, totals


def test_a_tombstone_erases_the_client_and_its_due_clock_rules(rules: Ruleset) -> None:
    processor = BatchProcessor(rules, clock="event")
    stored = Stored()
    _run(processor, stored, _records(client_event(at(), "onboarded", rm_id="rm-1"), deposit(at(hours=1), "600000")))
    assert "c-1" in stored and len(processor.indexes[HOME]) == 1
    assert processor.tier_totals()["platinum"] == 1

    result = _run(processor, stored, [Record(CLIENTS, HOME, 9, b"c-1", None)])
    assert result.erased == {"c-1": HOME} and result.counts.erased == 1
    assert "c-1" not in stored and len(processor.indexes[HOME]) == 0
    assert processor.tier_totals()["platinum"] == 0
    # Nothing of it comes due any more, however far the clock goes.
    assert _run(processor, stored, [], ticks={HOME: to_us(at(days=400))}).alerts == []


def test_a_client_erased_and_seen_again_in_one_batch_starts_afresh(rules: Ruleset) -> None:
    processor = BatchProcessor(rules, clock="event")
    stored = Stored()
    _run(processor, stored, _records(client_event(at(), "onboarded", rm_id="rm-1"), deposit(at(hours=1), "600000")))
    erase = Record(CLIENTS, HOME, 5, b"c-1", None)
    again = _records(deposit(at(hours=2), "1000"))[0]
    result = _run(processor, stored, [erase, again])
    assert result.erased == {}  # the new state is written instead
    state = stored["c-1"]
    assert state.aum == 100_000 and state.rm_id is None and state.onboarded_at is None
    assert processor.tier_totals() == {"mass": 1, "gold": 0, "platinum": 0, "diamond": 0, "private": 0}


def test_null_values_elsewhere_and_tombstones_without_a_client_key_are_dead_letters(rules: Ruleset) -> None:
    processor = BatchProcessor(rules, clock="event")
    result = _run(
        processor,
        Stored(),
        [
            Record(TRANSACTIONS, HOME, 1, b"c-1", None),
            Record(CLIENTS, HOME, 2, b"\xff\xfe", None),
            Record(CLIENTS, HOME, 3, None, None),
        ],
    )
    assert [letter.reason for _, letter in result.dead_letters] == ["empty", "key_mismatch", "empty"]
    assert result.erased == {}


def test_a_tick_sweeps_only_its_partition_and_the_event_clock_moves(rules: Ruleset) -> None:
    processor = BatchProcessor(rules, clock="event")
    stored = Stored()
    onboard = client_event(at(), "onboarded", client="c-2")
    _run(processor, stored, _records(onboard, partition=1) + _records(client_event(at(), "onboarded"), partition=2))
    later = to_us(at(days=181))
    swept = _run(processor, stored, [], ticks={1: later})
    assert [(a.client_id, a.type) for a in swept.alerts] == [("c-2", "dormancy")]
    assert processor.clocks[1] == later and processor.clocks[2] == to_us(at())
    assert swept.clocks_moved == {1}


def test_the_wall_clock_is_the_callers(rules: Ruleset) -> None:
    processor = BatchProcessor(rules, clock="wall")
    stored = Stored()
    _run(processor, stored, _records(client_event(at(), "onboarded")))
    now = to_us(at(days=181))
    result = processor.process([], stored.get, wall_now=now, received_at=DETECTED_AT, ticks={HOME: 0})
    assert [a.type for a in result.alerts] == ["dormancy"]
    assert processor.clocks == {}


def test_a_kept_partition_adds_recovered_states_without_counting_twice(rules: Ruleset) -> None:
    processor = BatchProcessor(rules, clock="event")
    gold = ClientState("c-1", tier="gold", last_activity=to_us(at()))
    processor.recovered(HOME, [gold], kept=False)
    processor.recovered(HOME, [gold], kept=True)
    assert processor.tier_totals()["gold"] == 1
    assert len(processor.indexes[HOME]) == 1
    processor.keep_partitions({HOME + 1})
    assert processor.tier_totals()["gold"] == 0 and HOME not in processor.indexes


def test_records_are_applied_in_order_within_a_batch(rules: Ruleset) -> None:
    processor = BatchProcessor(rules, clock="event")
    stored = Stored()
    values = [deposit(at(), "200000"), tx(at(minutes=1), "110000", bank="external")]
    result = _run(processor, stored, _records(*values))
    # The deposit came first: the debit is measured against platinum's limit (100,000), not mass's (10,000).
    assert [a.type for a in result.alerts] == ["large_outflow", "aum_drain"]
    assert result.alerts[0].facts["limit"] == "100000.00"
    assert result.event_times == [to_us(at()), to_us(at() + timedelta(minutes=1))]


_BUSY = [deposit(at(days=d), "100", client="c-1") for d in range(0, 361, 60)]
_SPARSE = sorted(
    [interaction(at(days=d), client="c-2") for d in (0, 90, 180, 270, 360)]
    + [interaction(at(days=0, hours=1), client="c-3"), interaction(at(days=200), client="c-3")],
    key=lambda value: str(value["occurred_at"]),
)


def _drain_sparse_topic_first(processor: BatchProcessor, with_reading: bool) -> list[tuple[str, str]]:
    """A backlog read unevenly: a year of interactions in the first batch with one transaction, then the rest.

    c-1 is active through transactions every 60 days, c-2 through interactions every 90 (dormancy: 100 days),
    c-3 through interactions on days 0 and 200 (dormant in between). A tick sweeps after each batch.
    """
    stored = Stored()
    busy = _records(*_BUSY)
    first = _records(*_SPARSE) + busy[:1]
    both = {HOME: {INTERACTIONS, TRANSACTIONS}} if with_reading else None
    alerts = _run(processor, stored, first, ticks={HOME: 0}, reading=both).alerts
    busy_only = {HOME: {TRANSACTIONS}} if with_reading else None
    alerts += _run(processor, stored, busy[1:], ticks={HOME: 0}, reading=busy_only).alerts
    alerts += _run(processor, stored, [], ticks={HOME: 0}).alerts
    return [(a.client_id, a.type) for a in alerts]


def test_a_topic_read_ahead_of_another_holds_the_clock_at_the_one_behind(rules: Ruleset) -> None:
    processor = BatchProcessor(rules, clock="event")
    raised = _drain_sparse_topic_first(processor, with_reading=True)
    in_time_order = sorted(_BUSY + _SPARSE, key=lambda value: str(value["occurred_at"]))
    replay, stored = BatchProcessor(rules, clock="event"), Stored()
    replayed = _run(replay, stored, _records(*in_time_order), ticks={HOME: 0}).alerts
    replayed += _run(replay, stored, [], ticks={HOME: 0}).alerts
    # c-3's quiet 200 days (from its own event) and its quiet days since 200: what the time-ordered history raises.
    assert sorted(raised) == sorted((a.client_id, a.type) for a in replayed)
    assert sorted(raised) == [("c-3", "dormancy"), ("c-3", "dormancy"), ("c-3", "reactivation")]
    assert processor.clocks[HOME] == to_us(at(days=360))


def test_a_clock_that_takes_the_latest_time_of_any_topic_makes_the_slower_topics_clients_look_quiet(
    rules: Ruleset,
) -> None:
    processor = BatchProcessor(rules, clock="event")
    raised = _drain_sparse_topic_first(processor, with_reading=False)
    assert ("c-1", "dormancy") in raised and ("c-1", "reactivation") in raised


def test_a_topic_being_read_that_has_given_no_time_yet_holds_the_clock(rules: Ruleset) -> None:
    processor = BatchProcessor(rules, clock="event")
    stored = Stored()
    onboard = _records(client_event(at(), "onboarded", client="c-2"))
    reading = {HOME: {CLIENTS, TRANSACTIONS}}
    _run(processor, stored, onboard, reading=reading)
    assert HOME not in processor.clocks
    later = _records(client_event(at(days=300), "profile_updated", client="c-9"))
    assert _run(processor, stored, later, ticks={HOME: 0}, reading=reading).alerts == []
    # Caught up on transactions: the clients topic alone moves the clock, and the sweep finds c-2 quiet.
    swept = _run(processor, stored, [], ticks={HOME: 0}, reading={HOME: {CLIENTS}})
    assert swept.alerts == []  # a sweep does not move the clock: no record has come since
    again = _records(client_event(at(days=301), "profile_updated", client="c-9"))
    moved = _run(processor, stored, again, ticks={HOME: 0}, reading={HOME: {CLIENTS}})
    assert processor.clocks[HOME] == to_us(at(days=301))
    assert ("c-2", "dormancy") in [(a.client_id, a.type) for a in moved.alerts]
