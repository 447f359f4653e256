"""The floor under the connection benchmark's server figure: the least a Python program can do per
connection over TUN, measured against the same kernel client as `conn_per_s_kernel_client`.

The responder is not a TCP stack: one loop (no trio, no tasks) reads the TUN fd until EAGAIN, waits in
epoll, verifies each packet's checksums (the C word sum utcp uses), and answers the rr-client's exchange
from a dict of ISNs: SYN -> SYN-ACK (MSS option), the request byte -> the reply byte with FIN, the
client's FIN -> its ACK (no TIME-WAIT, no timers, no retransmission, no options beyond MSS). Whatever
utcp adds to a connection (state machine, options, timers, the trio API) comes on top of this. Answers
leave as the stack's do, through `TunDevice.try_send`: the C helper's write thread where it is built.

Run (root): .venv/bin/python -m tools.bench_conn_floor [--count N] [--runs R]
Each run prints the floor's and utcp's conn/s (utcp: tools.bench's conn_kernel_client) alternately in
the same namespace setup, with the CPU the responder thread spent per connection.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import select
import statistics
import struct
import threading
import time
from collections.abc import Callable

import structlog
import trio

from tools.bench.kernel_side import RR_CLIENT_THREADS
from tools.bench.runner import UTCP, KernelProcess, conn_kernel_client
from utcp.io.tun import TunDevice
from utcp.lab.netns import Namespace, netns
from utcp.wire.checksum import checksum_of, ipv4_tcp_verifies, word_sum

PORT = 5004
SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10
IP_TCP = struct.Struct("!BBHHHBBH4s4sHHIIBBHHH")  # IPv4 (no options) + TCP fixed header
MSS_OPTION = struct.pack("!BBH", 2, 4, 1460)
REPLY = b"y"


def _packet(
    src: bytes, dst: bytes, sport: int, dport: int, *, seq: int, ack: int, flags: int,
    options: bytes = b"", payload: bytes = b"",
) -> bytes:  # fmt: skip
    tcp_len = 20 + len(options) + len(payload)
    offset = (20 + len(options)) << 2
    ip_tcp = (0x45, 0, 20 + tcp_len, 0, 0x4000, 64, 6, 0, src, dst)
    header = bytearray(IP_TCP.pack(*ip_tcp, sport, dport, seq, ack, offset, flags, 65535, 0, 0))
    header[10:12] = checksum_of(word_sum(header, 0, 20)).to_bytes(2, "big")
    segment = bytes(header[20:]) + options + payload
    pseudo = word_sum(src + dst) + 6 + tcp_len
    header[36:38] = checksum_of(pseudo + word_sum(segment)).to_bytes(2, "big")
    return bytes(header) + options + payload


class FloorResponder:
    """The rr-client's peer in as few steps as Python allows (see the module docstring)."""

    def __init__(self, fd: int, send: Callable[[bytes], bool] | None = None) -> None:
        self.fd = fd
        self.send = send  # None: write(2) in place
        self.isn: dict[tuple[bytes, int], int] = {}
        self.served = 0
        self.dropped = 0
        self.cpu_seconds = 0.0
        self.stop = threading.Event()

    def answer(self, pkt: bytes) -> bytes | None:
        if len(pkt) < 40 or pkt[0] != 0x45 or pkt[9] != 6 or not ipv4_tcp_verifies(pkt, len(pkt)):
            self.dropped += 1
            return None
        fields = IP_TCP.unpack_from(pkt)
        src, dst, sport, dport, seq = fields[8:13]  # after the IPv4 header's 8 fields; then the ack
        off, flags = fields[14], fields[15]
        key = (src, sport)
        if flags & RST:
            self.isn.pop(key, None)
            return None
        if flags & SYN:
            isn = self.isn[key] = (seq * 2654435761) & 0xFFFFFFFF
            ack = (seq + 1) & 0xFFFFFFFF
            return _packet(dst, src, dport, sport, seq=isn, ack=ack, flags=SYN | ACK, options=MSS_OPTION)
        isn = self.isn.get(key)
        if isn is None:
            return None
        length = len(pkt) - 20 - (off >> 4) * 4
        if length:  # the request: the reply byte and our FIN
            ack = (seq + length) & 0xFFFFFFFF
            return _packet(dst, src, dport, sport, seq=(isn + 1) & 0xFFFFFFFF, ack=ack, flags=FIN | PSH | ACK,
                           payload=REPLY)  # fmt: skip
        if flags & FIN:  # the client's close: ack it and forget the connection
            del self.isn[key]
            self.served += 1
            return _packet(dst, src, dport, sport, seq=(isn + 3) & 0xFFFFFFFF, ack=(seq + 1) & 0xFFFFFFFF,
                           flags=ACK)  # fmt: skip
        return None  # the handshake's last ACK, the ACK of our FIN

    def run(self) -> None:
        start = time.thread_time()
        fd, answer, read = self.fd, self.answer, os.read
        send = self.send or functools.partial(os.write, fd)
        poller = select.epoll()
        poller.register(fd, select.EPOLLIN)
        try:
            while not self.stop.is_set():
                try:
                    pkt = read(fd, 65536)
                except BlockingIOError:
                    poller.poll(0.1)
                    continue
                out = answer(pkt)
                if out is not None and not send(out):
                    self.dropped += 1  # the write thread's queue is full: lost, as on a wire
        finally:
            poller.close()
            self.cpu_seconds = time.thread_time() - start


async def floor_server(ns: Namespace, count: int, threads: int = RR_CLIENT_THREADS) -> tuple[float, float]:
    """(conn/s, responder CPU us per connection) for `count` rr-client connections to the floor."""
    tun = await trio.to_thread.run_sync(
        lambda: TunDevice.open(address="198.18.0.1/24", netns=ns.name, name="ufloor%d")
    )
    try:
        responder = FloorResponder(tun.fileno(), tun.try_send)
        thread = threading.Thread(target=responder.run, name="floor-responder")
        thread.start()
        try:
            client = KernelProcess(ns, "rr-client", UTCP, str(PORT), str(count), str(threads))
            got = await client.result()
        finally:
            responder.stop.set()
            await trio.to_thread.run_sync(thread.join)
    finally:
        tun.close()
    if got["failures"] or responder.served != count:
        raise RuntimeError(f"floor: {responder.served} of {count} served, failures {got['failures']}")
    return float(got["count"]) / float(got["seconds"]), responder.cpu_seconds / count * 1e6


async def main_async(count: int, runs: int) -> None:
    floors: list[float] = []
    utcps: list[float] = []
    for _ in range(runs):
        with netns() as ns:
            rate, cpu = await floor_server(ns, count)
        floors.append(rate)
        print(f"floor: {rate:8,.0f} conn/s  ({cpu:5.1f} us CPU per connection in the responder)", flush=True)
        with netns() as ns:
            utcps.append(await conn_kernel_client(ns, count))
        print(f"utcp:  {utcps[-1]:8,.0f} conn/s", flush=True)
    floor, utcp = statistics.median(floors), statistics.median(utcps)
    print(f"medians: floor {floor:,.0f}, utcp {utcp:,.0f} conn/s (utcp/floor {utcp / floor:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.count < 1 or args.runs < 1:
        parser.error("--count and --runs must be at least 1")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    trio.run(main_async, args.count, args.runs)


if __name__ == "__main__":
    main()
