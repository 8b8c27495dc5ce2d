"""Create the topics explicitly, with their partition counts, before anything uses them.

Brokers that auto-create topics would pick their own partition count; the
state table must be co-partitioned with the input topics, so we never rely on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

from streams.kafka_client import client_kwargs, wait_for_kafka
from streams.settings import ENV_NAMES, ConfigError, Settings

log = logging.getLogger(__name__)

RETENTION_WEEK_MS = str(7 * 24 * 3600 * 1000)
RETENTION_MONTH_MS = str(30 * 24 * 3600 * 1000)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    n = settings.partitions
    return [
        TopicSpec(settings.transactions_topic, n, {}),
        TopicSpec(settings.interactions_topic, n, {}),
        # Reference data: latest wins per client.
        TopicSpec(settings.clients_topic, n, {"cleanup.policy": "compact"}),
        # Snoozes from the RM API: every one matters in order (not compacted), kept like the bank's inputs.
        TopicSpec(settings.controls_topic, n, {}),
        TopicSpec(settings.alerts_topic, n, {"retention.ms": RETENTION_MONTH_MS}),
        # A shadow worker's alerts (candidate rules on the live input), kept as long as the live ones to compare.
        TopicSpec(settings.shadow_alerts_topic, n, {"retention.ms": RETENTION_MONTH_MS}),
        TopicSpec(settings.deadletter_topic, n, {"retention.ms": RETENTION_MONTH_MS}),
        TopicSpec(settings.snapshots_topic, n, {"cleanup.policy": "compact"}),
        TopicSpec(settings.ticks_topic, n, {"retention.ms": str(3600 * 1000)}),
        # Which dead letters `clientpulse redrive` published again: latest per dead letter, kept.
        TopicSpec(settings.redriven_topic, n, {"cleanup.policy": "compact"}),
        TopicSpec(settings.notifications_topic, n, {"retention.ms": RETENTION_MONTH_MS}),
        TopicSpec(settings.digests_topic, n, {"retention.ms": RETENTION_MONTH_MS}),
        # The notifier's input: alerts re-keyed by RM and its clock ticks, read within seconds.
        TopicSpec(settings.alerts_by_rm_topic, n, {"retention.ms": RETENTION_WEEK_MS}),
    ]


def copartitioned_topics(settings: Settings) -> list[str]:
    """Topics whose partition N must hold the same clients: the inputs, the ticks and the state changelogs.

    A client's events, its clock ticks and its state records meet only when every
    one of these has the same partition count (and every producer uses murmur2).
    The ticks and changelogs are this worker's: a shadow's are its own.
    """
    return [
        *settings.input_topics,
        settings.ticks_topic,
        f"{settings.worker_app_id}-client-state-changelog",
        f"{settings.worker_app_id}-partition-clock-changelog",
    ]


def notifier_copartitioned_topics(settings: Settings) -> list[str]:
    """Topics whose partition N must hold the same RMs: the notifier's input and its table changelogs."""
    return [
        settings.alerts_by_rm_topic,
        f"{settings.notifier_app_id}-rm-state-changelog",
        f"{settings.notifier_app_id}-partition-clock-changelog",
    ]


Copartitioned = Callable[[Settings], list[str]]
_WHAT_MEETS: dict[Copartitioned, str] = {
    copartitioned_topics: "A client's events, ticks and state",
    notifier_copartitioned_topics: "An RM's alerts, ticks and state",
}


def partition_mismatch(
    settings: Settings, counts: dict[str, int], copartitioned: Copartitioned = copartitioned_topics
) -> str | None:
    """The error to stop with when the co-partitioned topics that exist differ in partition count, else None."""
    present = {name: counts[name] for name in copartitioned(settings) if name in counts}
    if set(present.values()) <= {settings.partitions}:
        return None
    listed = ", ".join(f"{name} has {n}" for name, n in present.items())
    return (
        f"clientpulse: partition counts differ: {listed}; {ENV_NAMES['partitions']} is {settings.partitions}. "
        f"{_WHAT_MEETS.get(copartitioned, 'Their records')} must share one partition number: recreate the odd "
        f"topics with {settings.partitions} partitions (or set {ENV_NAMES['partitions']} to match them all); "
        "partitions are never added or removed here"
    )


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    described = await admin.describe_topics(names)
    counts: dict[str, int] = {}
    for topic in described:
        if topic.get("error_code", 0) == 0 and topic.get("partitions"):
            counts[str(topic["topic"])] = len(topic["partitions"])
    return counts


async def ensure_topics(
    settings: Settings,
    timeout: float = 30.0,
    check_partitions: bool = False,
    copartitioned: Copartitioned = copartitioned_topics,
) -> list[str]:
    """Create missing topics; return the names created. Existing topics are left as they are.

    Waits for Kafka first (one line and exit 2 when it cannot be reached). With
    `check_partitions` (the worker, the notifier and `clientpulse topics`), the
    `copartitioned` topics whose partition counts differ stop the process (exit 2) naming each count.
    """
    await wait_for_kafka(settings)
    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=int(timeout * 1000))
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await admin.start()
            break
        except KafkaError as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise ConfigError(f"clientpulse: cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from None
            await asyncio.sleep(0.5)
    try:
        existing = set(await admin.list_topics())
        if check_partitions:
            names = [name for name in copartitioned(settings) if name in existing]
            counts = await _partition_counts(admin, names) if names else {}
            problem = partition_mismatch(settings, counts, copartitioned) if names else None
            if problem:
                raise ConfigError(problem)
        missing = [s for s in topic_specs(settings) if s.name not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(s.name, s.partitions, settings.replication_factor, topic_configs=s.config) for s in missing]
            )
            log.info("created topics: %s", ", ".join(s.name for s in missing))
        return [s.name for s in missing]
    finally:
        await admin.close()
