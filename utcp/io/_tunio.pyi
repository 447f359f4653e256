# The optional C helper (utcp/io/_tunio.c); see utcp.io.tun.

_Bytes = bytes | bytearray | memoryview

class TunWriter:
    written: int
    errors: int
    last_errno: int
    queued: int
    wakeups: int
    naps: int
    space_fd: int
    closed: bool
    def __init__(self, fd: int, limit: int, nap_us: int = 0, nap_window_us: int = 1000) -> None: ...
    def push(self, data: _Bytes, /) -> bool: ...
    def push_pair(self, head: _Bytes, data: _Bytes, /) -> bool: ...
    def push_many(self, packets: list[bytes], head: _Bytes | None = None, /) -> int: ...
    def close(self) -> None: ...

def read_batch(fd: int, max_packets: int, skip: int, /) -> tuple[list[bytes], int, bool]: ...
