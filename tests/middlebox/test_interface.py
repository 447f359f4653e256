"""Every box keeps the common contract: bad input is counted and dropped, never raised."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.middlebox.packets import CLIENT, RS, VIP, S, tcp
from tests.middlebox.test_fullnat import make_lb
from utcp.middlebox import (
    DROPPED_BAD_CHECKSUM,
    DROPPED_UNPARSEABLE,
    Direction,
    ImpairBox,
    Middlebox,
    MiddleboxNode,
    RsToa,
    Snat,
    SnatConfig,
    from_networks,
)
from utcp.wire.codec import build_ipv4

BOXES: dict[str, Callable[[], Middlebox]] = {
    "fullnat": make_lb,
    "rs-toa": RsToa,
    "snat": lambda: Snat(SnatConfig(outside_address="198.19.3.51")),
    "impair": lambda: ImpairBox([]),
}

GARBAGE = [b"", b"\x45", b"\x45\x00garbage", b"\x60" + bytes(39), bytes(range(256))]


@pytest.mark.parametrize("name", BOXES)
def test_box_implements_the_protocol(name: str) -> None:
    box = BOXES[name]()
    assert isinstance(box, Middlebox)
    assert box.next_deadline() is None
    assert box.on_timer(0.0) == []


@pytest.mark.parametrize("name", BOXES)
@pytest.mark.parametrize("data", GARBAGE)
def test_unparseable_bytes_are_counted_and_dropped(name: str, data: bytes) -> None:
    box = BOXES[name]()
    assert box.process(data, Direction.TO_SERVER, 0.0) == []
    assert box.stats[DROPPED_UNPARSEABLE] + box.stats[DROPPED_BAD_CHECKSUM] == 1


@pytest.mark.parametrize("name", BOXES)
def test_a_bad_tcp_checksum_is_counted_and_dropped(name: str) -> None:
    box = BOXES[name]()
    data = bytearray(build_ipv4(tcp(CLIENT, 40000, VIP, 3306, S, 1, payload=b"abc")))
    data[-1] ^= 0x10
    assert box.process(bytes(data), Direction.TO_SERVER, 0.0) == []
    assert box.stats[DROPPED_BAD_CHECKSUM] == 1


@pytest.mark.parametrize("name", BOXES)
def test_valid_bytes_are_accepted_like_values(name: str) -> None:
    packet = tcp(CLIENT, 40000, RS, 80, S, 1)
    from_bytes = BOXES[name]().process(build_ipv4(packet), Direction.TO_SERVER, 0.0)
    from_value = BOXES[name]().process(packet, Direction.TO_SERVER, 0.0)
    assert from_bytes == from_value


def test_node_adapter_queues_outputs_and_classifies_directions() -> None:
    box = ImpairBox([])
    node = MiddleboxNode(box, from_networks(["198.18.0.0/24"]))
    inbound = tcp(CLIENT, 40000, RS, 80, S, 1)
    node.receive(inbound, 0.0)
    assert node.packets_to_send(0.0) == [inbound]
    assert node.packets_to_send(0.0) == []
    to_rs = from_networks([RS], by="dst")
    assert to_rs(inbound) is Direction.TO_SERVER
    assert from_networks(["198.18.0.0/24"])(tcp(RS, 80, CLIENT, 40000, S, 1)) is Direction.TO_CLIENT
    assert node.next_deadline() is None
    node.on_timer(1.0)
    assert node.packets_to_send(1.0) == []
