"""The fast paths (header prediction for data and pure ACKs, segments encoded without values) change
speed, not behaviour.

Each transfer runs on the simulator with the same seeds: with the fast paths switched off (the general
path), with packets handed to the hosts as values (Connection._input's header prediction), as bytes
(Host._receive_fast, what the TUN runtime does), and as bytes both ways (Host.wire_output: the hosts
encode plain segments themselves, drained with datagrams_to_send). Every packet on the wire, at the
same virtual time, must be the same; with and without per-batch ACKs.
"""

from __future__ import annotations

import random

import pytest

from utcp.sim import (
    CLIENT_ADDRESS,
    SERVER_ADDRESS,
    BulkSender,
    Impairment,
    Network,
    Reader,
)
from utcp.tcp.config import TcpConfig
from utcp.tcp.connection import Connection
from utcp.tcp.host import Host
from utcp.tcp.state import TcpState
from utcp.wire import IPv4Packet, build_ipv4, parse_ipv4
from utcp.wire.fastpath import PlainSegment

SIZE = 800_000


class BytesNode:
    """Hands the wrapped host raw bytes, as a TUN runtime does; with `wire_output`, takes bytes from it
    too (datagrams_to_send), parsed back, checksums verified, for the simulated link."""

    def __init__(self, host: Host, wire_output: bool = False, drain_values: bool = False) -> None:
        self.host = host
        self.addresses = host.addresses
        host.wire_output = wire_output
        self.drain_values = drain_values  # packets_to_send on a wire_output host: its bytes parsed back

    def receive(self, packet: IPv4Packet, now: float) -> None:
        self.host.receive(build_ipv4(packet), now)

    def packets_to_send(self, now: float) -> list[IPv4Packet]:
        if self.host.wire_output and not self.drain_values:
            return [parse_ipv4(raw) for raw in self.host.datagrams_to_send(now)]
        return self.host.packets_to_send(now)

    def next_deadline(self) -> float | None:
        return self.host.next_deadline()

    def on_timer(self, now: float) -> None:
        self.host.on_timer(now)


def transfer(
    *,
    as_bytes: bool,
    config: TcpConfig,
    impairment: Impairment | None,
    ack_per_batch: bool,
    wire_output: bool = False,
    drain_values: bool = False,
) -> tuple[list[tuple[float, str, IPv4Packet]], bytes, dict[str, int]]:
    net = Network(capture=True)
    hosts = []
    for name, address, seed in (("client", CLIENT_ADDRESS, 1), ("server", SERVER_ADDRESS, 2)):
        host = Host([address], config, seed=seed, ack_per_batch=ack_per_batch)
        net.add_node(name, BytesNode(host, wire_output, drain_values) if as_bytes else host, [address])
        hosts.append(host)
    client, server = hosts
    net.link("client", "server", latency=0.002, bandwidth=50e6, impairment=impairment)
    # One way, so the receiver stays ESTABLISHED with nothing in flight: the fast path's case.
    listener = server.listen(SERVER_ADDRESS, 80)
    data = random.Random(3).randbytes(SIZE)
    sender = BulkSender(client.connect(SERVER_ADDRESS, 80, 0.0), data, finish="close")
    readers: list[Reader] = []

    def serve(now: float) -> None:
        client.events()
        server.events()
        if (conn := listener.accept()) is not None:
            readers.append(Reader(conn))
        for reader in readers:
            reader.poll(now)
            if reader.eof and reader.conn.state is TcpState.CLOSE_WAIT:
                reader.conn.close()

    net.add_hook(sender.poll)
    net.add_hook(serve)
    assert net.run_until(lambda: bool(readers) and readers[0].conn.state is TcpState.CLOSED, timeout=120.0)
    wire: list[tuple[float, str, IPv4Packet]] = [(c.time, c.event, c.packet) for c in net.captures]
    assert isinstance(wire[0][2], IPv4Packet)
    return wire, bytes(readers[0].received), dict(server.counters)


@pytest.mark.parametrize("ack_per_batch", [False, True])
@pytest.mark.parametrize(
    ("config", "impairment"),
    [
        (TcpConfig(), None),
        (TcpConfig(timestamps=False), None),
        (TcpConfig(), Impairment(loss=0.02, reorder=0.02, duplicate=0.01, seed=5)),
        (TcpConfig(sack=False), Impairment(loss=0.02, seed=6)),
    ],
)
def test_the_fast_path_does_not_change_a_packet(
    config: TcpConfig, impairment: Impairment | None, ack_per_batch: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    kw = {"config": config, "impairment": impairment, "ack_per_batch": ack_per_batch}
    fast_bytes = transfer(as_bytes=True, **kw)  # type: ignore[arg-type]
    fast_values = transfer(as_bytes=False, **kw)  # type: ignore[arg-type]
    fast_wire = transfer(as_bytes=True, wire_output=True, **kw)  # type: ignore[arg-type]
    # either drain works in either mode (docs/engine-api.md "Wire output")
    wire_as_values = transfer(as_bytes=True, wire_output=True, drain_values=True, **kw)  # type: ignore[arg-type]
    with monkeypatch.context() as m:
        m.setattr(Connection, "_fast_data", lambda *args: False)
        m.setattr(Connection, "_fast_ack", lambda *args: False)
        slow = transfer(as_bytes=False, **kw)  # type: ignore[arg-type]
    assert fast_bytes[1] == fast_values[1] == fast_wire[1] == slow[1] == random.Random(3).randbytes(SIZE)
    assert fast_bytes[0] == slow[0]
    assert fast_values[0] == slow[0]
    assert fast_wire[0] == slow[0]
    assert wire_as_values[0] == slow[0] and wire_as_values[1] == slow[1]
    assert fast_bytes[2] == fast_values[2] == fast_wire[2] == slow[2]


def test_the_fast_path_is_taken() -> None:
    # Guard against the equality above holding only because the fast path never runs.
    host = Host([SERVER_ADDRESS], TcpConfig(), seed=2)
    calls = []
    original = host._receive_fast

    def spy(raw: bytes, shape: PlainSegment, now: float) -> bool:
        taken = original(raw, shape, now)
        calls.append(taken)
        return taken

    host._receive_fast = spy  # type: ignore[method-assign]
    net = Network()
    client = Host([CLIENT_ADDRESS], TcpConfig(), seed=1)
    net.add_node("client", client, [CLIENT_ADDRESS])
    net.add_node("server", BytesNode(host), [SERVER_ADDRESS])
    net.link("client", "server", latency=0.002)
    listener = host.listen(SERVER_ADDRESS, 80)
    sender = BulkSender(client.connect(SERVER_ADDRESS, 80, 0.0), bytes(100_000), finish="none")
    readers: list[Reader] = []

    def serve(now: float) -> None:
        if (conn := listener.accept()) is not None:
            readers.append(Reader(conn))
        for reader in readers:
            reader.poll(now)

    net.add_hook(sender.poll)
    net.add_hook(serve)
    assert net.run_until(lambda: bool(readers) and len(readers[0].received) == 100_000, timeout=60.0)
    assert sum(calls) >= 60  # 100 kB in 1448-byte segments to an ESTABLISHED receiver: nearly all


def test_segments_given_as_values_take_the_fast_path_too(monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[bool] = []
    original = Connection._fast_data

    def spy(self: Connection, *args: object) -> bool:
        result = original(self, *args)  # type: ignore[arg-type]
        taken.append(result)
        return result

    monkeypatch.setattr(Connection, "_fast_data", spy)
    net = Network()
    client = Host([CLIENT_ADDRESS], TcpConfig(), seed=1)
    server = Host([SERVER_ADDRESS], TcpConfig(), seed=2)
    net.add_node("client", client, [CLIENT_ADDRESS])
    net.add_node("server", server, [SERVER_ADDRESS])
    net.link("client", "server", latency=0.002)
    listener = server.listen(SERVER_ADDRESS, 80)
    sender = BulkSender(client.connect(SERVER_ADDRESS, 80, 0.0), bytes(100_000), finish="none")
    readers: list[Reader] = []

    def serve(now: float) -> None:
        if (conn := listener.accept()) is not None:
            readers.append(Reader(conn))
        for reader in readers:
            reader.poll(now)

    net.add_hook(sender.poll)
    net.add_hook(serve)
    assert net.run_until(lambda: bool(readers) and len(readers[0].received) == 100_000, timeout=60.0)
    assert sum(taken) >= 60


def test_pure_acks_take_the_fast_path_and_plain_segments_go_out_encoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Guard against the equalities above holding only because the new paths never run.
    acks: list[bool] = []
    encoded: list[int] = []
    bursts: list[int] = []
    fast_ack = Connection._fast_ack
    send_wire = Host._send_wire
    send_wire_many = Host._send_wire_many

    def ack_spy(self: Connection, *args: object) -> bool:
        result = fast_ack(self, *args)  # type: ignore[arg-type]
        acks.append(result)
        return result

    def wire_spy(self: Host, raw: bytes, retransmit: bool = False) -> None:
        encoded.append(len(raw))
        send_wire(self, raw, retransmit)

    def wire_many_spy(self: Host, raws: list[bytes]) -> None:
        encoded.extend(len(raw) for raw in raws)
        bursts.append(len(raws))
        send_wire_many(self, raws)

    monkeypatch.setattr(Connection, "_fast_ack", ack_spy)
    monkeypatch.setattr(Host, "_send_wire", wire_spy)
    monkeypatch.setattr(Host, "_send_wire_many", wire_many_spy)
    _, received, _ = transfer(
        as_bytes=True, wire_output=True, config=TcpConfig(), impairment=None, ack_per_batch=True
    )
    assert len(received) == SIZE
    # 800 kB in 1448-byte segments, an ACK per one or two; the sender closes at once, so the ACKs that
    # come while it is in FIN-WAIT-1 (about a third) take the general path
    assert sum(acks) >= 150
    assert sum(1 for n in encoded if n == 1500) >= 500  # full data segments (52 + 1448 bytes)
    assert sum(1 for n in encoded if n == 52) >= 200  # and the receiver's ACKs
    assert sum(bursts) >= 400  # most data segments went in bursts (Connection._send_bulk)
