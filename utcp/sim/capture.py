"""What a simulated link saw: pcap files (open them in Wireshark/tcpdump) and a text ladder diagram."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

from utcp.sim.network import CaptureEvent, CaptureRecord
from utcp.wire.codec import build_ipv4
from utcp.wire.format import format_packet
from utcp.wire.pcap import PcapWriter

__all__ = ["ladder", "pcap_bytes", "write_pcap"]


def pcap_bytes(records: Iterable[CaptureRecord], *, event: CaptureEvent = "send") -> bytes:
    """A pcap file (LINKTYPE_RAW, virtual time as timestamps) of the records with `event`."""
    out = io.BytesIO()
    writer = PcapWriter(out)
    for record in records:
        if record.event == event:
            writer.write(build_ipv4(record.packet), record.time)
    return out.getvalue()


def write_pcap(path: str | Path, records: Iterable[CaptureRecord], *, event: CaptureEvent = "send") -> None:
    """Write the records with `event` to a pcap file at `path`."""
    Path(path).write_bytes(pcap_bytes(records, event=event))


def ladder(records: Iterable[CaptureRecord], left: str, right: str, *, event: CaptureEvent = "send") -> str:
    """A text ladder diagram of the packets between nodes `left` and `right`, one line per packet."""
    lines = []
    for r in records:
        if r.event != event or {r.src_node, r.dst_node} != {left, right}:
            continue
        arrow = "------>" if r.src_node == left else "<------"
        lines.append(f"{r.time:12.6f} {left} {arrow} {right}  {format_packet(r.packet)}")
    return "\n".join(lines)
