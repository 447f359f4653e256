# The optional C helper (utcp/io/_tunio.c); see utcp.io.tun.

_Bytes = bytes | bytearray | memoryview

class TunWriter:
    written: int
    errors: int
    last_errno: int
    queued: int
    space_fd: int
    closed: bool
    def __init__(self, fd: int, limit: int) -> None: ...
    def push(self, data: _Bytes, /) -> bool: ...
    def push_pair(self, head: _Bytes, data: _Bytes, /) -> bool: ...
    def close(self) -> None: ...

def read_batch(fd: int, max_packets: int, skip: int, /) -> tuple[list[bytes], int, bool]: ...
