"""Issue 2 must-show 4 through the trio API: a connection to oneself, and a simultaneous open."""

from __future__ import annotations

import io

import trio
import trio.testing

from tests.io.pairs import A_ADDRESS, B_ADDRESS, host_pair
from utcp.io.api import open_tcp_stream
from utcp.io.memory import memory_link_pair
from utcp.io.runtime import HostRuntime
from utcp.tcp.host import Host
from utcp.tcp.state import TcpState
from utcp.wire.codec import parse_ipv4
from utcp.wire.packet import TcpFlags, TcpSegment
from utcp.wire.pcap import read_pcap

SYN, ACK = TcpFlags.SYN, TcpFlags.ACK


def segments(pcap: io.BytesIO) -> list[tuple[str, TcpSegment]]:
    pcap.seek(0)
    return [(p.src, p.tcp) for p in (parse_ipv4(data) for _, data in read_pcap(pcap))]


async def test_a_stream_connected_to_itself_echoes_its_own_data() -> None:
    link, _unused_far_end = memory_link_pair()
    host = Host(addresses=[A_ADDRESS], seed=3, loopback_visible=True)  # so the pcap sees the loop
    pcap = io.BytesIO()
    async with HostRuntime(host, link, pcap=pcap, close_link=False) as runtime:
        with trio.fail_after(5):
            stream = await open_tcp_stream(runtime, A_ADDRESS, 40006, local_port=40006)
            assert stream.connection.state is TcpState.ESTABLISHED
            await stream.send_all(b"to myself")
            assert await stream.receive_some(100) == b"to myself"
            handshake = [seg for _, seg in segments(pcap) if seg.flags & SYN]
    syn, synack = handshake[0], handshake[1]
    assert syn.flags == SYN and synack.flags == SYN | ACK
    assert synack.seq == syn.seq  # one socket, one ISN (SCENARIOS.md C)
    assert synack.ack == syn.seq + 1


async def test_simultaneous_open_through_the_api_takes_four_segments() -> None:
    pcap = io.BytesIO()
    async with host_pair(pcap=pcap) as (rt_a, rt_b):
        streams = {}

        async def open_from(name: str, runtime: HostRuntime, peer: str, port: int, local: int) -> None:
            streams[name] = await open_tcp_stream(runtime, peer, port, local_port=local)

        # Both runtimes' readers must be waiting first: an open call sends its SYN at once, and a reader
        # taking its first step in the same scheduling batch could answer it before the other open runs.
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                # both SYNs leave before either is answered: the open calls are queued in one scheduling
                nursery.start_soon(open_from, "a", rt_a, B_ADDRESS, 5000, 6000)
                nursery.start_soon(open_from, "b", rt_b, A_ADDRESS, 6000, 5000)
        assert streams["a"].connection.state is TcpState.ESTABLISHED
        assert streams["b"].connection.state is TcpState.ESTABLISHED
        await streams["a"].send_all(b"ping")
        with trio.fail_after(5):
            assert await streams["b"].receive_some(10) == b"ping"
    seen = segments(pcap)  # A's view: what it sent and received
    handshake = [(src, seg.flags) for src, seg in seen if seg.flags & SYN]
    assert sorted(handshake) == sorted(
        [(A_ADDRESS, SYN), (B_ADDRESS, SYN), (A_ADDRESS, SYN | ACK), (B_ADDRESS, SYN | ACK)]
    )
    # RFC 9293 MUST-10: the handshake is the first four segments, the two SYNs before the SYN-ACKs
    assert [seg.flags for _, seg in seen[:4]].count(SYN) == 2
    assert all(seg.flags & SYN for _, seg in seen[:4])
