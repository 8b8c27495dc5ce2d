"""Starting a notifier: validate everything, create and check topics, then hand over to Faust."""

from __future__ import annotations

import asyncio
import logging

import faust

from handlers.ruleset import Ruleset
from streams import __version__, metrics
from streams.gc_tuning import tune_gc
from streams.notifier.pipeline import NotifierPipeline
from streams.settings import Settings
from streams.topics import ensure_topics, notifier_copartitioned_topics

log = logging.getLogger("clientpulse")


def run_notifier(settings: Settings, rules: Ruleset) -> int:
    """Run until SIGTERM/SIGINT. Config and rules were validated before this point."""
    tune_gc()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # An RM's alerts, ticks and state share a partition number: their topics must have one partition count.
    loop.run_until_complete(ensure_topics(settings, check_partitions=True, copartitioned=notifier_copartitioned_topics))
    metrics.BUILD_INFO.labels(version=__version__, rule_version=rules.rule_version).set(1)
    pipeline = NotifierPipeline(settings, rules)
    log.info(
        "notifier %s starting: %s -> %s, %s; clock %s, rules %s",
        settings.notifier_app_id,
        settings.alerts_topic,
        settings.notifications_topic,
        settings.digests_topic,
        settings.clock,
        rules.rule_version,
    )
    worker = faust.Worker(pipeline.app, loop=loop, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()
    return 0
