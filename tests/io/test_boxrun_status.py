"""BoxRuntime without TUN devices (fakes): the FullNAT bytes fast path, malformed drops counted and logged
at debug on the logger passed in, and `status()` with conntrack entries (no root needed)."""

from __future__ import annotations

from typing import Any, cast

import trio
import trio.testing

from tests.middlebox.packets import CLIENT, LIP, RS, SA, VIP, A, S, tcp
from utcp.io.boxrun import BoxRuntime
from utcp.io.tun import TunDevice
from utcp.middlebox import FullNat, FullNatConfig, RealServer, VirtualService
from utcp.tcp.isn import IsnGenerator
from utcp.wire.codec import build_ipv4, parse_ipv4
from utcp.wire.packet import TcpFlags, Toa


class FakeTun:
    """What BoxRuntime uses of a TunDevice: batches in, packets out."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False
        self.sent: list[bytes] = []
        self._in_send, self._in_recv = trio.open_memory_channel[bytes](100)

    def inject(self, data: bytes) -> None:
        self._in_send.send_nowait(data)

    async def receive_batch(self) -> list[bytes]:
        batch = [await self._in_recv.receive()]
        while True:
            try:
                batch.append(self._in_recv.receive_nowait())
            except trio.WouldBlock:
                return batch

    def try_send(self, data: bytes) -> bool:
        self.sent.append(data)
        return True

    async def wait_writable(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


class RecordingLogger:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def debug(self, event: str, **kw: Any) -> None:
        self.records.append(("debug", event, kw))

    def info(self, event: str, **kw: Any) -> None:
        self.records.append(("info", event, kw))


def _lb() -> FullNat:
    service = VirtualService(VIP, 80, (RealServer(RS, 8080),))
    # A fixed ISN: the LB's ISN otherwise follows trio's clock, which differs between runs.
    return FullNat(FullNatConfig(services=(service,), local_addresses=(LIP,), isn=IsnGenerator(fixed=7)))


async def _run(box: FullNat, *, bytes_path: bool) -> tuple[BoxRuntime, FakeTun, FakeTun, RecordingLogger]:
    client, server, log = FakeTun("fakec0"), FakeTun("fakes0"), RecordingLogger()
    rt = BoxRuntime(box, cast(TunDevice, client), cast(TunDevice, server), logger=log, bytes_path=bytes_path)
    async with rt:
        client.inject(build_ipv4(tcp(CLIENT, 40000, VIP, 80, S, 1000)))
        await trio.testing.wait_all_tasks_blocked()
        syn = parse_ipv4(server.sent[-1])
        lport = syn.tcp.src_port
        server.inject(build_ipv4(tcp(RS, 8080, LIP, lport, SA, 5000, syn.tcp.seq + 1)))
        await trio.testing.wait_all_tasks_blocked()
        client.inject(build_ipv4(tcp(CLIENT, 40000, VIP, 80, A, 1001, 5001)))
        client.inject(build_ipv4(tcp(CLIENT, 40000, VIP, 80, A | TcpFlags.PSH, 1001, 5001, payload=b"x")))
        server.inject(build_ipv4(tcp(RS, 8080, LIP, lport, A, 5001, syn.tcp.seq + 2)))
        client.inject(b"\x45\x00 not a packet")
        bad = bytearray(build_ipv4(tcp(CLIENT, 40000, VIP, 80, A, 1002, 5001)))
        bad[-1] ^= 1  # TCP checksum broken
        client.inject(bytes(bad))
        await trio.testing.wait_all_tasks_blocked()
    return rt, client, server, log


async def test_fullnat_runs_on_the_bytes_fast_path_and_malformed_drops_are_counted_and_logged() -> None:
    box = _lb()
    rt, client, server, log = await _run(box, bytes_path=True)
    assert client.closed and server.closed
    # SYN, third ACK (TOA), data (TOA: it still acks the RS ISN+1) to the RS; SYN-ACK, ACK to the client.
    assert len(server.sent) == 3 and len(client.sent) == 2
    assert parse_ipv4(server.sent[0]).tcp.option(Toa) == Toa(port=40000, address=CLIENT)
    assert parse_ipv4(client.sent[1]).src == VIP
    assert box.stats["lb_bytes_fast_path"] == 1  # the RS's pure ACK
    assert box.stats["lb_bytes_slow_path"] == 4 + 2  # SYN, SYN-ACK, 2 TOA carriers, 2 bad inputs
    assert rt.stats["malformed_dropped"] == 2
    assert rt.stats["packets_in_client"] == 5 and rt.stats["packets_out_to_server"] == 3
    assert [(level, event, kw["side"]) for level, event, kw in log.records] == [
        ("debug", "malformed packet dropped", "client"),
        ("debug", "malformed packet dropped", "client"),
    ]
    malformed = [kw for _, _, kw in log.records]
    assert malformed[0]["head"] == b"\x45\x00 not a packet".hex()

    status = rt.status(now=0.0)
    assert status["box"] == "FullNat"
    assert status["devices"] == {"client": "fakec0", "server": "fakes0"}
    assert status["runtime"]["malformed_dropped"] == 2
    assert status["stats"]["dropped_unparseable"] == 1 and status["stats"]["dropped_bad_checksum"] == 1
    (entry,) = status["conntrack"]["entries"]
    assert status["conntrack"]["count"] == 1
    assert entry["state"] == "ESTABLISHED" and entry["assured"]
    assert entry["nat"]["client"] == f"{CLIENT}:40000" and entry["nat"]["real_server"] == f"{RS}:8080"
    assert entry["original"] == {"src": CLIENT, "sport": 40000, "dst": VIP, "dport": 80}
    assert entry["line"] == box.format_entries(0.0)


async def test_the_value_path_gives_the_same_packets_when_the_fast_path_is_off() -> None:
    fast = await _run(_lb(), bytes_path=True)
    box = _lb()
    slow = await _run(box, bytes_path=False)
    assert "lb_bytes_fast_path" not in box.stats
    assert slow[1].sent == fast[1].sent and slow[2].sent == fast[2].sent
    assert slow[0].stats["malformed_dropped"] == 2
