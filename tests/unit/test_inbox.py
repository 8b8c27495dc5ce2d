"""The inbox hands the agent whole fetches, tracked, and drops what a rebalance made stale."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from mode.utils.queues import FlowControlEvent

from streams.faust_ext.inbox import Inbox, ack_held, hold, round_robin


@dataclass(eq=False)
class _Message:
    offset: int
    generation_id: int
    tracked: bool = False
    acked: bool = False


@dataclass
class _Consumer:
    tracked: list[int] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)

    def track_message(self, message: _Message) -> None:
        self.tracked.append(message.offset)

    def ack(self, message: _Message) -> None:
        if not message.acked:  # as Faust's Consumer.ack: a message marked acked is not acked again
            message.acked = True
            self.acked.append(message.offset)


@dataclass
class _App:
    flow_control: FlowControlEvent
    consumer: _Consumer = field(default_factory=_Consumer)
    consumer_generation_id: int = 1


def _setup(max_fetches: int = 4) -> tuple[_App, Inbox]:
    flow = FlowControlEvent()
    flow.resume()
    app = _App(flow)
    return app, Inbox(["t"], flow, max_fetches=max_fetches)


def _fetch(offsets: range, generation: int = 1) -> list[Any]:
    return [_Message(o, generation) for o in offsets]


def _count_gets(inbox: Inbox) -> asyncio.Queue[int]:
    """Reports the number of each `get` on the inbox's queue as it begins, so a test can wait for a take to block.

    A take that has called `get` N times and is not done has dropped or joined
    what came before and now waits on an empty queue.
    """
    calls: asyncio.Queue[int] = asyncio.Queue()
    original = inbox.queue.get
    count = 0

    async def get() -> Any:
        nonlocal count
        count += 1
        calls.put_nowait(count)
        return await original()

    inbox.queue.get = get  # type: ignore[method-assign]
    return calls


async def _blocked_in_get(waiting: asyncio.Future[Any], calls: asyncio.Queue[int], number: int) -> None:
    """Until the take behind `waiting` has begun its `number`-th get; fails at once if the take returns instead."""
    while True:
        got = asyncio.ensure_future(calls.get())
        done, _ = await asyncio.wait({got, waiting}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        if waiting in done:
            got.cancel()
            raise AssertionError(f"take returned {[m.offset for m in waiting.result()]} instead of waiting")
        assert got in done, "take neither returned nor called get"
        if got.result() >= number:
            return  # the take ran on into that get, which blocks on the empty queue, before this task resumed


async def test_waiting_fetches_are_joined_up_to_the_batch_size_and_tracked() -> None:
    app, inbox = _setup()
    for start in (0, 3, 6):
        inbox.queue.put_nowait(_fetch(range(start, start + 3)))
    first = await inbox.take(app, max_messages=5)
    assert [m.offset for m in first] == [0, 1, 2, 3, 4, 5]
    assert all(m.tracked for m in first) and app.consumer.tracked == [0, 1, 2, 3, 4, 5]
    second = await inbox.take(app, max_messages=5)
    assert [m.offset for m in second] == [6, 7, 8]
    Inbox.ack(app, first)
    assert app.consumer.acked == [0, 1, 2, 3, 4, 5] and not any(m.acked for m in second)


async def test_a_take_with_a_timeout_gives_nothing_when_no_fetch_comes_and_leaves_the_queue_as_it_was() -> None:
    app, inbox = _setup()
    assert await inbox.take(app, max_messages=5, timeout=0.01) == []
    inbox.queue.put_nowait(_fetch(range(0, 2)))
    assert [m.offset for m in await inbox.take(app, max_messages=5, timeout=0.01)] == [0, 1]


def test_held_messages_are_acked_when_a_later_batch_processes_them() -> None:
    app = _App(FlowControlEvent())
    held, fresh = _fetch(range(0, 2)), _fetch(range(2, 3))
    hold(held)
    assert all(m.acked for m in held) and app.consumer.acked == []  # set aside: nothing committable yet
    ack_held(app, held + fresh)  # type: ignore[arg-type]
    assert app.consumer.acked == [0, 1, 2]


async def test_messages_of_an_older_generation_are_dropped_untracked() -> None:
    app, inbox = _setup()
    stale = _fetch(range(0, 3), generation=1)
    inbox.queue.put_nowait(stale)
    app.consumer_generation_id = 2
    inbox.queue.put_nowait(_fetch(range(0, 2), generation=2))
    taken = await inbox.take(app, max_messages=100)
    assert [(m.offset, m.generation_id) for m in taken] == [(0, 2), (1, 2)]
    assert not any(m.tracked for m in stale) and app.consumer.tracked == [0, 1]


async def test_a_rebalance_clears_the_queue_and_take_waits_for_the_next_fetch() -> None:
    app, inbox = _setup()
    inbox.queue.put_nowait(_fetch(range(0, 3)))
    app.flow_control.suspend()
    app.flow_control.clear()  # what Faust does when partitions are revoked
    assert inbox.queue.empty()
    calls = _count_gets(inbox)
    waiting = asyncio.ensure_future(inbox.take(app, max_messages=100))
    # If the cleared fetch were still queued, the take would get it (its first get) and go on.
    await _blocked_in_get(waiting, calls, 1)
    assert not waiting.done()
    app.flow_control.resume()
    app.consumer_generation_id = 2
    await inbox.queue.put(_fetch(range(0, 1), generation=2))
    taken = await asyncio.wait_for(waiting, 1)
    assert [m.offset for m in taken] == [0] and app.consumer.tracked == [0]


async def test_a_fetch_taken_while_flow_is_suspended_is_dropped() -> None:
    app, inbox = _setup()
    inbox.queue.put_nowait(_fetch(range(0, 3)))
    app.flow_control.suspend()
    calls = _count_gets(inbox)
    waiting = asyncio.ensure_future(inbox.take(app, max_messages=100))
    # The first get returns the fetch; the take drops it (flow is suspended) and gets again.
    # A take that kept the fetch would return it instead of reaching the second get.
    await _blocked_in_get(waiting, calls, 2)
    assert not waiting.done() and inbox.queue.empty() and app.consumer.tracked == []
    app.flow_control.resume()
    inbox.queue.put_nowait(_fetch(range(3, 4)))
    taken = await asyncio.wait_for(waiting, 1)
    assert [m.offset for m in taken] == [3]
    waiting.cancel()


def test_round_robin_takes_one_item_of_each_list_in_turn_and_keeps_each_lists_order() -> None:
    assert round_robin([]) == []
    assert round_robin([[1, 2]]) == [1, 2]
    assert round_robin([[1, 2, 3], ["a"], [None, None]]) == [1, "a", None, 2, None, 3]
