"""Eager dispatch behaves like awaiting the callback in a task, suspended or not."""

from __future__ import annotations

import asyncio

import pytest

from streams.faust_tuning import resume


async def _no_suspend(log: list[str]) -> str:
    log.append("ran")
    return "done"


async def _suspends(fut: asyncio.Future[int], log: list[str]) -> int:
    log.append("before")
    value = await fut
    log.append("after")
    await asyncio.sleep(0)  # a bare yield too
    return value + 1


async def _fails(fut: asyncio.Future[int]) -> int:
    return await fut


async def _cleanup(fut: asyncio.Future[int], log: list[str]) -> None:
    try:
        await fut
    finally:
        log.append("cleaned up")


async def test_a_callback_that_never_suspends_completes_on_first_send() -> None:
    log: list[str] = []
    coro = _no_suspend(log)
    with pytest.raises(StopIteration) as stop:
        coro.send(None)
    assert stop.value.value == "done" and log == ["ran"]


async def test_resume_finishes_a_suspended_callback_with_its_result() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    log: list[str] = []
    coro = _suspends(fut, log)
    yielded = coro.send(None)
    assert yielded is fut and log == ["before"]
    task = asyncio.ensure_future(resume(coro, yielded))
    await asyncio.sleep(0)
    assert not task.done()
    fut.set_result(41)
    assert await asyncio.wait_for(task, 1) == 42
    assert log == ["before", "after"]


async def test_resume_delivers_the_awaited_error_to_the_callback() -> None:
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    coro = _fails(fut)
    yielded = coro.send(None)
    task = asyncio.ensure_future(resume(coro, yielded))
    fut.set_exception(ValueError("broken"))
    with pytest.raises(ValueError, match="broken"):
        await asyncio.wait_for(task, 1)


async def test_cancelling_resume_closes_the_callback() -> None:
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    log: list[str] = []
    coro = _cleanup(fut, log)
    yielded = coro.send(None)
    task = asyncio.ensure_future(resume(coro, yielded))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["cleaned up"] and fut.cancelled()
