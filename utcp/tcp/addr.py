"""Address strings to the 4 (or 16) network-order bytes the keyed hashes take, remembered per owner.

`ipaddress.ip_address(a).packed` costs ~2 us; a host hashes the same few addresses for every connection
(ISN, TS offset, ephemeral port offset), so each hashing object keeps its own small cache.
"""

from __future__ import annotations

import ipaddress

__all__ = ["PackedAddresses"]

_LIMIT = 4096  # entries; bounded so a flood of peer addresses cannot grow it without end


class PackedAddresses:
    """`packed(address)` is `ipaddress.ip_address(address).packed` (ValueError for a bad one)."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[str, bytes] = {}

    def __call__(self, address: str) -> bytes:
        packed = self._cache.get(address)
        if packed is None:
            packed = ipaddress.ip_address(address).packed
            if len(self._cache) >= _LIMIT:
                self._cache.clear()
            self._cache[address] = packed
        return packed
