"""Starting a worker: validate everything, create topics, then hand over to Faust."""

from __future__ import annotations

import asyncio
import logging

import faust

from handlers.ruleset import Ruleset
from streams import __version__, metrics
from streams.gc_tuning import tune_gc
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker.pipeline import Pipeline

log = logging.getLogger("clientpulse")


def run_worker(settings: Settings, rules: Ruleset) -> int:
    """Run until SIGTERM/SIGINT. Config and rules were validated before this point."""
    tune_gc()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(ensure_topics(settings, check_partitions=True))
    metrics.BUILD_INFO.labels(version=__version__, rule_version=rules.rule_version).set(1)
    pipeline = Pipeline(settings, rules)
    log.info(
        "worker %s starting: broker %s, %d partitions, clock %s, rules %s",
        settings.app_id,
        settings.kafka_bootstrap,
        settings.partitions,
        settings.clock,
        rules.rule_version,
    )
    worker = faust.Worker(pipeline.app, loop=loop, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()
    return 0
