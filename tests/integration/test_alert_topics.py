"""Reading an alerts topic for a period on the real broker: where it starts, where it ends, what it keeps."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from streams.settings import ConfigError
from streams.tools.alert_topics import read_alerts
from streams.topics import ensure_topics
from tests.support import make_settings, unique_prefix

pytestmark = pytest.mark.broker

# Recent, so that a Kafka's retention (a month on the alerts topics) keeps every record stamped with these times.
SINCE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
UNTIL = SINCE + timedelta(days=1)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _alert(alert_id: str, occurred: datetime, client: str) -> bytes:
    return orjson.dumps({"alert_id": alert_id, "client_id": client, "occurred_at": occurred.isoformat()})


async def _publish(bootstrap: str, topic: str, batches: list[list[tuple[str, bytes, datetime]]]) -> None:
    """Each inner list goes as one producer batch per partition (the worker sends that way), stamped as given."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=50)
    await producer.start()
    try:
        for batch in batches:
            futures = [
                await producer.send(topic, value, key=client.encode(), timestamp_ms=_ms(stamp))
                for client, value, stamp in batch
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


def test_the_alerts_of_a_period_are_read_from_their_time_to_the_true_end(broker: str) -> None:
    settings = make_settings(broker, unique_prefix())
    asyncio.run(ensure_topics(settings))
    topic = settings.shadow_alerts_topic
    hour = timedelta(hours=1)
    old = [(f"c-{n}", _alert(f"old-{n}", SINCE - 3 * hour, f"c-{n}"), SINCE - 3 * hour) for n in range(8)]
    # Published half an hour before `since` by the record's clock, but it occurred after it.
    skewed = [("c-1", _alert("skewed", SINCE + timedelta(minutes=1), "c-1"), SINCE - hour / 2)]
    inside = [(f"c-{n}", _alert(f"in-{n}", SINCE + n * hour, f"c-{n}"), SINCE + n * hour) for n in range(8)]
    redelivered = [("c-2", _alert("in-2", SINCE + 2 * hour, "c-2"), SINCE + 5 * hour)]
    # The last batch of several records, published long after `until`: an alert that occurred in the period
    # comes last in a partition (the embedded broker lists that partition's end short of it).
    late = [
        (f"c-{n}", _alert(f"late-{n}", UNTIL - timedelta(minutes=n + 1), f"c-{n}"), UNTIL + 2 * hour) for n in range(8)
    ]
    after = [("c-3", _alert("at-until", UNTIL, "c-3"), UNTIL + 2 * hour), ("c-3", b"{not an alert", UNTIL + 2 * hour)]
    asyncio.run(_publish(broker, topic, [old, skewed, inside, redelivered, after + late]))

    alerts = read_alerts(settings, topic, SINCE, UNTIL)
    ids = [a["alert_id"] for a in alerts]
    expected = ["in-0", "skewed", *(f"in-{n}" for n in range(1, 8)), *(f"late-{n}" for n in reversed(range(8)))]
    assert ids == expected
    assert read_alerts(settings, topic, SINCE, UNTIL) == alerts, "the same answer twice"

    # A period later than every record's stamp: no time-index answer, so the topic is read from its start.
    future = [("c-4", _alert("future", datetime(2031, 1, 1, tzinfo=UTC), "c-4"), SINCE)]
    asyncio.run(_publish(broker, topic, [future]))
    later = read_alerts(settings, topic, datetime(2030, 12, 31, tzinfo=UTC), datetime(2031, 1, 2, tzinfo=UTC))
    assert [a["alert_id"] for a in later] == ["future"]


def test_a_topic_that_does_not_exist_is_an_error_naming_it(broker: str) -> None:
    settings = make_settings(broker, unique_prefix())
    with pytest.raises(ConfigError, match=r"rm\.alerts\.shadow\.v1 does not exist"):
        read_alerts(settings, settings.shadow_alerts_topic, SINCE, UNTIL)
