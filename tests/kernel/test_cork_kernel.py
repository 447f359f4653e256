"""TCP_CORK against the kernel: a corked utcp echo server sends full segments at once and holds the
tail until the FIN of its close() carries it; the kernel client gets every byte, then EOF."""

from __future__ import annotations

import hashlib
import socket

import trio

from tests.kernel.helpers import UTCP, KernelPeer
from tests.kernel.transfers import payload
from utcp.io.api import UtcpStream, serve_workers
from utcp.io.stack import UtcpStack
from utcp.lab.netns import Namespace
from utcp.wire.codec import parse_ipv4
from utcp.wire.packet import TcpFlags, TcpSegment


async def _corked_echo(stream: UtcpStream) -> None:
    stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    while data := await stream.receive_some():
        await stream.send_all(data)
    await stream.aclose()


async def test_a_corked_echo_sends_its_tail_with_the_fin(namespace: Namespace) -> None:
    sent: list[TcpSegment] = []

    def tap(direction: str, raw: bytes, now: float) -> None:
        segment = parse_ipv4(raw).payload
        if direction == "out" and isinstance(segment, TcpSegment) and segment.payload:
            sent.append(segment)

    nbytes = 3000  # two full segments and a 104-byte tail at MSS 1448
    async with UtcpStack(netns=namespace.name, tap=tap) as stack:
        listeners = await stack.open_tcp_listeners(7)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: serve_workers(_corked_echo, listeners, workers=1, task_status=task_status)
            )
            result = await KernelPeer(namespace, "echo-client", UTCP, "7", str(nbytes)).result(timeout=60)
            nursery.cancel_scope.cancel()
    assert result["received"] == nbytes
    assert result["sha256"] == hashlib.sha256(payload(nbytes)).hexdigest()
    assert sum(len(seg.payload) for seg in sent) == nbytes
    *full, tail = sent
    mss = max(len(seg.payload) for seg in sent)
    assert all(len(seg.payload) == mss for seg in full)  # full segments were never held
    assert len(tail.payload) < mss and tail.flags & TcpFlags.FIN  # the tail went with the FIN
    assert not any(seg.flags & TcpFlags.FIN for seg in full)
