"""The kernel side of the interop tests: plain Linux sockets, run inside a test's namespace as
`ip netns exec NS python3 kernel_peer.py MODE ...`, one JSON line of results on stdout.

  echo-server PORT                 accept one connection, echo it until EOF, half-close, exit
  echo-client HOST PORT NBYTES     send NBYTES (random.Random(NBYTES)) while reading the echo back
  source-client HOST PORT NBYTES   send NBYTES (the same bytes), half-close, wait for the peer's close
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import sys
import threading
import time

CHUNK = 1 << 16


def payload(nbytes: int) -> bytes:
    return random.Random(nbytes).randbytes(nbytes)


def echo_server(port: int) -> dict[str, object]:
    with socket.create_server(("0.0.0.0", port)) as server:
        print(json.dumps({"ready": port}), flush=True)
        conn, peer = server.accept()
        total = 0
        with conn:
            while data := conn.recv(CHUNK):
                conn.sendall(data)
                total += len(data)
            conn.shutdown(socket.SHUT_WR)
            conn.recv(1)  # wait for the peer's close so our FIN is acknowledged first
    return {"echoed": total, "peer": list(peer)}


def echo_client(host: str, port: int, nbytes: int) -> dict[str, object]:
    data = payload(nbytes)
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=60) as conn:
        conn.settimeout(60)

        def sender() -> None:
            view = memoryview(data)
            while view:
                sent = conn.send(view[:CHUNK])
                view = view[sent:]
            conn.shutdown(socket.SHUT_WR)

        thread = threading.Thread(target=sender)
        thread.start()
        digest = hashlib.sha256()
        received = 0
        while chunk := conn.recv(CHUNK):
            digest.update(chunk)
            received += len(chunk)
        thread.join()
    seconds = time.monotonic() - start
    return {"received": received, "sha256": digest.hexdigest(), "seconds": seconds}


def source_client(host: str, port: int, nbytes: int) -> dict[str, object]:
    with socket.create_connection((host, port), timeout=60) as conn:
        conn.sendall(payload(nbytes))
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)  # the peer closes once it has read everything
    return {"sent": nbytes}


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode == "echo-server":
        result = echo_server(int(argv[1]))
    elif mode == "echo-client":
        result = echo_client(argv[1], int(argv[2]), int(argv[3]))
    elif mode == "source-client":
        result = source_client(argv[1], int(argv[2]), int(argv[3]))
    else:
        print(f"unknown mode {mode!r}", file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
