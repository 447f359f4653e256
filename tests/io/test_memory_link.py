"""In-memory links carry packets in order, push back when full, and end cleanly."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from utcp.io.memory import memory_link_pair


async def test_packets_arrive_in_order_as_one_batch() -> None:
    a, b = memory_link_pair()
    for i in range(5):
        assert a.try_send(bytes([0x45, i]))
    assert await b.receive_batch() == [bytes([0x45, i]) for i in range(5)]


async def test_receive_waits_for_a_packet() -> None:
    a, b = memory_link_pair()
    got: list[list[bytes]] = []

    async def reader() -> None:
        got.append(await b.receive_batch())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        a.try_send(b"\x45x")
    assert got == [[b"\x45x"]]


async def test_full_queue_pushes_back_until_the_peer_reads() -> None:
    a, b = memory_link_pair(capacity=2)
    assert a.try_send(b"1") and a.try_send(b"2")
    assert not a.try_send(b"3")
    woke: list[bool] = []

    async def writer() -> None:
        await a.wait_writable()
        woke.append(True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()
        assert woke == []
        assert await b.receive_batch() == [b"1", b"2"]
    assert woke == [True]
    assert a.try_send(b"3")


async def test_oversize_packets_are_dropped_and_counted() -> None:
    a, b = memory_link_pair(mtu=100)
    assert a.try_send(b"x" * 101)
    assert a.oversize_dropped == 1
    a.try_send(b"y")
    assert await b.receive_batch() == [b"y"]


async def test_closing_ends_the_peer_and_refuses_sends() -> None:
    a, b = memory_link_pair()
    a.close()
    with pytest.raises(trio.EndOfChannel):
        await b.receive_batch()
    with pytest.raises(trio.ClosedResourceError):
        a.try_send(b"z")
    with pytest.raises(trio.ClosedResourceError):
        await a.receive_batch()
