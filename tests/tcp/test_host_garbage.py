"""A host fed garbage (issue 7, must-show 1): thousands of random and mutated packets are each counted
exactly once (InErrs / InCsumErrors, InAddrErrors, InUnknownProtos, ReasmFails, or InSegs when they parse
and reach TCP) and dropped, and an established connection carries its byte stream intact throughout."""

from __future__ import annotations

import random

from tests.tcp.helpers import A, B, Pump, make_host
from tests.wire.strategies import fix_checksums
from utcp.tcp.host import Host
from utcp.tcp.state import TcpState
from utcp.wire import IPv4Packet, TcpFlags, TcpSegment, WireError, build_ipv4, parse_ipv4

N = 4000
DISJOINT = ("InErrs", "InAddrErrors", "InUnknownProtos", "ReasmFails", "InSegs")


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        at = rng.randrange(len(buf))
        op = rng.randrange(4)
        if op == 0:
            buf[at] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[at] = rng.randrange(256)
        elif op == 2:
            del buf[at:]
            if not buf:
                buf.append(0x45)
        else:
            buf += rng.randbytes(rng.randint(1, 20))
    return bytes(buf)


def garbage(rng: random.Random, conn_packet: bytes, stranger: bytes) -> bytes:
    """Random bytes; mutations of a real packet of the connection (checksums left broken, so the stack
    must catch them); or checksum-repaired mutations of a packet from an unrelated 4-tuple."""
    kind = rng.randrange(3)
    if kind == 0:
        return rng.randbytes(rng.randint(0, 80))
    if kind == 1:
        return mutate(rng, conn_packet)
    return fix_checksums(mutate(rng, stranger))


def test_garbage_is_counted_dropped_and_the_connection_keeps_its_stream() -> None:
    rng = random.Random(7)
    a = make_host(A)
    b = make_host(B, iss=77_000)
    pump = Pump([a, b], drop=lambda p: p.dst not in (A, B))  # replies to forged strangers go nowhere
    lst = a.listen(A, 80)
    client = b.connect(A, 80, 0.0)
    pump.run_for(0.1)
    server = lst.accept()
    assert server is not None and server.state is TcpState.ESTABLISHED
    # a real packet of the connection (B -> A; a copy of data already delivered, so one that survives
    # mutation intact, e.g. with bytes appended past the IP total length, is a harmless duplicate), and
    # one from a stranger to a closed port
    seq = client.snd_nxt
    sent = bytearray(b"x" * 40)
    assert client.send(sent) == 40
    pump.run_for(0.1)
    tcp = TcpSegment(client.local[1], 80, seq, client.rcv_nxt, TcpFlags.ACK, 500, (), b"x" * 40)
    real = build_ipv4(IPv4Packet(B, A, tcp))
    stranger = build_ipv4(
        IPv4Packet("198.18.9.9", A, TcpSegment(1234, 9, 1, 2, TcpFlags.ACK | TcpFlags.PSH, 9, (), b"junk"))
    )

    received = bytearray()
    echoed = bytearray()
    for round_ in range(N // 100):
        for _ in range(100):
            data = garbage(rng, real, stranger)
            before = {k: a.counters[k] for k in DISJOINT}
            a.receive(data, pump.now)
            delta = {k: a.counters[k] - before[k] for k in DISJOINT}
            assert sum(delta.values()) == 1, (data.hex(), delta)  # counted exactly once
        chunk = bytes([round_ % 256]) * rng.randint(1, 3000)
        sent += chunk[: client.send(chunk)]
        pump.run_for(0.05)
        received += server.read()
        server.send(bytes(received[len(echoed) :]))
        echoed += received[len(echoed) :]
    pump.run_for(1.0)
    received += server.read()
    back = client.read()
    assert client.state is TcpState.ESTABLISHED and server.state is TcpState.ESTABLISHED
    assert bytes(received) == bytes(sent)  # no byte lost, corrupted, duplicated or reordered
    assert back == bytes(echoed[: len(back)]) and len(back) > 0
    c = a.counters
    assert (
        c["InErrs"] > N // 2
        and c["InCsumErrors"] > 0
        and c["InAddrErrors"] + c["ReasmFails"] + c["InUnknownProtos"] > 0
    )
    assert a.connections() == [server]  # no state created by the garbage
    assert not _stray_connections(a)


def _stray_connections(host: Host) -> list[str]:
    return [repr(c) for c in host.connections() if c.local[1] != 80]


def test_bytes_and_packet_values_are_judged_alike() -> None:
    # Host.receive reads parsed bytes as a tuple of fields (parse_ipv4_fields), values as IPv4Packet:
    # the same garbage stream, given to twin hosts as bytes and as values wherever it parses, must give
    # the same counters, the same events and the same replies.
    rng = random.Random(11)
    twins = [make_host(A), make_host(A)]
    for host in twins:
        host.listen(A, 80)
    stranger = build_ipv4(IPv4Packet("198.18.9.9", A, TcpSegment(1234, 80, 1, 0, TcpFlags.SYN, 9, (), b"")))
    real = build_ipv4(
        IPv4Packet(B, A, TcpSegment(5555, 80, 7, 9, TcpFlags.ACK | TcpFlags.PSH, 500, (), b"x" * 40))
    )
    for i in range(N):
        data = garbage(rng, real, stranger)
        try:
            value: IPv4Packet | None = parse_ipv4(data)
        except WireError:
            value = None
        twins[0].receive(data, i * 0.001)
        twins[1].receive(data if value is None else value, i * 0.001)
        replies = [host.packets_to_send(i * 0.001) for host in twins]
        assert replies[0] == replies[1]
        events = [host.events() for host in twins]
        assert events[0] == events[1], data.hex()
    assert twins[0].counters == twins[1].counters
    c = twins[0].counters
    # every branch of the split was exercised: parse errors, wrong address, not TCP or fragment, TCP
    assert c["InErrs"] > 0 and c["InAddrErrors"] > 0 and c["InUnknownProtos"] + c["ReasmFails"] > 0
    assert c["InSegs"] > 0
