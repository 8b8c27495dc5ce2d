"""One batch of input records through the rules: the single driver of the engine.

The stream worker and the backtest both hand their input to `BatchProcessor`
(the worker a fetch at a time, the backtest a chunk of lines at a time), so
they decode, apply, sweep and collect in the same code and agree by
construction. The processor reads no clock and does no I/O: the caller passes
the wall-clock time, loads stored states on request, and afterwards publishes
the alerts and dead letters and writes the touched states (the worker's
checkpoint). It owns what is derived from the states of the partitions it
serves: the due index of the clock rules, the event-time clock of each
partition, and the count of clients per tier.

For each record, in order: the co-partitioning check (a record must sit on the
partition Kafka's default partitioner gives its key, or the client would have
two states; control events included), tombstones (a null value on the clients topic erases the client),
decoding and validation (else a dead letter), the client's due clock rules and
then the event itself. After the records, the partitions that received a
clock tick are swept.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from handlers import engine
from handlers.alerting import Outcome
from handlers.decode import Rejection, dead_letter, decode, kind_of_topic
from handlers.due_index import DueIndex
from handlers.ruleset import Ruleset
from handlers.state import ClientState
from handlers.timeutil import to_us
from schemas.alerts import Alert, DeadLetter
from schemas.values import TIERS

Clock = Literal["wall", "event"]
"""`wall`: the caller's wall-clock time. `event`: each partition's largest occurred_at so far (replays)."""

HomePartition = Callable[[str, bytes], int]
"""The partition Kafka's default partitioner (murmur2 of the key bytes) gives a key on a topic."""

StateLoader = Callable[[str], ClientState | None]
"""A client's stored state, or None for a client never seen."""

PRODUCER_FIX = (
    "set the producer's partitioner to Kafka's default murmur2 "
    "(librdkafka, confluent-kafka, kcat: partitioner=murmur2_random)"
)


class RecordLike(Protocol):
    """What the processor reads of an input record (a Kafka message, or a line of a replay file)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> Any: ...
    @property
    def value(self) -> Any: ...
    @property
    def headers(self) -> Any: ...


@dataclass(slots=True)
class Record:
    """An input record held by the replay (the worker passes Kafka messages as they come)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(slots=True)
class Touched:
    """A client whose state the batch changed, with the partition its records came from."""

    state: ClientState
    partition: int


@dataclass(slots=True)
class BatchCounts:
    """What the batch did, gathered per series (the worker turns these into one metric update each)."""

    consumed: Counter[str] = field(default_factory=Counter)
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    alerts: Counter[tuple[str, str]] = field(default_factory=Counter)
    suppressed: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(alert type, reason) -> alerts not sent."""
    erased: int = 0
    sweeps: int = 0


@dataclass(slots=True)
class BatchResult:
    """The outcomes of one batch, for the caller's checkpoint."""

    alerts: list[Alert] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, DeadLetter]] = field(default_factory=list)
    """With the record's original key, under which the dead letter is published."""
    touched: dict[str, Touched] = field(default_factory=dict)
    """States to write, by client id."""
    erased: dict[str, int] = field(default_factory=dict)
    """Clients erased by a tombstone (and not re-created later in the batch), with their partition."""
    counts: BatchCounts = field(default_factory=BatchCounts)
    event_times: list[int] = field(default_factory=list)
    """occurred_at (µs) of each event applied (not repeats), for the event-lag histogram."""
    clocks_moved: set[int] = field(default_factory=set)
    """Partitions whose event-time clock moved (event clock only)."""

    def collect(self, outcome: Outcome) -> None:
        alerts = self.counts.alerts
        for alert in outcome.alerts:
            alerts[(alert.type, alert.severity)] += 1
        self.alerts.extend(outcome.alerts)
        if outcome.suppressed:
            self.counts.suppressed.update(outcome.suppressed)


class BatchProcessor:
    """Applies batches of one application's input; holds the due index, clocks and tier counts per partition."""

    def __init__(self, rules: Ruleset, *, clock: Clock, home_partition: HomePartition | None = None) -> None:
        self.rules = rules
        self.clock = clock
        self.home_partition = home_partition
        self.indexes: defaultdict[int, DueIndex] = defaultdict(DueIndex)
        self.clocks: dict[int, int] = {}
        """Event-time clock of each partition (event clock only)."""
        self.topic_clocks: dict[tuple[str, int], int] = {}
        """(topic, partition) -> the latest occurred_at read there (event clock, when the caller says what it reads)."""
        self.tiers: defaultdict[int, Counter[str]] = defaultdict(Counter)
        """Clients per tier of each partition."""

    # ------------------------------------------------------------------ batches
    def process(
        self,
        records: Iterable[RecordLike],
        load: StateLoader,
        *,
        wall_now: int,
        received_at: datetime,
        ticks: Mapping[int, int] | None = None,
        into: BatchResult | None = None,
        catch_up: Callable[[int], None] | None = None,
        reading: Mapping[int, Collection[str]] | None = None,
    ) -> BatchResult:
        """Apply `records` in order, then sweep each partition in `ticks` (partition -> tick time, 0 for none).

        `wall_now` is the clock of the wall mode; `received_at` stamps dead
        letters and the alerts' detected_at. `into` is the (empty) result to
        fill: a caller that feeds `records` from a generator can see, between
        two records, which alerts the previous one raised. `catch_up(occurred)`
        is asked, before each event, to bring the clock up to where records the
        caller holds back would have taken it, as far as they reach beyond
        `occurred` (event clock only).

        `reading` (event clock only) names, per partition, the input topics
        whose records on it are still being read: the partition's clock then
        goes no further than the latest time read on the one that is furthest
        behind (its low watermark), so a topic drained ahead of the others
        does not make the clients of the others look quiet. Each event still
        fires its own client's due rules up to its own time first.
        """
        rules = self.rules
        result = into if into is not None else BatchResult()
        counts = result.counts
        touched = result.touched
        event_clock = self.clock == "event"
        home = self.home_partition
        clocks = self.clocks
        event_times = result.event_times

        for record in records:
            topic = record.topic
            partition = record.partition
            counts.consumed[topic] += 1
            key = record.key
            raw = record.value
            kind = kind_of_topic(topic)
            if kind is None:
                self._reject(result, record, Rejection("unknown_topic", f"{topic} is not an input topic"), received_at)
                continue
            if home is not None and key is not None:
                expected = home(topic, key)
                if expected != partition:
                    rejection = Rejection(
                        "wrong_partition",
                        f"partition: the record is on partition {partition}, but Kafka's default partitioner puts "
                        f"its key on partition {expected}, where the client's state is kept; {PRODUCER_FIX}",
                    )
                    self._reject(result, record, rejection, received_at)
                    continue
            if raw is None and kind == "clients" and key:
                client_id = _client_of(key)
                if client_id is None:
                    rejection = Rejection("key_mismatch", "key: a tombstone's key must be a client_id in UTF-8")
                    self._reject(result, record, rejection, received_at)
                else:
                    self._erase(result, client_id, partition, load)
                continue
            decoded = decode(kind, key, raw, rules)
            if isinstance(decoded, Rejection):
                self._reject(result, record, decoded, received_at)
                continue
            occurred = to_us(decoded.occurred_at)
            if event_clock:
                if catch_up is not None:
                    catch_up(occurred)
                now = clocks.get(partition, 0)
                moves_to = occurred if reading is None else self._low_watermark(topic, partition, occurred, reading)
                if moves_to > now:
                    clocks[partition] = now = moves_to
                    result.clocks_moved.add(partition)
                if occurred > now:
                    now = occurred
            else:
                now = wall_now
            client_id = decoded.client_id
            entry = touched.get(client_id)
            if entry is None:
                entry = touched[client_id] = self._touch(result, client_id, partition, load)
            outcome = engine.apply(rules, entry.state, decoded, occurred, now, received_at)
            if outcome.duplicate:
                counts.duplicates[topic] += 1
            else:
                event_times.append(occurred)
            if outcome.alerts or outcome.suppressed:
                result.collect(outcome)

        for partition, tick in (ticks or {}).items():
            counts.sweeps += 1
            now = self._tick_now(result, partition, tick, wall_now)
            for client_id in self.indexes[partition].pop_due(now):
                entry = touched.get(client_id)
                if entry is None:
                    entry = touched[client_id] = self._touch(result, client_id, partition, load)
                result.collect(engine.advance(rules, entry.state, now, received_at))

        for client_id, entry in touched.items():
            state = entry.state
            self.indexes[entry.partition].note(client_id, engine.next_due(rules, state))
        return result

    def _low_watermark(self, topic: str, partition: int, occurred: int, reading: Mapping[int, Collection[str]]) -> int:
        """Where this record may take its partition's clock: the earliest of the latest times read on each topic
        still being read there (0, no move, while one of them has given no time yet)."""
        seen = self.topic_clocks
        key = (topic, partition)
        low = seen.get(key, 0)
        if occurred > low:
            seen[key] = low = occurred
        for other in reading.get(partition, ()):
            if other != topic:
                latest = seen.get((other, partition))
                if latest is None:
                    return 0
                if latest < low:
                    low = latest
        return low

    def finish(self, until: int, load: StateLoader, received_at: datetime) -> BatchResult:
        """Move every partition's clock to at least `until` and sweep (the end of a replay)."""
        for partition in list(self.indexes):
            if self.clocks.get(partition, 0) < until:
                self.clocks[partition] = until
        return self.process((), load, wall_now=until, received_at=received_at, ticks=dict.fromkeys(self.indexes, 0))

    def _tick_now(self, result: BatchResult, partition: int, tick: int, wall_now: int) -> int:
        if self.clock != "event":
            return wall_now
        now = self.clocks.get(partition, 0)
        if tick > now:
            self.clocks[partition] = now = tick
            result.clocks_moved.add(partition)
        return now

    def _touch(self, result: BatchResult, client_id: str, partition: int, load: StateLoader) -> Touched:
        if result.erased and result.erased.pop(client_id, None) is not None:
            state = ClientState(client_id)  # erased earlier in this batch: the stored state is gone
        else:
            state = load(client_id) or ClientState(client_id)
        self._count_tier(partition, None, state.tier)  # counted again in its tier after the write (`settle`)
        return Touched(state, partition)

    def _erase(self, result: BatchResult, client_id: str, partition: int, load: StateLoader) -> None:
        # A client touched earlier in the batch was taken out of the tier counts when it was loaded.
        if result.touched.pop(client_id, None) is None and client_id not in result.erased:
            stored = load(client_id)
            if stored is not None:
                self._count_tier(partition, None, stored.tier)
        self.indexes[partition].note(client_id, None)
        result.erased[client_id] = partition
        result.counts.erased += 1

    def _reject(self, result: BatchResult, record: RecordLike, rejection: Rejection, received_at: datetime) -> None:
        result.counts.rejected[(record.topic, rejection.reason)] += 1
        key = record.key
        letter = dead_letter(
            record.topic, record.partition, record.offset, key, record.value, rejection, received_at, record.headers
        )
        result.dead_letters.append((key, letter))

    # ------------------------------------------------------------------ tier counts
    def _count_tier(self, partition: int, added: str | None, removed: str | None) -> None:
        """Keep clients-per-tier current: a touched client is taken out on load and counted again on write."""
        counts = self.tiers[partition]
        if removed is not None:
            counts[removed] -= 1
        if added is not None:
            counts[added] += 1

    def settle(self, result: BatchResult) -> None:
        """Count the batch's clients in their new tiers (after the caller wrote them)."""
        for entry in result.touched.values():
            self._count_tier(entry.partition, entry.state.tier, None)

    def tier_totals(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for counts in self.tiers.values():
            totals.update(counts)
        return {tier: totals.get(tier, 0) for tier in TIERS}

    # ------------------------------------------------------------------ partitions
    def recovered(self, partition: int, states: Iterable[ClientState], *, kept: bool) -> None:
        """Index the states recovered for a partition; a partition kept through a rebalance only adds keys."""
        index = self.indexes[partition]
        tiers = self.tiers[partition]
        rules = self.rules
        for state in states:
            index.note(state.client_id, engine.next_due(rules, state))
            if state.tier and not kept:
                tiers[state.tier] += 1

    def keep_partitions(self, assigned: set[int]) -> None:
        """Forget the due index, tier counts and topic times of partitions not owned here any more (clocks have their
        table)."""
        for table in (self.indexes, self.tiers):
            for partition in [p for p in table if p not in assigned]:
                del table[partition]
        for key in [k for k in self.topic_clocks if k[1] not in assigned]:
            del self.topic_clocks[key]


def _client_of(key: bytes) -> str | None:
    try:
        client_id = key.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return client_id if 0 < len(client_id) <= 64 else None
