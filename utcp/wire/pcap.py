"""Classic libpcap files of raw IPv4 packets (LINKTYPE_RAW: no link-layer header).

Format: https://www.tcpdump.org/manpages/pcap-savefile.5.html. The writer uses microsecond
timestamps in little-endian byte order; the reader also takes big-endian and
nanosecond-resolution files. Pure: no I/O beyond the file object given.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import IO

from utcp.wire.errors import WireError

LINKTYPE_RAW = 101  # raw IPv4/IPv6, the first nibble tells which
LINKTYPE_IPV4 = 228
_READABLE_LINKTYPES = frozenset({LINKTYPE_RAW, LINKTYPE_IPV4})

MAGIC_MICROSECONDS = 0xA1B2C3D4
MAGIC_NANOSECONDS = 0xA1B23C4D
DEFAULT_SNAPLEN = 262144  # tcpdump's default

_FILE_HEADER = struct.Struct("<IHHiIII")  # magic, major, minor, thiszone, sigfigs, snaplen, network
_RECORD_HEADER_LE = struct.Struct("<IIII")  # ts_sec, ts_frac, incl_len, orig_len
_RECORD_HEADER_BE = struct.Struct(">IIII")
_FILE_HEADER_BE = struct.Struct(">IHHiIII")


class PcapWriter:
    """Writes a pcap file header at construction, then one record per `write`.

    The file object is the caller's: this class never closes it.
    """

    def __init__(self, fileobj: IO[bytes], *, snaplen: int = DEFAULT_SNAPLEN) -> None:
        if not 0 < snaplen < 1 << 31:
            raise ValueError(f"snaplen {snaplen} out of range")
        self._file = fileobj
        self._snaplen = snaplen
        fileobj.write(_FILE_HEADER.pack(MAGIC_MICROSECONDS, 2, 4, 0, 0, snaplen, LINKTYPE_RAW))

    def write(self, data: bytes | bytearray | memoryview, timestamp: float) -> None:
        """Append one packet seen at `timestamp` (seconds since the epoch, or any origin >= 0)."""
        if timestamp < 0:
            raise ValueError(f"timestamp {timestamp} < 0")
        micros = round(timestamp * 1_000_000)
        seconds, fraction = divmod(micros, 1_000_000)
        if seconds >= 1 << 32:
            raise ValueError(f"timestamp {timestamp} does not fit in 32-bit seconds")
        captured = bytes(data[: self._snaplen])
        self._file.write(_RECORD_HEADER_LE.pack(seconds, fraction, len(captured), len(data)) + captured)

    def flush(self) -> None:
        self._file.flush()


def _read_exact(fileobj: IO[bytes], n: int, what: str) -> bytes:
    data = fileobj.read(n)
    if len(data) != n:
        raise WireError(f"pcap {what} truncated: {len(data)} bytes < {n}")
    return data


def _records(fileobj: IO[bytes]) -> Iterator[tuple[float, bytes]]:
    head = fileobj.read(_FILE_HEADER.size)
    if len(head) != _FILE_HEADER.size:
        raise WireError(f"pcap file header truncated: {len(head)} bytes < {_FILE_HEADER.size}")
    magic_le = int.from_bytes(head[:4], "little")
    magic_be = int.from_bytes(head[:4], "big")
    if magic_le in (MAGIC_MICROSECONDS, MAGIC_NANOSECONDS):
        file_header, record_header, magic = _FILE_HEADER, _RECORD_HEADER_LE, magic_le
    elif magic_be in (MAGIC_MICROSECONDS, MAGIC_NANOSECONDS):
        file_header, record_header, magic = _FILE_HEADER_BE, _RECORD_HEADER_BE, magic_be
    else:
        raise WireError(f"pcap magic 0x{magic_le:08x} is not a classic pcap file (pcapng is not read)")
    _magic, major, _minor, _zone, _sigfigs, _snaplen, network = file_header.unpack(head)
    if major != 2:
        raise WireError(f"pcap version {major} != 2")
    linktype = network & 0x0FFFFFFF  # upper bits: FCS length flags
    if linktype not in _READABLE_LINKTYPES:
        raise WireError(f"pcap linktype {linktype} is not raw IP (101 or 228)")
    scale = 1e-9 if magic == MAGIC_NANOSECONDS else 1e-6
    while True:
        record = fileobj.read(record_header.size)
        if not record:
            return
        if len(record) != record_header.size:
            raise WireError(f"pcap record header truncated: {len(record)} bytes < {record_header.size}")
        seconds, fraction, captured, _original = record_header.unpack(record)
        yield seconds + fraction * scale, _read_exact(fileobj, captured, "record data")


def read_pcap(source: str | os.PathLike[str] | IO[bytes]) -> Iterator[tuple[float, bytes]]:
    """(timestamp, packet bytes) for each record of a raw-IP pcap file (a path or a binary file)."""
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as fileobj:
            yield from _records(fileobj)
    else:
        yield from _records(source)
