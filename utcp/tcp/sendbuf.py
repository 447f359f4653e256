"""The send buffer: bytes the user queued, from the oldest unacknowledged byte to the newest queued one.

Positions are stream offsets (unbounded ints; the connection maps them to sequence numbers). A bytearray
with a consumed-prefix offset keeps append and acknowledge amortised O(1): the prefix is compacted only
when it is at least half the array.
"""

from __future__ import annotations

__all__ = ["SendBuffer"]

_COMPACT_MIN = 64 * 1024


class SendBuffer:
    """Queued bytes from offset `start` (the oldest unacknowledged byte) to `end` (exclusive)."""

    __slots__ = ("_buf", "_head", "end", "start")

    def __init__(self, start: int) -> None:
        self._buf = bytearray()
        self._head = 0  # index in _buf of offset `start`
        self.start = start
        # offset one past the newest queued byte: start + len(_buf) - _head, kept rather than worked
        # out (read on every send decision); only append moves it
        self.end = start

    def __len__(self) -> int:
        return len(self._buf) - self._head

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Queue bytes at the end."""
        self._buf += data
        self.end += len(data)

    def peek(self, offset: int, length: int) -> bytes:
        """A copy of `length` bytes from stream offset `offset` (clipped to what is queued)."""
        i = self._head + (offset - self.start)
        return bytes(self._buf[i : i + length])

    def locate(self, offset: int, length: int) -> tuple[bytearray, int, int]:
        """Where `peek(offset, length)`'s bytes are, without copying them: (buffer, start, end). Valid
        until the next append or release."""
        i = self._head + (offset - self.start)
        j, n = i + length, len(self._buf)
        return self._buf, i, n if n < j else j  # min(), spelled out: once per segment sent

    def release(self, upto: int) -> int:
        """Drop bytes before stream offset `upto` (they were acknowledged); returns how many."""
        end = self.end
        n = (end if end < upto else upto) - self.start  # min(), spelled out: once per ACK
        if n <= 0:
            return 0
        self._head += n
        self.start += n
        if self._head >= _COMPACT_MIN and self._head * 2 >= len(self._buf):
            del self._buf[: self._head]
            self._head = 0
        elif self._head == len(self._buf):
            self._buf.clear()
            self._head = 0
        return n
