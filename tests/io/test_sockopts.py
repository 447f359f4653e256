"""UtcpStream.setsockopt/getsockopt: TCP_CORK and TCP_NODELAY as trio.SocketStream spells them."""

from __future__ import annotations

import errno
import socket

import pytest
import trio

from tests.io.pairs import A_ADDRESS, host_pair
from utcp.io.api import open_tcp_listeners, open_tcp_stream
from utcp.wire.codec import parse_ipv4
from utcp.wire.packet import TcpFlags, TcpSegment


async def test_a_corked_reply_leaves_with_the_fin_in_one_segment() -> None:
    sent: list[bytes] = []

    def tcp(raw: bytes) -> TcpSegment:
        segment = parse_ipv4(raw).payload
        assert isinstance(segment, TcpSegment)
        return segment

    def tap(direction: str, raw: bytes, now: float) -> None:
        if direction == "out":
            sent.append(raw)

    async with host_pair(tap=tap) as (rt_a, rt_b):
        (listener,) = await open_tcp_listeners(rt_a, 0)
        client = await open_tcp_stream(rt_b, A_ADDRESS, listener.port)
        server = await listener.accept()
        await client.send_all(b"request")
        assert await server.receive_some() == b"request"
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        assert server.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK) == 1
        sent.clear()
        await server.send_all(b"reply")
        await trio.sleep(0.05)
        assert not [raw for raw in sent if tcp(raw).payload]  # held (an ACK may go)
        await server.aclose()
        with trio.fail_after(10):  # a hang guard, not a timing assertion
            assert await client.receive_some() == b"reply"
            assert await client.receive_some() == b""
        segments = [tcp(raw) for raw in sent]
        carrying = [seg for seg in segments if seg.payload]
        assert len(carrying) == 1 and carrying[0].payload == b"reply"
        assert carrying[0].flags & TcpFlags.FIN  # the FIN rode on the reply
        await client.aclose()


async def test_uncorking_pushes_the_held_bytes() -> None:
    async with host_pair() as (rt_a, rt_b):
        (listener,) = await open_tcp_listeners(rt_a, 0)
        client = await open_tcp_stream(rt_b, A_ADDRESS, listener.port)
        server = await listener.accept()
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, True)
        await server.send_all(b"partial")
        with trio.move_on_after(0.05):
            await client.receive_some()
            pytest.fail("a corked partial segment was sent")  # pragma: no cover
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, (0).to_bytes(4, "little"))
        assert server.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK) == 0
        with trio.fail_after(10):
            assert await client.receive_some() == b"partial"
        for stream in (client, server):
            await stream.aclose()


async def test_nodelay_is_settable_and_readable() -> None:
    async with host_pair() as (rt_a, rt_b):
        (listener,) = await open_tcp_listeners(rt_a, 0)
        client = await open_tcp_stream(rt_b, A_ADDRESS, listener.port)
        server = await listener.accept()
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert client.connection.nodelay
        for stream in (client, server):
            await stream.aclose()


@pytest.mark.parametrize(
    ("level", "option"),
    [(socket.SOL_SOCKET, socket.SO_KEEPALIVE), (socket.IPPROTO_TCP, socket.TCP_MAXSEG)],
)
async def test_options_utcp_lacks_are_enoprotoopt(level: int, option: int) -> None:
    async with host_pair() as (rt_a, rt_b):
        (listener,) = await open_tcp_listeners(rt_a, 0)
        client = await open_tcp_stream(rt_b, A_ADDRESS, listener.port)
        for call in (lambda: client.setsockopt(level, option, 1), lambda: client.getsockopt(level, option)):
            with pytest.raises(OSError) as info:
                call()
            assert info.value.errno == errno.ENOPROTOOPT
        await client.aclose()
