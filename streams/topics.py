"""Create the topics explicitly, with their partition counts, before anything uses them.

Brokers that auto-create topics would pick their own partition count; the
state table must be co-partitioned with the input topics, so we never rely on it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

from streams.settings import Settings

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
        TopicSpec(settings.alerts_topic, n, {"retention.ms": RETENTION_MONTH_MS}),
        TopicSpec(settings.deadletter_topic, n, {"retention.ms": RETENTION_MONTH_MS}),
        TopicSpec(settings.snapshots_topic, n, {"cleanup.policy": "compact"}),
        TopicSpec(settings.ticks_topic, n, {"retention.ms": str(3600 * 1000)}),
    ]


async def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create missing topics; return the names created. Existing topics are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=int(timeout * 1000))
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await admin.start()
            break
        except KafkaError as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc
            await asyncio.sleep(0.5)
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in topic_specs(settings) if s.name not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(s.name, s.partitions, settings.replication_factor, topic_configs=s.config) for s in missing]
            )
            log.info("created topics: %s", ", ".join(s.name for s in missing))
        return [s.name for s in missing]
    finally:
        await admin.close()
