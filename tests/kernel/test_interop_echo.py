"""Must-show 1 and 2: bulk echo transfers between utcp and the Linux kernel through a TUN device.

1. 50 MB each way, byte-exact (SHA-256), utcp as server and as client.
2. The same over an impaired path (2% loss, 2% reordering, 1% duplication, both directions) still
   arrives byte-exact, and SACK pays: utcp retransmits fewer bytes with SACK than with SACK off.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.kernel.transfers import Transfer, kernel_client_to_utcp_echo, utcp_client_to_kernel_echo
from utcp.lab.netns import Namespace
from utcp.sim.impair import Impairment, RandomImpairment
from utcp.tcp.config import TcpConfig

MB = 2**20
BULK = 50 * MB
IMPAIRED = BULK  # must-show 2: the same 50 MB transfers, over the impaired path
PATH = Impairment(loss=0.02, reorder=0.02, duplicate=0.01, reorder_delay=0.003)

Runner = Callable[..., Awaitable[Transfer]]
DIRECTIONS: dict[str, Runner] = {
    "kernel-client-utcp-server": kernel_client_to_utcp_echo,
    "utcp-client-kernel-server": utcp_client_to_kernel_echo,
}


def _report(record_property: Callable[[str, object], None], name: str, transfer: Transfer) -> None:
    record_property(f"{name}_MB_per_s", round(transfer.mb_per_s, 2))
    print(
        f"\n{name}: {transfer.nbytes / MB:.0f} MB echoed in {transfer.seconds:.2f} s = "
        f"{transfer.mb_per_s:.2f} MB/s each way"
    )


@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
async def test_50mb_echo_is_byte_exact(
    namespace: Namespace, direction: str, record_property: Callable[[str, object], None]
) -> None:
    transfer = await DIRECTIONS[direction](namespace, BULK)
    _report(record_property, direction, transfer)
    assert transfer.received == BULK
    assert transfer.sha256_ok


def _segment_identity(raw: bytes) -> tuple[bytes, int, int]:
    """Ports and seq, flags, IP total length: the same segment gets the same fate in both runs."""
    ihl = (raw[0] & 0x0F) * 4
    return raw[ihl : ihl + 8], raw[ihl + 13], int.from_bytes(raw[2:4], "big")


def _impairments(seed: int) -> dict[str, Any]:
    config = dataclasses.replace(PATH, seed=seed)
    return {
        "impair_inbound": RandomImpairment(config, salt="in", key=_segment_identity),
        "impair_outbound": RandomImpairment(config, salt="out", key=_segment_identity),
    }


@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
async def test_impaired_echo_is_byte_exact_and_sack_cuts_retransmissions(
    namespace: Namespace, direction: str, record_property: Callable[[str, object], None]
) -> None:
    run = DIRECTIONS[direction]
    with_sack = await run(namespace, IMPAIRED, config=TcpConfig(sack=True), **_impairments(1))
    without_sack = await run(namespace, IMPAIRED, config=TcpConfig(sack=False), **_impairments(1))
    _report(record_property, f"{direction}-impaired-sack", with_sack)
    _report(record_property, f"{direction}-impaired-nosack", without_sack)
    for transfer in (with_sack, without_sack):
        assert transfer.received == IMPAIRED
        assert transfer.sha256_ok
    sack_bytes = with_sack.stats.retransmitted_bytes
    nosack_bytes = without_sack.stats.retransmitted_bytes
    print(f"retransmitted bytes: SACK {sack_bytes}, no SACK {nosack_bytes}")
    record_property("retransmitted_bytes_sack", sack_bytes)
    record_property("retransmitted_bytes_nosack", nosack_bytes)
    assert sack_bytes > 0  # the path really lost packets
    assert sack_bytes < nosack_bytes, f"SACK run {with_sack.stats} vs no-SACK run {without_sack.stats}"
    # SACK was negotiated and drove recovery in one run, and was absent from the other.
    assert with_sack.stats.sacked_bytes >= 0 and with_sack.counters.get("TCPSackRecovery", 0) > 0
    assert without_sack.counters.get("TCPSackRecovery", 0) == 0
