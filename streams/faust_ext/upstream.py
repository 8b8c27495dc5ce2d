"""The upstream functions this folder copies, overrides or relies on, with a fingerprint of their source.

A test compares each function's current source (`inspect.getsource`) with the
fingerprint recorded here and names every one that changed, so an upgrade of
faust-streaming, mode or aiokafka cannot silently break what INTERNALS.md
describes. After an upgrade: read the changed function, adapt our code, then
record the new fingerprint (`python -m streams.faust_ext.upstream` prints them).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from typing import Any

UPSTREAM: dict[str, str] = {
    # streams/faust_ext/inbox.py
    "faust.transport.consumer:Consumer._drain_messages": "44a2500309e83c63",
    "faust.transport.consumer:Consumer.getmany": "4b168d84882a70d6",
    "faust.transport.consumer:Consumer.track_message": "217d7f1399a4cd8e",
    "faust.transport.consumer:Consumer.ack": "5fcf41cf45153475",
    "faust.transport.consumer:Consumer._wait_next_records": "6218e1969a636b3f",
    "faust.transport.consumer:Consumer._add_gap": "4df2573ded7c1c2c",
    "faust.transport.consumer:Consumer.perform_seek": "0e8c130ff4b0afd8",
    "faust.transport.drivers.aiokafka:Consumer._new_consumer_thread": "0870ec53dea75083",
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._create_worker_consumer": "c2701bfc3e6f6cad",
    "faust.app.base:App._new_consumer": "bff6ccd646b71ea9",
    # streams/faust_ext/recovery.py
    "faust.tables.recovery:Recovery._slurp_changelogs": "7825c7e50f766d5a",
    "faust.tables.recovery:Recovery._build_highwaters": "91b4cc0d3724ae7b",
    "faust.tables.recovery:Recovery._set_recovery_started": "bcfebf81ae13fc75",
    "faust.tables.recovery:Recovery._set_recovery_ended": "84badf3f2cfe0d02",
    "faust.tables.recovery:Recovery.need_recovery": "fd1dc345b5d5e121",
    "faust.tables.recovery:Recovery.flush_buffers": "6fa9c17f1071018c",
    "faust.tables.manager:TableManager.changelog_queue": "9c7f4cac57ef1706",
    "faust.tables.manager:TableManager.recovery": "f0bf5de78b4c3d23",
    # streams/faust_ext/tables.py
    "faust.tables.base:Collection.apply_changelog_batch": "b980a78d3ae9b1e8",
    "faust.stores.memory:Store.apply_changelog_batch": "71863e3cd727aac2",
    "faust.stores.memory:Store._create_batch_iterator": "b082c8bcc0403823",
    "faust.stores.memory:Store.on_recovery_completed": "a00bef343e139602",
    # streams/faust_ext/producer.py
    "faust.transport.drivers.aiokafka:Producer._ensure_producer": "5592a4bbdf251325",
    "aiokafka.producer.producer:AIOKafkaProducer.create_batch": "c4efda4bb7a09741",
    "aiokafka.producer.producer:AIOKafkaProducer.send_batch": "bf42b0f0c5c0646d",
    # the fetch wait (inbox.py) is an attribute aiokafka's consumer hands to its fetcher at start
    "aiokafka.consumer.consumer:AIOKafkaConsumer.start": "2f1ba70443327538",
    # the flow-controlled queue the inbox and recovery hand fetches over
    "mode.utils.queues:FlowControlQueue.put": "0ba84eb5e357a17e",
}


def _resolve(name: str) -> Any:
    module_name, _, path = name.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in path.split("."):
        obj = inspect.getattr_static(obj, part)
    if isinstance(obj, property):
        obj = obj.fget
    if isinstance(obj, classmethod | staticmethod):
        obj = obj.__func__
    return inspect.unwrap(getattr(obj, "fun", obj))  # mode's Service.task keeps the function as `fun`


def fingerprint(name: str) -> str:
    """sha256 (first 16 hex digits) of the function's source as installed."""
    source = inspect.getsource(_resolve(name))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def changed() -> dict[str, str]:
    """Each upstream function whose source differs from its recorded fingerprint, with the new one."""
    out = {}
    for name, recorded in UPSTREAM.items():
        current = fingerprint(name)
        if current != recorded:
            out[name] = current
    return out


if __name__ == "__main__":  # pragma: no cover - a maintainer's tool after an upgrade
    for name in UPSTREAM:
        print(f'    "{name}": "{fingerprint(name)}",')
