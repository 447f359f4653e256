"""Opt-in TUN offloads (IFF_VNET_HDR, TSO both ways, utcp.io.gso): echo transfers stay byte-exact."""

from __future__ import annotations

import pytest

from tests.kernel.transfers import kernel_client_to_utcp_echo, utcp_client_to_kernel_echo
from utcp.lab.netns import Namespace

MB = 2**20


@pytest.mark.parametrize("run", [kernel_client_to_utcp_echo, utcp_client_to_kernel_echo])
async def test_echo_with_offloads_is_byte_exact(namespace: Namespace, run: object) -> None:
    transfer = await run(namespace, 8 * MB, offload=True)  # type: ignore[operator]
    assert transfer.received == 8 * MB
    assert transfer.sha256_ok
