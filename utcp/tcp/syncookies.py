"""SYN cookies (RFC 4987 3.6), as Linux builds them (net/ipv4/syncookies.c, no-timestamp variant).

When a listener's SYN queue is full the SYN-ACK carries a cookie as its ISN and no state is kept:

    cookie = H(4-tuple, 0) + SEG.SEQ + (count << 24) + ((H(4-tuple, count) + mss_index) mod 2**24)

`count` is a minute counter (Linux tcp_cookie_time: jiffies / (60 * HZ)); a cookie is good for
MAX_AGE - 1 minutes after the one it was made in (check_tcp_syn_cookie, MAX_SYNCOOKIE_AGE = 2).
The returning ACK (SEG.ACK - 1 = cookie, SEG.SEQ - 1 = the SYN's sequence) yields the MSS index back.
Only the MSS survives: window scaling, SACK and timestamps are not offered in a cookie SYN-ACK
(Linux encodes them in the TSval when the peer does timestamps; this implementation does not).
"""

from __future__ import annotations

import hashlib
import ipaddress

__all__ = ["MSS_TABLE", "SynCookies"]

# Linux msstab (syncookies.c): the MSS values a cookie can encode, by index
MSS_TABLE = (536, 1300, 1440, 1460)
COOKIE_BITS = 24
COOKIE_MASK = (1 << COOKIE_BITS) - 1
MAX_AGE = 2  # minutes (Linux MAX_SYNCOOKIE_AGE)
_U32 = 0xFFFFFFFF


def mss_index(mss: int) -> int:
    """The largest table entry not above `mss` (Linux __cookie_v4_init_sequence)."""
    for i in range(len(MSS_TABLE) - 1, 0, -1):
        if mss >= MSS_TABLE[i]:
            return i
    return 0


class SynCookies:
    """Cookie maker and checker keyed by `secret` (immutable once built)."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _hash(self, key: tuple[str, int, str, int], count: int, c: int) -> int:
        saddr, sport, daddr, dport = key
        msg = (
            ipaddress.IPv4Address(saddr).packed
            + ipaddress.IPv4Address(daddr).packed
            + sport.to_bytes(2, "big")
            + dport.to_bytes(2, "big")
            + (count & _U32).to_bytes(4, "big")
            + bytes((c,))
        )
        return int.from_bytes(hashlib.blake2s(msg, key=self._secret, digest_size=4).digest(), "big")

    @staticmethod
    def counter(now: float) -> int:
        return int(now // 60)

    def make(self, key: tuple[str, int, str, int], sseq: int, mss: int, now: float) -> int:
        """The cookie ISN for a SYN from `key` = (saddr, sport, daddr, dport) with sequence `sseq`."""
        count = self.counter(now)
        data = mss_index(mss)
        return (
            self._hash(key, 0, 0)
            + sseq
            + (count << COOKIE_BITS)
            + ((self._hash(key, count, 1) + data) & COOKIE_MASK)
        ) & _U32

    def check(self, key: tuple[str, int, str, int], sseq: int, cookie: int, now: float) -> int | None:
        """The MSS the cookie encodes, or None if it is forged or too old (Linux check_tcp_syn_cookie)."""
        count = self.counter(now)
        cookie = (cookie - self._hash(key, 0, 0) - sseq) & _U32
        diff = (count - (cookie >> COOKIE_BITS)) & (_U32 >> COOKIE_BITS)
        if diff >= MAX_AGE:
            return None
        data = (cookie - self._hash(key, count - diff, 1)) & COOKIE_MASK
        if data >= len(MSS_TABLE):
            return None
        return MSS_TABLE[data]
