"""The lab against the real kernel: endpoints of both kinds behind one interface, observers that agree,
captures, and teardown that leaves nothing behind."""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import pytest
import trio

from utcp.io.api import UtcpStream
from utcp.lab import KernelEndpoint, Lab, LabError, SocketOptions, SocketState, UtcpEndpoint, parse_ss
from utcp.wire.codec import parse_ipv4
from utcp.wire.packet import TcpFlags, TcpSegment

PORT = 8000


def namespace_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


class Recorder:
    def __init__(self) -> None:
        self.packets: list[tuple[str, bytes]] = []

    def __call__(self, link: str, raw: bytes, time: float | None) -> None:
        self.packets.append((link, raw))

    def segments(self, link: str) -> list[TcpSegment]:
        out = []
        for name, raw in self.packets:
            seg = parse_ipv4(raw).payload
            if name == link and isinstance(seg, TcpSegment):
                out.append(seg)
        return out


async def echo_once(listener: trio.abc.Listener[trio.abc.HalfCloseableStream]) -> None:
    stream = await listener.accept()
    async with stream:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)
        await stream.send_eof()


async def exchange(stream: trio.abc.HalfCloseableStream, data: bytes) -> bytes:
    await stream.send_all(data)
    await stream.send_eof()
    got = bytearray()
    while chunk := await stream.receive_some(65536):
        got += chunk
    return bytes(got)


@pytest.mark.parametrize("server_impl", ["kernel", "utcp"])
async def test_either_implementation_serves_the_other_through_one_interface(
    privileged: None, server_impl: str
) -> None:
    record = Recorder()
    async with Lab(record=record) as lab:
        ns = lab.namespace("server")
        utcp = await lab.utcp(ns, "198.18.0.2/24", peer="198.18.0.1", policy="linux", link="wire")
        kernel = lab.kernel(ns)
        assert kernel.address == "198.18.0.1"
        server: KernelEndpoint | UtcpEndpoint = kernel if server_impl == "kernel" else utcp
        client: KernelEndpoint | UtcpEndpoint = utcp if server_impl == "kernel" else kernel
        listener = await server.listen(PORT)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo_once, listener)
            stream = await client.connect(server.address, PORT, options=SocketOptions(local_port=41000))
            assert await exchange(stream, b"x" * 100_000) == b"x" * 100_000
        states = await server.sockets()
        assert SocketState("LISTEN", ("0.0.0.0", PORT), ("0.0.0.0", 0)) in states
        counters = await server.counters()
        assert counters["TcpPassiveOpens"] >= 1
        assert counters["TcpInSegs"] > 0
        await stream.aclose()
        await listener.aclose()
    segs = record.segments("wire")
    assert segs[0].flags == TcpFlags.SYN and segs[0].src_port == 41000
    assert any(s.flags & TcpFlags.FIN for s in segs)


@pytest.mark.parametrize("client_impl", ["kernel", "utcp"])
async def test_a_per_socket_port_range_picks_the_ephemeral_ports(privileged: None, client_impl: str) -> None:
    async with Lab() as lab:
        ns = lab.namespace("server")
        utcp = await lab.utcp(ns)
        kernel = lab.kernel(ns)
        server: KernelEndpoint | UtcpEndpoint = kernel if client_impl == "utcp" else utcp
        client: KernelEndpoint | UtcpEndpoint = utcp if client_impl == "utcp" else kernel
        listener = await server.listen(PORT)
        options = SocketOptions(local_port_range=(40000, 40001))
        streams = [await client.connect(server.address, PORT, options=options) for _ in range(2)]
        accepted = [await listener.accept() for _ in streams]
        local_ports = set()
        for stream in streams:
            sockname = stream.getsockname() if isinstance(stream, UtcpStream) else stream.socket.getsockname()
            local_ports.add(sockname[1])
        assert local_ports == {40000, 40001}
        for stream in (*streams, *accepted):
            await stream.aclose()
        await listener.aclose()


async def test_nagle_stays_on_unless_nodelay_is_asked(privileged: None) -> None:
    async with Lab() as lab:
        ns = lab.namespace("server")
        utcp = await lab.utcp(ns)
        kernel = lab.kernel(ns)
        listener = await utcp.listen(PORT)
        plain = await kernel.connect(utcp.address, PORT)  # trio.SocketStream alone would set TCP_NODELAY
        quick = await kernel.connect(utcp.address, PORT, options=SocketOptions(nodelay=True))
        assert plain.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        assert quick.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        back = await kernel.listen(PORT + 1)
        ours = await utcp.connect(kernel.address, PORT + 1, options=SocketOptions(nodelay=True))
        assert isinstance(ours, UtcpStream) and ours.connection.config.nodelay
        for stream in (plain, quick, ours):
            await stream.aclose()
        await listener.aclose()
        await back.aclose()


async def test_abort_sends_an_rst_from_either_side(privileged: None) -> None:
    record = Recorder()
    async with Lab(record=record) as lab:
        ns = lab.namespace("server")
        utcp = await lab.utcp(ns, link="wire")
        kernel = lab.kernel(ns)
        listener = await kernel.listen(PORT)
        stream = await utcp.connect(kernel.address, PORT)
        accepted = await listener.accept()
        kernel.abort(accepted)  # SO_LINGER 0: RST from the kernel
        with pytest.raises(trio.BrokenResourceError):
            with trio.fail_after(5):
                await stream.receive_some(10)
        stream2 = await utcp.connect(kernel.address, PORT)
        await listener.accept()
        utcp.abort(stream2)
        await trio.sleep(0.05)
        assert not [s for s in await kernel.sockets() if s.state == "ESTAB"]
    rsts = [s for s in record.segments("wire") if s.flags & TcpFlags.RST]
    assert {s.src_port for s in rsts} == {PORT, stream2.getsockname()[1]}


async def test_veth_routes_and_a_lo_capture(privileged: None) -> None:
    record = Recorder()
    async with Lab(record=record) as lab:
        a = lab.namespace("a")
        b = lab.namespace("b")
        lab.veth(a, "198.18.1.1/24", b, "198.18.1.2/24")
        lab.capture(a, "lo", "a-lo")
        kb = lab.kernel(b)
        assert kb.address == "198.18.1.2"
        listener = await kb.listen(PORT)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo_once, listener)
            stream = await lab.kernel(a).connect("198.18.1.2", PORT)
            assert await exchange(stream, b"hello") == b"hello"
        # loopback inside a: a self-connect is a kernel-only path, seen by the AF_PACKET capture
        ka = lab.kernel(a)
        with pytest.raises(ConnectionRefusedError):
            await ka.connect("127.0.0.1", 9)
        await trio.sleep(0.05)
    lo = record.segments("a-lo")
    assert [s.flags & (TcpFlags.SYN | TcpFlags.RST) for s in lo][:2] == [TcpFlags.SYN, TcpFlags.RST]


async def test_teardown_removes_namespaces_even_when_the_body_fails(privileged: None) -> None:
    created: list[str] = []
    with pytest.raises(RuntimeError, match="boom"):
        async with Lab() as lab:
            for role in ("doomed", "also"):
                ns = lab.namespace(role)
                await lab.utcp(ns)
                created.append(ns.name)
            assert set(created) <= namespace_names()
            raise RuntimeError("boom")
    # only ours: other tests running at the same time create and delete their own
    assert namespace_names().isdisjoint(created)


async def test_addresses_outside_the_benchmarking_range_are_refused(privileged: None) -> None:
    async with Lab() as lab:
        a = lab.namespace("a")
        b = lab.namespace("b")
        with pytest.raises(LabError, match=r"198\.18\.0\.0/15"):
            lab.veth(a, "10.0.0.1/24", b, "10.0.0.2/24")
        with pytest.raises(LabError, match=r"198\.18\.0\.0/15"):
            await lab.utcp(a, "192.0.2.2/24", peer="192.0.2.1")


async def test_the_lab_fixture_gives_a_working_lab(lab: Lab) -> None:
    ns = lab.namespace("solo")
    assert ns.exists()


def test_parse_ss_reads_states_and_mapped_addresses() -> None:
    text = (
        "ESTAB      0      0      198.18.0.1:8000      198.18.0.2:41000\n"
        "LISTEN     0      128    0.0.0.0:8000         0.0.0.0:*\n"
        "TIME-WAIT  0      0      [::ffff:198.18.0.1]:80 [::ffff:198.18.0.2]:5\n"
        "garbage\n"
    )
    assert parse_ss(text) == [
        SocketState("ESTAB", ("198.18.0.1", 8000), ("198.18.0.2", 41000)),
        SocketState("LISTEN", ("0.0.0.0", 8000), ("0.0.0.0", 0)),
        SocketState("TIME-WAIT", ("198.18.0.1", 80), ("198.18.0.2", 5)),
    ]


def readme_example(name: str) -> Callable[[Lab], Awaitable[None]]:
    """The README's Python block defining `name`, executed: the example is tested as printed."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if f"def {name}(" in b)
    scope: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), scope)
    return cast(Callable[[Lab], Awaitable[None]], scope[name])


async def test_the_readme_example(lab: Lab) -> None:
    await readme_example("test_kernel_counts_my_rst")(lab)
