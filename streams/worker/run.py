"""Starting a worker: validate everything, create topics, then hand over to Faust."""

from __future__ import annotations

import asyncio
import logging

import faust

from handlers.ruleset import Ruleset
from streams import __version__, metrics
from streams.gc_tuning import tune_gc
from streams.settings import Settings, check_shadow
from streams.topics import ensure_topics
from streams.worker.pipeline import Pipeline

log = logging.getLogger("clientpulse")


def run_worker(settings: Settings, rules: Ruleset) -> int:
    """Run until SIGTERM/SIGINT. Config and rules were validated before this point."""
    check_shadow(settings)  # before anything connects: a shadow must never join a live group
    tune_gc()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(ensure_topics(settings, check_partitions=True))
    mode = "shadow" if settings.shadow else "live"
    metrics.BUILD_INFO.labels(version=__version__, rule_version=rules.rule_version).set(1)
    alerts_topic = settings.worker_alerts_topic
    metrics.WORKER_INFO.labels(app_id=settings.worker_app_id, mode=mode, alerts_topic=alerts_topic).set(1)
    pipeline = Pipeline(settings, rules)
    if settings.shadow:
        log.info(
            "shadow run: group %s (a new one starts at the %s offsets of %s); alerts to %s only, "
            "no dead letters, no snapshots",
            settings.worker_app_id,
            settings.shadow_start,
            ", ".join(settings.input_topics),
            alerts_topic,
        )
    log.info(
        "%s worker %s starting: broker %s, %d partitions, clock %s, rules %s",
        mode,
        settings.worker_app_id,
        settings.kafka_bootstrap,
        settings.partitions,
        settings.clock,
        rules.rule_version,
    )
    worker = faust.Worker(pipeline.app, loop=loop, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()
    return 0
