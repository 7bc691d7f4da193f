"""The photo-check gate: weighted holders, first come first served, cancellation hands on."""

from __future__ import annotations

import asyncio

import pytest

from session_api.slots import Slots


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def hold_until(
    slots: Slots, wanted: int, release: asyncio.Event, log: list[str], name: str
) -> None:
    async with slots.hold(wanted):
        log.append(name)
        await release.wait()


async def line_up(
    slots: Slots, log: list[str], *holders: tuple[str, int, asyncio.Event]
) -> list[asyncio.Task[None]]:
    """Start the holders one after another, each queued before the next arrives."""
    tasks = []
    for name, wanted, release in holders:
        tasks.append(asyncio.create_task(hold_until(slots, wanted, release, log, name)))
        await settle()
    return tasks


async def test_holders_share_the_slots_by_weight() -> None:
    slots = Slots(2)
    done = asyncio.Event()
    log: list[str] = []
    small = [asyncio.create_task(hold_until(slots, 1, done, log, f"s{i}")) for i in range(2)]
    big = asyncio.create_task(hold_until(slots, 2, done, log, "big"))
    await settle()
    assert log == ["s0", "s1"] and slots.free == 0  # the big one waits for both
    done.set()
    await asyncio.gather(*small, big)
    assert log == ["s0", "s1", "big"] and slots.free == 2


async def test_a_waiting_big_holder_is_not_overtaken() -> None:
    slots = Slots(2)
    first_done, rest_done = asyncio.Event(), asyncio.Event()
    log: list[str] = []
    first, big, late = await line_up(
        slots, log, ("first", 1, first_done), ("big", 2, rest_done), ("late", 1, rest_done)
    )
    assert log == ["first"]  # one slot is free, but "late" queues behind "big"
    first_done.set()
    await settle()
    assert log == ["first", "big"]
    rest_done.set()
    await asyncio.gather(first, big, late)
    assert log == ["first", "big", "late"]


async def test_a_cancelled_waiter_lets_the_queue_move() -> None:
    slots = Slots(2)
    done = asyncio.Event()
    log: list[str] = []
    first, big, small = await line_up(
        slots, log, ("first", 1, done), ("big", 2, done), ("small", 1, done)
    )
    big.cancel()
    await settle()
    assert log == ["first", "small"]  # with "big" gone, the free slot goes to the next in line
    done.set()
    await asyncio.gather(first, small)
    with pytest.raises(asyncio.CancelledError):
        await big
    assert slots.free == 2


async def test_more_than_all_is_clamped_to_all() -> None:
    slots = Slots(3)
    async with slots.hold(10) as held:
        assert held == 3 and slots.free == 0
    async with slots.hold(0) as held:
        assert held == 1
    assert slots.free == 3
    with pytest.raises(ValueError):
        Slots(0)
