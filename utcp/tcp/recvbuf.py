"""The receive side: in-order bytes waiting for the user, and out-of-order segments waiting for a hole.

Positions are stream offsets (unbounded ints). The out-of-order queue is a sorted list of non-overlapping
(start, end, data) pieces: a new segment is trimmed against what is already held, so a byte is stored, and
delivered, once (RFC 9293 3.10.7.4 seventh: "duplicates never delivered twice"). SACK blocks (RFC 2018 4)
are tracked apart, most recently changed first, like Linux tcp_sack_new_ofo_skb().
"""

from __future__ import annotations

import bisect

__all__ = ["ReadBuffer", "Reassembly"]

_COMPACT_MIN = 64 * 1024


class ReadBuffer:
    """In-order bytes not yet read by the user."""

    __slots__ = ("_buf", "_head")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._head = 0

    def __len__(self) -> int:
        return len(self._buf) - self._head

    def append(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    def read(self, max_bytes: int) -> bytes:
        """Up to `max_bytes` from the front."""
        head = self._head
        end = min(len(self._buf), head + max_bytes)
        with memoryview(self._buf) as view:
            out = bytes(view[head:end])  # one copy (a bytearray slice would be a second)
        if end == len(self._buf):
            self._buf.clear()
            self._head = 0
        else:
            self._head = end
            if end >= _COMPACT_MIN and end * 2 >= len(self._buf):
                del self._buf[:end]
                self._head = 0
        return out


class Reassembly:
    """Out-of-order data above rcv_nxt, plus the SACK blocks that describe it."""

    __slots__ = ("_ends", "_pieces", "_starts", "blocks", "max_blocks", "size")

    def __init__(self, max_blocks: int = 4) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._pieces: list[bytes] = []
        self.size = 0  # bytes held
        self.blocks: list[list[int]] = []  # SACK blocks [start, end), most recent first (Linux keeps 4)
        self.max_blocks = max_blocks

    def __bool__(self) -> bool:
        return bool(self._starts)

    @property
    def first_start(self) -> int | None:
        return self._starts[0] if self._starts else None

    @property
    def highest_end(self) -> int | None:
        return self._ends[-1] if self._ends else None

    def insert(self, start: int, data: bytes) -> list[tuple[int, int]]:
        """Hold `data` at `start`; returns the sub-ranges that were already held (duplicates, for D-SACK)."""
        end = start + len(data)
        starts, ends = self._starts, self._ends
        i = bisect.bisect_right(ends, start)  # first piece ending after `start`
        dups: list[tuple[int, int]] = []
        pos = start
        new_starts: list[int] = []
        new_pieces: list[bytes] = []
        j = i
        while pos < end:
            if j < len(starts) and starts[j] < end:
                s, e = starts[j], ends[j]
                if s > pos:
                    new_starts.append(pos)
                    new_pieces.append(data[pos - start : s - start])
                    pos = s
                dup_end = min(e, end)
                if dup_end > pos:
                    dups.append((pos, dup_end))
                pos = max(pos, dup_end)
                j += 1
            else:
                new_starts.append(pos)
                new_pieces.append(data[pos - start :])
                pos = end
        # insert the gap fillers in order (each lies between existing pieces)
        for s, piece in zip(new_starts, new_pieces, strict=True):
            k = bisect.bisect_left(starts, s)
            starts.insert(k, s)
            ends.insert(k, s + len(piece))
            self._pieces.insert(k, piece)
            self.size += len(piece)
        if new_starts:
            self._sack_add(start, end)
        return dups

    def _sack_add(self, start: int, end: int) -> None:
        """Linux tcp_sack_new_ofo_skb(): the block holding the new data moves to the front, merging."""
        blocks = self.blocks
        merged = [start, end]
        keep: list[list[int]] = []
        for b in blocks:
            if b[0] <= merged[1] and merged[0] <= b[1]:
                merged = [min(b[0], merged[0]), max(b[1], merged[1])]
            else:
                keep.append(b)
        # extend to the true contiguous run of held data around the new segment
        merged = list(self._run_around(merged[0], merged[1]))
        keep = [b for b in keep if not (b[0] <= merged[1] and merged[0] <= b[1])]
        keep.insert(0, merged)
        del keep[self.max_blocks :]
        self.blocks = keep

    def _run_around(self, start: int, end: int) -> tuple[int, int]:
        starts, ends = self._starts, self._ends
        k = bisect.bisect_left(ends, start)  # first piece ending at/after start
        if k < len(starts) and starts[k] <= start:
            s = starts[k]
            while k > 0 and ends[k - 1] == starts[k]:
                k -= 1
                s = starts[k]
            start = min(start, s)
        k = bisect.bisect_right(starts, end) - 1  # last piece starting at/before end
        if k >= 0 and ends[k] >= end:
            while k + 1 < len(starts) and starts[k + 1] == ends[k]:
                k += 1
            end = max(end, ends[k])
        return start, end

    def pop_ready(self, rcv_nxt: int) -> list[bytes]:
        """Remove and return the pieces that start at `rcv_nxt` and continue contiguously."""
        out: list[bytes] = []
        starts, ends, pieces = self._starts, self._ends, self._pieces
        n = 0
        pos = rcv_nxt
        while n < len(starts) and starts[n] <= pos:
            s, e, p = starts[n], ends[n], pieces[n]
            if e > pos:
                out.append(p[pos - s :] if s < pos else p)
                pos = e
            self.size -= len(p)
            n += 1
        if n:
            del starts[:n], ends[:n], pieces[:n]
        return out

    def advance(self, rcv_nxt: int) -> None:
        """rcv_nxt moved: drop SACK blocks now covered by the cumulative ACK (Linux tcp_sack_remove)."""
        if self.blocks:
            self.blocks = [b for b in self.blocks if b[1] > rcv_nxt]
            for b in self.blocks:
                b[0] = max(b[0], rcv_nxt)

    def clear(self) -> None:
        self._starts.clear()
        self._ends.clear()
        self._pieces.clear()
        self.blocks.clear()
        self.size = 0
