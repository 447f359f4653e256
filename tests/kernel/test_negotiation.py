"""Must-show 6: a utcp SYN offering MSS, SACK, TS and WS gets the kernel's SYN-ACK with all four, and
utcp then uses what was negotiated. Checked on the wire, in the pcap the runtime wrote."""

from __future__ import annotations

from pathlib import Path

from tests.kernel.helpers import KERNEL, UTCP
from tests.kernel.transfers import utcp_client_to_kernel_echo
from utcp.lab.netns import Namespace
from utcp.sim.impair import Impairment, RandomImpairment
from utcp.tcp.config import TcpConfig
from utcp.wire.codec import parse_ipv4
from utcp.wire.packet import IPv4Packet, Mss, Nop, Sack, SackPermitted, TcpFlags, Timestamps, WindowScale
from utcp.wire.pcap import read_pcap

NBYTES = 2 * 2**20
TUN_MTU = 1280  # the kernel advertises MSS 1240; utcp's own MTU stays 1500 (MSS 1460)
UTCP_WSCALE = 7
TS_OPTION_BYTES = 12  # NOP, NOP, kind 8 length 10


async def test_syn_options_are_negotiated_with_the_kernel_and_used(
    namespace: Namespace, tmp_path: Path
) -> None:
    pcap = tmp_path / "utcp.pcap"
    config = TcpConfig(window_scale=UTCP_WSCALE, sack=True, timestamps=True)
    # Reordering on the kernel -> utcp path makes utcp's ACKs carry SACK blocks.
    reorder: RandomImpairment[bytes] = RandomImpairment(
        Impairment(reorder=0.03, reorder_delay=0.004, seed=11), salt="in"
    )
    transfer = await utcp_client_to_kernel_echo(
        namespace, NBYTES, pcap=pcap, tun_mtu=TUN_MTU, config=config, impair_inbound=reorder
    )
    assert transfer.received == NBYTES and transfer.sha256_ok
    assert reorder.stats.reordered > 0

    packets: list[IPv4Packet] = [parse_ipv4(raw) for _, raw in read_pcap(pcap)]
    ours = [p for p in packets if p.src == UTCP]
    theirs = [p for p in packets if p.src == KERNEL]

    syn = next(p for p in ours if p.tcp.flags & TcpFlags.SYN)
    assert not syn.tcp.flags & TcpFlags.ACK
    assert syn.tcp.option(Mss) == Mss(1460)
    assert syn.tcp.option(SackPermitted) is not None
    assert syn.tcp.option(Timestamps) is not None
    assert syn.tcp.option(WindowScale) == WindowScale(UTCP_WSCALE)

    synack = next(p for p in theirs if p.tcp.flags & TcpFlags.SYN)
    assert synack.tcp.flags & TcpFlags.ACK
    kinds = [type(o) for o in synack.tcp.options]
    assert kinds == [Mss, SackPermitted, Timestamps, Nop, WindowScale]  # Linux's SYN-ACK layout
    assert synack.tcp.option(Mss) == Mss(TUN_MTU - 40)
    kernel_ts = synack.tcp.option(Timestamps)
    assert kernel_ts is not None and kernel_ts.tsecr == syn.tcp.option(Timestamps).tsval  # type: ignore[union-attr]

    after_handshake = [p for p in ours if not p.tcp.flags & (TcpFlags.SYN | TcpFlags.RST)]
    data = [p for p in after_handshake if p.tcp.payload]
    # MSS: the kernel's MSS bounds data plus the 12 bytes of the timestamp option (RFC 7323 / Linux
    # tcp_current_mss), and utcp fills segments up to it.
    assert max(len(p.tcp.payload) for p in data) == TUN_MTU - 40 - TS_OPTION_BYTES
    # Timestamps: on every segment once negotiated (RFC 7323 3.2).
    assert all(p.tcp.option(Timestamps) is not None for p in after_handshake)
    # Window scaling: utcp's advertised windows are its buffer >> its shift: above what 16 bits can say
    # unscaled, never above the receive buffer.
    windows = [p.tcp.window << UTCP_WSCALE for p in after_handshake]
    assert max(windows) > 65535
    assert max(windows) <= config.recv_buffer + (1 << UTCP_WSCALE)
    # SACK: the reordered kernel data made utcp send SACK blocks above its cumulative ACK.
    above_ack = [
        (p.tcp.ack, left, right)
        for p in after_handshake
        for left, right in (p.tcp.option(Sack) or Sack(())).blocks
        if 0 < (left - p.tcp.ack) % 2**32 < 2**31
    ]
    assert above_ack  # not only D-SACKs: blocks describing data held beyond a hole
    assert all(0 < (right - left) % 2**32 < 2**31 for _, left, right in above_ack)
