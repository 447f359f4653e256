"""The receive side: in-order bytes waiting for the user, and out-of-order segments waiting for a hole.

Positions are stream offsets (unbounded ints). The out-of-order queue is a sorted list of non-overlapping
(start, end, data) pieces: a new segment is trimmed against what is already held, so a byte is stored, and
delivered, once (RFC 9293 3.10.7.4 seventh: "duplicates never delivered twice"). SACK blocks (RFC 2018 4)
are tracked apart, most recently changed first, like Linux tcp_sack_new_ofo_skb().
"""

from __future__ import annotations

import bisect

__all__ = ["EMPTY_READ_BUFFER", "EMPTY_REASSEMBLY", "ReadBuffer", "Reassembly"]


_SMALL = 512  # appends shorter than this are copied into a shared tail chunk
_TAIL_LIMIT = 64 * 1024  # a tail grows (and is copied by realloc) only up to this


class ReadBuffer:
    """In-order bytes not yet read by the user, kept as the segments' own payloads.

    A growing bytearray was copied by realloc as it grew: with a window of megabytes that cost more
    than everything else per segment. Chunks are joined once, when the user reads. A chunk is kept as
    given when it cannot change (bytes, a read-only memoryview, e.g. of a received packet); anything
    writable is copied first, and tiny appends share one tail chunk.
    """

    __slots__ = ("_chunks", "_first", "_head", "_size")

    def __init__(self) -> None:
        self._chunks: list[bytes | bytearray | memoryview] = []
        self._first = 0  # index of the oldest unread chunk
        self._head = 0  # bytes of that chunk already read
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        if not n:
            return
        chunks = self._chunks
        if n < _SMALL:
            # Tiny segments are copied into a shared tail: as chunks of their own, each would cost a
            # list slot and an object (a memoryview is ~180 bytes) for a byte or two of data, so a peer
            # filling a 4 MiB window one byte at a time would pin a gigabyte (Linux counts truesize and
            # collapses such queues, tcp_collapse, for the same reason).
            last = chunks[-1] if chunks else None
            if type(last) is bytearray and len(last) < _TAIL_LIMIT:
                last += data
            else:
                chunks.append(bytearray(data))
            self._size += n
            return
        if type(data) is not bytes and not (type(data) is memoryview and data.readonly):
            data = bytes(data)
        chunks.append(data)
        self._size += n

    def read(self, max_bytes: int) -> bytes:
        """Up to `max_bytes` from the front."""
        chunks = self._chunks
        if max_bytes >= self._size and not self._head:
            out = b"".join(chunks[self._first :] if self._first else chunks)  # one copy
            chunks.clear()
            self._first = 0
            self._size = 0
            return out
        need = min(max_bytes, self._size)
        parts: list[bytes | bytearray | memoryview] = []
        i, head = self._first, self._head
        while need:
            chunk = chunks[i]
            avail = len(chunk) - head
            if avail <= need:
                parts.append(memoryview(chunk)[head:] if head else chunk)
                need -= avail
                i += 1
                head = 0
            else:
                parts.append(memoryview(chunk)[head : head + need])
                head += need
                need = 0
        out = b"".join(parts)
        self._size -= len(out)
        if i == len(chunks):
            chunks.clear()
            i = 0
        elif i >= 64 and i * 2 >= len(chunks):
            del chunks[:i]  # drop what was read, now and then (amortised O(1) per chunk)
            i = 0
        self._first, self._head = i, head
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
    def pieces(self) -> int:
        """How many separate pieces are held (each costs objects beyond its bytes)."""
        return len(self._starts)

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


class _SharedEmptyReassembly(Reassembly):
    """EMPTY_REASSEMBLY's class: reads like any empty queue, refuses to hold anything."""

    __slots__ = ()

    def insert(self, start: int, data: bytes) -> list[tuple[int, int]]:
        raise TypeError("EMPTY_REASSEMBLY is shared: give the connection its own Reassembly first")

    def clear(self) -> None:
        raise TypeError("EMPTY_REASSEMBLY is shared: give the connection its own Reassembly first")


# What a connection holds until its first out-of-order segment (most never see one): one shared empty
# queue instead of five objects per connection for the garbage collector to walk (TIME-WAIT keeps them).
EMPTY_REASSEMBLY: Reassembly = _SharedEmptyReassembly()


class _SharedEmptyReadBuffer(ReadBuffer):
    """EMPTY_READ_BUFFER's class: reads like any empty buffer, refuses to hold anything."""

    __slots__ = ()

    def append(self, data: bytes | bytearray | memoryview) -> None:
        raise TypeError("EMPTY_READ_BUFFER is shared: give the connection its own ReadBuffer first")


# What a TIME-WAIT connection whose bytes were all read holds (no data can come after the peer's FIN):
# one shared empty buffer instead of two objects per connection for the garbage collector to walk.
EMPTY_READ_BUFFER: ReadBuffer = _SharedEmptyReadBuffer()
