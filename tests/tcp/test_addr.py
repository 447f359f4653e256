"""PackedAddresses gives exactly ipaddress's bytes, rejects what ipaddress rejects, and stays bounded."""

from __future__ import annotations

import ipaddress

import pytest

from utcp.tcp.addr import PackedAddresses


@pytest.mark.parametrize("address", ["198.18.0.1", "0.0.0.0", "255.255.255.255", "2001:db8::1"])
def test_packed_is_what_ipaddress_packs(address: str) -> None:
    packed = PackedAddresses()
    assert packed(address) == ipaddress.ip_address(address).packed
    assert packed(address) == ipaddress.ip_address(address).packed  # from the cache


@pytest.mark.parametrize("address", ["198.18.0", "198.18.0.256", "host", ""])
def test_a_bad_address_raises_value_error_every_time(address: str) -> None:
    packed = PackedAddresses()
    for _ in range(2):
        with pytest.raises(ValueError):
            packed(address)


def test_the_cache_is_bounded() -> None:
    packed = PackedAddresses()
    for i in range(5000):
        packed(str(ipaddress.IPv4Address(0xC6120000 + i)))
    assert len(packed._cache) <= 4096
    assert packed("198.18.0.7") == bytes([198, 18, 0, 7])
