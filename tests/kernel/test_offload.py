"""Opt-in TUN offloads (IFF_VNET_HDR, TSO both ways, utcp.io.gso): echo transfers stay byte-exact, with
super-segments written through the write thread and in place;
and the stack's default receive buffer (utcp.io.stack.stack_config) at MTU 9000."""

from __future__ import annotations

import dataclasses

import pytest

from tests.kernel.transfers import kernel_client_to_utcp_echo, utcp_client_to_kernel_echo
from utcp.io.stack import STACK_RECV_BUFFER, UtcpStack
from utcp.lab.netns import Namespace
from utcp.tcp.config import TcpConfig

MB = 2**20


@pytest.mark.parametrize("writes", ["thread", "in place"])
@pytest.mark.parametrize("run", [kernel_client_to_utcp_echo, utcp_client_to_kernel_echo])
async def test_echo_with_offloads_is_byte_exact(
    namespace: Namespace, monkeypatch: pytest.MonkeyPatch, run: object, writes: str
) -> None:
    # utcp sends data both ways (the echo server answers), so TSO super-segments leave in both: through
    # the C helper's write thread (a vnet header and the segment in one writev) and in place
    if writes == "thread":
        pytest.importorskip("utcp.io._tunio", reason="the write thread is the optional C helper's")
    monkeypatch.setenv("UTCP_TUN_WRITE_THREAD", "1" if writes == "thread" else "0")
    transfer = await run(namespace, 8 * MB, offload=True)  # type: ignore[operator]
    assert transfer.received == 8 * MB
    assert transfer.sha256_ok
    assert transfer.runtime["gso_out"] > 0  # the kernel took super-segments, not only single packets
    assert "link_write_errors" not in transfer.runtime


async def test_the_stack_default_window_opens_past_256_kib_at_mtu_9000(namespace: Namespace) -> None:
    # UtcpStack without a config: stack_config(), a 4 MiB receive buffer (utcp.io.stack)
    transfer = await kernel_client_to_utcp_echo(namespace, 8 * MB, mtu=9000)
    assert transfer.received == 8 * MB
    assert transfer.sha256_ok
    assert transfer.stats is not None
    assert transfer.stats.rcv_wnd > 256 * 1024


def test_the_stack_default_config_is_tcp_config_with_a_4_mib_receive_buffer() -> None:
    stack = UtcpStack(netns=None)  # no device until the stack is entered
    assert stack.host.config == dataclasses.replace(TcpConfig(), recv_buffer=STACK_RECV_BUFFER)
    assert STACK_RECV_BUFFER == 4 * 2**20
