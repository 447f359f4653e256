"""UtcpStream/UtcpListener keep trio's stream and listener contracts over two in-memory utcp hosts."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random

import pytest
import trio
import trio.testing

from tests.io.pairs import B_ADDRESS, host_pair
from utcp.cli.services import echo
from utcp.io.api import UtcpListener, UtcpStream, open_tcp_listeners, open_tcp_stream
from utcp.io.runtime import HostRuntime
from utcp.tcp.config import TcpConfig


async def _pair(rt_a: HostRuntime, listener: UtcpListener) -> tuple[UtcpStream, UtcpStream]:
    client = await open_tcp_stream(rt_a, B_ADDRESS, listener.port)
    server = await listener.accept()
    return client, server


async def test_check_half_closeable_stream() -> None:
    small = TcpConfig(recv_buffer=8192, send_buffer=8192)
    async with host_pair() as (rt_a, rt_b):
        (listener,) = await open_tcp_listeners(rt_b, 0)
        (small_listener,) = await open_tcp_listeners(rt_b, 0, config=small)

        async def stream_maker() -> tuple[UtcpStream, UtcpStream]:
            return await _pair(rt_a, listener)

        async def clogged_stream_maker() -> tuple[UtcpStream, UtcpStream]:
            client = await open_tcp_stream(rt_a, B_ADDRESS, small_listener.port, config=small)
            server = await small_listener.accept()
            # Fill both send buffers and both receive windows until nothing moves (the checks use the
            # pair in both orientations).
            stalled = 0
            while stalled < 5:
                moved = 0
                for stream, runtime in ((client, rt_a), (server, rt_b)):
                    conn = stream.connection
                    if conn.send_space > 0:
                        moved += conn.send(b"c" * conn.send_space)
                    runtime.kick()
                await trio.sleep(0.02)
                stalled = stalled + 1 if moved == 0 else 0
            return client, server

        await trio.testing.check_half_closeable_stream(stream_maker, clogged_stream_maker)


async def test_serve_listeners_runs_an_echo_server() -> None:
    async with host_pair() as (rt_a, rt_b):
        listeners = await open_tcp_listeners(rt_b, 7)
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, echo, listeners)

            async def one_client(i: int) -> None:
                data = random.Random(i).randbytes(50_000 + i)
                stream = await open_tcp_stream(rt_a, B_ADDRESS, 7)
                got = bytearray()

                async def sender() -> None:
                    await stream.send_all(data)
                    await stream.send_eof()

                async with trio.open_nursery() as inner:
                    inner.start_soon(sender)
                    while chunk := await stream.receive_some():
                        got += chunk
                await stream.aclose()
                assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()

            async with trio.open_nursery() as clients:
                for i in range(3):
                    clients.start_soon(one_client, i)
            nursery.cancel_scope.cancel()


async def test_refused_connection_raises_connection_refused() -> None:
    async with host_pair() as (rt_a, _rt_b):
        with pytest.raises(ConnectionRefusedError):
            await open_tcp_stream(rt_a, B_ADDRESS, 9)


async def test_peer_reset_raises_broken_resource_with_reason() -> None:
    async with host_pair() as (rt_a, rt_b):
        (listener,) = await open_tcp_listeners(rt_b, 0)
        client, server = await _pair(rt_a, listener)
        server.abort()
        with pytest.raises(trio.BrokenResourceError, match="reset"):
            await client.receive_some(10)
        with pytest.raises(trio.BrokenResourceError):
            await client.send_all(b"x")
        await client.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await client.receive_some(10)


async def test_stream_exposes_connection_and_addresses() -> None:
    async with host_pair() as (rt_a, rt_b):
        (listener,) = await open_tcp_listeners(rt_b, 8080)
        client, server = await _pair(rt_a, listener)
        assert client.getpeername() == (B_ADDRESS, 8080)
        assert server.getpeername() == client.getsockname()
        assert client.connection.negotiated.timestamps
        assert server.connection.listener is listener.listener
        await client.aclose()
        await server.aclose()


async def test_cancelled_connect_aborts_the_attempt() -> None:
    async with host_pair() as (rt_a, _rt_b):
        # No route for this address on the link: the SYN goes nowhere, the caller gives up.
        with trio.move_on_after(0.2) as scope:
            await open_tcp_stream(rt_a, "198.18.0.99", 80, config=dataclasses.replace(TcpConfig()))
        assert scope.cancelled_caught
        await trio.sleep(0.05)
        assert not [c for c in rt_a.host.connections() if c.remote == ("198.18.0.99", 80)]


async def test_aclose_is_a_full_checkpoint_open_closed_and_cancelled() -> None:
    # trio's rule: every async call is a schedule point and a cancel point. aclose() ends with a cheaper
    # checkpoint when already cancelled (trio.serve_listeners' aclose_forcefully on a stream the handler
    # closed); it must still raise Cancelled there, and still close an open stream first.
    async with host_pair() as (rt_a, rt_b):
        (listener,) = await open_tcp_listeners(rt_b, 0)
        client, server = await _pair(rt_a, listener)
        with trio.testing.assert_checkpoints():
            await server.aclose()
        with trio.testing.assert_checkpoints():
            await server.aclose()  # already closed, not cancelled: returns normally
        with trio.testing.assert_checkpoints(), trio.CancelScope() as scope:
            scope.cancel()
            await server.aclose()  # already closed, cancelled: raises Cancelled
            pytest.fail("aclose() did not raise Cancelled")  # pragma: no cover
        assert scope.cancelled_caught
        with trio.testing.assert_checkpoints():
            await trio.aclose_forcefully(client)  # open and cancelled: closes, then raises
        assert client.connection.state.name in {"LAST_ACK", "CLOSED"}  # its FIN went out
        with pytest.raises(trio.ClosedResourceError):
            await client.send_all(b"x")


async def test_aclose_with_a_deadline_already_past_is_cancelled() -> None:
    # A deadline moved into the past inside the scope: trio cancels at its next deadline check, and the
    # blocked close checkpoint is aborted then (it must not hang waiting for a reschedule).
    async with host_pair() as (rt_a, rt_b):
        (listener,) = await open_tcp_listeners(rt_b, 0)
        client, server = await _pair(rt_a, listener)
        await server.aclose()
        with trio.fail_after(10):  # a hang guard, not a timing assertion
            with trio.CancelScope() as scope:
                scope.deadline = -math.inf
                await server.aclose()
        assert scope.cancelled_caught
        await client.aclose()


async def test_calls_that_block_are_checkpoints_and_cancellable() -> None:
    # A call that waited returns without a second scheduler trip (as trio's socket calls do): the wait
    # was its checkpoint. It must still count as one, and a cancel during the wait must interrupt it.
    async with host_pair() as (rt_a, rt_b):
        (listener,) = await open_tcp_listeners(rt_b, 0)
        accepted: list[UtcpStream] = []

        async def accept_blocked() -> None:
            with trio.testing.assert_checkpoints():
                accepted.append(await listener.accept())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept_blocked)
            await trio.testing.wait_all_tasks_blocked()
            client = await open_tcp_stream(rt_a, B_ADDRESS, listener.port)
        (server,) = accepted

        async def send_later() -> None:
            await trio.testing.wait_all_tasks_blocked()
            await client.send_all(b"hello")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_later)
            with trio.testing.assert_checkpoints():
                assert await server.receive_some(5) == b"hello"

        with trio.move_on_after(0.05) as scope:
            await server.receive_some(5)  # nothing comes: blocked until cancelled
        assert scope.cancelled_caught
        with trio.move_on_after(0.05) as scope:
            await listener.accept()
        assert scope.cancelled_caught

        # send_all blocked on a full send buffer returns once it fits, a checkpoint all the same
        small = TcpConfig(recv_buffer=4096, send_buffer=4096)
        (small_listener,) = await open_tcp_listeners(rt_b, 0, config=small)
        sender = await open_tcp_stream(rt_a, B_ADDRESS, small_listener.port, config=small)
        receiver = await small_listener.accept()
        got = bytearray()

        async def drain() -> None:
            await trio.testing.wait_all_tasks_blocked()
            while len(got) < 64 * 1024:
                got.extend(await receiver.receive_some())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            with trio.testing.assert_checkpoints():
                await sender.send_all(b"s" * (64 * 1024))
        assert bytes(got) == b"s" * (64 * 1024)
        for stream in (client, server, sender, receiver):
            await stream.aclose()


async def test_a_read_that_opens_the_window_announces_it_at_once() -> None:
    # receive_some pumps the host only when the read left something to send (a window update): the
    # update must still leave inside the call, not at a timer (a zero-window probe would come later).
    small = TcpConfig(recv_buffer=4096, send_buffer=65536)
    async with host_pair() as (rt_a, rt_b):
        (listener,) = await open_tcp_listeners(rt_b, 0, config=small)
        sender = await open_tcp_stream(rt_a, B_ADDRESS, listener.port)
        receiver = await listener.accept()
        sender.connection.send(b"w" * 8192)  # more than the window: the rest waits for an update
        rt_a.kick()
        with trio.fail_after(10):
            while receiver.connection.rcv_wnd > 0:
                await trio.sleep(0.001)
        await trio.testing.wait_all_tasks_blocked()
        out = rt_b.stats["packets_out"]
        assert len(await receiver.receive_some(4096)) == 4096
        assert rt_b.stats["packets_out"] == out + 1  # the window update, sent by the read itself
        with trio.fail_after(10):
            got = b""
            while len(got) < 4096:
                got += await receiver.receive_some(1)  # small reads: no window update for most
        for stream in (sender, receiver):
            await stream.aclose()
