"""The box runtime between two namespaces, with kernel peers on both sides.

- pass-through: a box with no rules forwards a kernel-to-kernel transfer of 1 MB byte-exact;
- issue 4 / SCENARIOS.md B case 2: the impairment box holds a kernel client's third ACK until its
  SO_LINGER-0 RST has passed, so on the wire the RST overtakes the ACK; the Linux server accepts the RST
  on its request socket (TcpExtEmbryonicRsts +1) and answers the late ACK with an RST (seq = the ACK's
  ack number, no ACK flag), leaving nothing to accept.
"""

from __future__ import annotations

import io
import os
import socket
import struct

import trio

from utcp.io.boxrun import box_between_namespaces
from utcp.lab.netns import Namespace
from utcp.middlebox import Delay, Direction, HoldUntil, ImpairBox, Match, Rule
from utcp.wire.codec import parse_ipv4
from utcp.wire.packet import IPv4Packet, TcpFlags
from utcp.wire.pcap import read_pcap

CLIENT = "198.18.1.1"
SERVER = "198.18.2.1"
PORT = 8080


def _tcp_socket(ns: Namespace) -> trio.socket.SocketType:
    # Created on a thread inside `ns`: the socket belongs to that namespace from then on.
    sock = ns.call(socket.socket, socket.AF_INET, socket.SOCK_STREAM)
    return trio.socket.from_stdlib_socket(sock)


async def _listener(ns: Namespace) -> trio.socket.SocketType:
    lsock = _tcp_socket(ns)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    await lsock.bind((SERVER, PORT))
    lsock.listen(8)
    return lsock


def _packets(buf: io.BytesIO) -> list[IPv4Packet]:
    return [parse_ipv4(data) for _, data in read_pcap(io.BytesIO(buf.getvalue()))]


def _flags(packets: list[IPv4Packet], src: str) -> list[TcpFlags]:
    """Flag sets of the packets `src` sent, in order."""
    return [p.tcp.flags for p in packets if p.src == src]


SYN, ACK, RST = TcpFlags.SYN, TcpFlags.ACK, TcpFlags.RST


async def test_box_without_rules_forwards_a_kernel_transfer_byte_exact(privileged: None) -> None:
    ns_client, ns_server = Namespace(), Namespace()
    try:
        ns_client.create()
        ns_server.create()
        payload = os.urandom(1 << 20)
        received = bytearray()
        box = ImpairBox([])
        async with box_between_namespaces(box, ns_client, ns_server) as rt:
            lsock = await _listener(ns_server)
            client = _tcp_socket(ns_client)

            async def serve() -> None:
                conn, _ = await lsock.accept()
                with conn:
                    while chunk := await conn.recv(65536):
                        received.extend(chunk)

            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(serve)
                    await client.connect((SERVER, PORT))
                    view = memoryview(payload)
                    while view:
                        view = view[await client.send(view) :]
                    client.shutdown(socket.SHUT_WR)
            client.close()
            lsock.close()
        assert bytes(received) == payload
        assert rt.stats["packets_in_client"] > 700  # 1 MB in <= 1460-byte segments crossed the box
        assert rt.stats["packets_out_to_server"] == rt.stats["packets_in_client"]
        assert rt.stats["packets_out_to_client"] == rt.stats["packets_in_server"]
        assert box.stats["forwarded"] == rt.stats["packets_in_client"] + rt.stats["packets_in_server"]
        for bad in ("box_errors", "encode_errors", "write_errors", "tx_backlog_dropped"):
            assert rt.stats[bad] == 0, bad
    finally:
        ns_client.delete()
        ns_server.delete()


async def test_linger0_rst_overtakes_third_ack_and_linux_server_resets_the_late_ack(privileged: None) -> None:
    ns_client, ns_server = Namespace(), Namespace()
    try:
        ns_client.create()
        ns_server.create()
        box = ImpairBox(
            [
                Rule(
                    Match(direction=Direction.TO_SERVER, flags=TcpFlags.ACK, has_payload=False),
                    HoldUntil(
                        release=Match(direction=Direction.TO_SERVER, flags_set=TcpFlags.RST), max_hold=3.0
                    ),
                    nth=1,
                    name="third-ack",
                )
            ]
        )
        forwarded, received = io.BytesIO(), io.BytesIO()
        before = ns_server.nstat()
        async with box_between_namespaces(
            box, ns_client, ns_server, pcap=forwarded, pcap_received=received
        ) as rt:
            lsock = await _listener(ns_server)
            client = _tcp_socket(ns_client)
            with trio.fail_after(5):
                await client.connect((SERVER, PORT))  # returns once the kernel sent its third ACK
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()  # abortive close: RST (RFC 9293 3.10.4 ABORT)
                # SYN-ACK, then the server's RST for the late ACK.
                while rt.stats["packets_out_to_client"] < 2:
                    await trio.sleep(0.01)
                await trio.sleep(0.05)  # anything else the server would send (there should be nothing)
            # No leftover: the late ACK established nothing the listener could hand out.
            with trio.move_on_after(0.05) as scope:
                await lsock.accept()
            lsock.close()
        after = ns_server.nstat()

        # What the client's kernel sent, as the box read it: SYN, ACK, RST in the natural order.
        assert _flags(_packets(received), CLIENT) == [SYN, ACK, RST | ACK]
        out = _packets(forwarded)
        # What the server's namespace saw: the RST overtook the ACK.
        assert _flags(out, CLIENT) == [SYN, RST | ACK, ACK]
        assert box.rule_stats["third-ack"]["held"] == 1
        assert box.rule_stats["third-ack"]["released"] == 1
        assert box.rule_stats["third-ack"]["released_on_timeout"] == 0

        # SCENARIOS.md B case 2 for Linux: tcp_check_req accepts the RST (embryonic_reset) ...
        assert after["TcpExtEmbryonicRsts"] - before.get("TcpExtEmbryonicRsts", 0) == 1
        assert after["TcpExtPAWSEstab"] - before.get("TcpExtPAWSEstab", 0) == 0
        # ... and the late ACK, reaching the bare listener, draws tcp_v4_send_reset: seq = its ack, no ACK.
        server_pkts = [p for p in out if p.src == SERVER]
        assert [p.tcp.flags for p in server_pkts] == [SYN | ACK, RST]
        late_ack = next(p for p in out if p.src == CLIENT and p.tcp.flags == TcpFlags.ACK)
        reset = server_pkts[1]
        assert out.index(reset) > out.index(late_ack)
        assert reset.tcp.seq == late_ack.tcp.ack
        assert reset.tcp.options == ()
        assert scope.cancelled_caught, "the late ACK established a connection the listener handed out"
    finally:
        ns_client.delete()
        ns_server.delete()


async def test_box_timers_fire_on_trio_clock(privileged: None) -> None:
    """A Delay rule on the client's SYN: the runtime releases it from `on_timer`, not on new input."""
    ns_client, ns_server = Namespace(), Namespace()
    try:
        ns_client.create()
        ns_server.create()
        syn_rule = Rule(Match(direction=Direction.TO_SERVER, flags=SYN), Delay(0.3), nth=1, name="syn")
        box = ImpairBox([syn_rule])
        async with box_between_namespaces(box, ns_client, ns_server) as rt:
            lsock = await _listener(ns_server)
            client = _tcp_socket(ns_client)
            start = trio.current_time()
            with trio.fail_after(5):
                await client.connect((SERVER, PORT))
            elapsed = trio.current_time() - start
            client.close()
            lsock.close()
        # Released by the timer at 0.3 s, well before the kernel's 1 s SYN retransmission.
        assert 0.3 <= elapsed < 0.9
        assert box.rule_stats["syn"]["delayed"] == 1
        assert rt.stats["packets_in_client"] >= 2 and rt.stats["box_errors"] == 0
    finally:
        ns_client.delete()
        ns_server.delete()
