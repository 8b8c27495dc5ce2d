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
from schemas.topics import CLIENTS, TRANSACTIONS
from tests.unit.builders import DETECTED_AT, at, client_event, deposit, record, tx

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
    processor: BatchProcessor, stored: Stored, records: list[Record], ticks: dict[int, int] | None = None
) -> BatchResult:
    result = processor.process(records, stored.get, wall_now=0, received_at=DETECTED_AT, ticks=ticks)
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
