"""Namespaces and TUN devices: created where asked, nothing leaks to the root namespace, packets
flow both ways (the kernel's SYN is read and parsed; our crafted RST reaches the kernel's socket)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import trio
import trio.testing

from tests.kernel.helpers import KERNEL, UTCP, CallCount, closed_port_syn
from utcp.io.tun import TunDevice
from utcp.lab.netns import Namespace, NamespaceError, netns
from utcp.wire.codec import build_ipv4, parse_ipv4
from utcp.wire.packet import IPv4Packet, Mss, SackPermitted, TcpFlags, TcpSegment, Timestamps, WindowScale


def _root_links() -> str:
    return subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True).stdout


def _root_sysctl(name: str) -> str:
    return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, check=True).stdout


def test_namespace_is_created_configured_and_deleted(privileged: None) -> None:
    root_ts = _root_sysctl("net.ipv4.tcp_timestamps")
    with netns() as ns:
        assert ns.name.startswith("utcp-") and ns.exists()
        assert "lo" in ns.ip("-br", "link") and "UP" in ns.ip("-br", "link")
        assert ns.sysctl_get("net.ipv6.conf.default.disable_ipv6") == "1"
        ns.sysctl("net.ipv4.tcp_timestamps", 2)
        assert ns.sysctl_get("net.ipv4.tcp_timestamps") == "2"
        counters = ns.nstat()
        assert "TcpExtPAWSEstab" in counters and "TcpInSegs" in counters
        name = ns.name
    after = _root_sysctl("net.ipv4.tcp_timestamps")
    assert after == root_ts  # the namespace's sysctl never touched the root's
    assert not Namespace(name, owned=False).exists()


def test_netlink_configuration_stays_inside_and_iproute2_sees_it(privileged: None) -> None:
    root_links = _root_links()
    with netns() as a, netns() as b:
        a.add_veth("nla", "nlb", b)
        a.add_address("nla", "198.18.7.1/24")
        b.add_address("nlb", "198.18.7.2/24")
        a.set_up("nla")
        b.set_up("nlb")
        b.add_route("198.18.8.0/24", via="198.18.7.1")
        b.add_route("198.18.9.0/24", device="nlb")
        # iproute2 is the independent observer of what pyroute2 configured
        assert "nla" in a.ip("-br", "link") and "nlb" not in a.ip("-br", "link")
        assert "198.18.7.2/24" in b.ip("-br", "addr", "show", "nlb")
        routes = b.ip("route")
        assert "198.18.8.0/24 via 198.18.7.1 dev nlb" in routes and "198.18.9.0/24 dev nlb" in routes
        assert [str(i) for i in b.ipv4_addresses()] == ["198.18.7.2/24"]
        assert [str(i) for i in b.ipv4_addresses(scope="host")] == ["127.0.0.1/8"]
        with pytest.raises(
            NamespaceError, match=r"route 198.18.8.0/24 via 198.18.7.1 dev nlb in .*: File exists"
        ):
            b.add_route("198.18.8.0/24", via="198.18.7.1", device="nlb")
        with pytest.raises(NamespaceError, match="no interface 'nope'"):
            a.set_up("nope")
    assert _root_links() == root_links  # nothing appeared in the root namespace


def test_namespace_is_deleted_when_the_body_raises(privileged: None) -> None:
    names = []
    try:
        with netns() as ns:
            names.append(ns.name)
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert names and not Namespace(names[0], owned=False).exists()


def test_tun_device_exists_only_inside_its_namespace(namespace: Namespace) -> None:
    before = _root_links()
    with TunDevice.open(address=f"{KERNEL}/24", netns=namespace.name, mtu=1400) as tun:
        links = namespace.ip("-d", "link", "show", tun.name)
        assert "mtu 1400" in links and "tun" in links
        assert f"{KERNEL}/24" in namespace.ip("-br", "addr", "show", tun.name)
        assert "198.18.0.0/24" in namespace.ip("route")
        assert namespace.sysctl_get(f"net.ipv6.conf.{tun.name}.disable_ipv6") == "1"
        assert tun.name not in _root_links() or tun.name in before
    assert tun.name not in namespace.ip("-br", "link")  # closing the fd removed the device


async def test_kernel_syn_is_read_and_our_rst_reaches_the_kernel(namespace: Namespace) -> None:
    with TunDevice.open(address=f"{KERNEL}/24", netns=namespace.name, mtu=1400) as tun:
        client = namespace.popen(
            [
                sys.executable,
                "-c",
                "import socket, sys\n"
                "s = socket.socket(); s.settimeout(5)\n"
                "try:\n    s.connect(('198.18.0.2', 80))\n"
                "except OSError as e:\n    print(type(e).__name__)\n",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            syn = None
            with trio.fail_after(5):
                while syn is None:
                    for raw in await tun.receive_batch():
                        pkt = parse_ipv4(raw)
                        if isinstance(pkt.payload, TcpSegment) and pkt.tcp.flags & TcpFlags.SYN:
                            syn = pkt
            assert (syn.src, syn.dst, syn.tcp.dst_port) == (KERNEL, UTCP, 80)
            mss = syn.tcp.option(Mss)
            assert mss is not None and mss.value == 1400 - 40
            assert syn.tcp.option(SackPermitted) is not None
            assert syn.tcp.option(Timestamps) is not None
            assert syn.tcp.option(WindowScale) is not None
            rst = IPv4Packet(
                src=UTCP,
                dst=KERNEL,
                payload=TcpSegment(
                    src_port=80,
                    dst_port=syn.tcp.src_port,
                    seq=0,
                    ack=(syn.tcp.seq + 1) % 2**32,
                    flags=TcpFlags.RST | TcpFlags.ACK,
                    window=0,
                ),
            )
            assert tun.try_send(build_ipv4(rst))
            out, _ = await trio.to_thread.run_sync(client.communicate)
            assert out.strip() == "ConnectionRefusedError"
        finally:
            namespace.terminate(client)


async def test_an_answer_written_inside_our_write_is_read_without_waiting(
    namespace: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Written in place, the kernel answers a SYN to a closed port with an RST inside our write(2):
    # receive_batch reads it before asking epoll, and is still a checkpoint; with nothing queued it waits
    # and can be cancelled. (Through the write thread it comes a moment later: test_tun_write_thread.)
    waits = CallCount(monkeypatch, trio.lowlevel, "wait_readable")
    with TunDevice.open(address=f"{KERNEL}/24", netns=namespace.name, mtu=1400, write_thread=False) as tun:
        syn = closed_port_syn(40000)
        for _ in range(3):
            assert tun.try_send(syn)
            with trio.testing.assert_checkpoints(), trio.fail_after(5):
                batch = await tun.receive_batch()
            (rst,) = [parse_ipv4(raw) for raw in batch]
            assert rst.tcp.flags & TcpFlags.RST and rst.tcp.dst_port == 40000
        assert waits.count == 0
        with trio.move_on_after(0.05) as scope:
            await tun.receive_batch()
        assert scope.cancelled_caught
