"""Must-show 3: HTTP/1.1 across the kernel/utcp boundary, both ways, byte-exact.

- the kernel's curl (or, without curl, Python's http.client) downloads /bytes/N from a utcp server (h11);
- a utcp client (h11) downloads a file from `python3 -m http.server` running in the namespace.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import trio

from tests.kernel.helpers import KERNEL, UTCP
from utcp.cli.common import guarded
from utcp.cli.services import body_bytes, http, http_get
from utcp.io.stack import UtcpStack
from utcp.lab.netns import Namespace

SIZE = 5 * 2**20


def _kernel_fetch_command(url: str, out: Path) -> list[str]:
    curl = shutil.which("curl")
    if curl is not None:
        return [curl, "--silent", "--show-error", "--max-time", "60", "--output", str(out), url]
    script = (
        "import sys, urllib.request\n"
        "data = urllib.request.urlopen(sys.argv[1], timeout=60).read()\n"
        "open(sys.argv[2], 'wb').write(data)\n"
    )
    return [sys.executable, "-c", script, url, str(out)]


async def test_kernel_http_client_downloads_from_utcp_server(namespace: Namespace, tmp_path: Path) -> None:
    out = tmp_path / "download.bin"
    async with UtcpStack(netns=namespace.name) as stack:
        listeners = await stack.open_tcp_listeners(8080)
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, guarded(http), listeners)
            proc = namespace.popen(
                _kernel_fetch_command(f"http://{UTCP}:8080/bytes/{SIZE}", out), stderr=subprocess.PIPE
            )
            try:
                _, err = await trio.to_thread.run_sync(proc.communicate)
            finally:
                namespace.terminate(proc)
            nursery.cancel_scope.cancel()
    assert proc.returncode == 0, err
    got = out.read_bytes()
    assert len(got) == SIZE
    assert hashlib.sha256(got).digest() == hashlib.sha256(body_bytes(SIZE)).digest()


async def test_utcp_http_client_downloads_from_kernel_http_server(
    namespace: Namespace, tmp_path: Path
) -> None:
    content = os.urandom(3 * 2**20)
    (tmp_path / "file.bin").write_bytes(content)
    server = namespace.popen(
        [sys.executable, "-m", "http.server", "8000", "--bind", KERNEL, "--directory", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with UtcpStack(netns=namespace.name) as stack:
            with trio.fail_after(20):
                while True:  # until the server listens (a refused SYN costs one round trip)
                    try:
                        stream = await stack.open_tcp_stream(KERNEL, 8000)
                        break
                    except ConnectionRefusedError:
                        await trio.sleep(0.1)
            with trio.fail_after(60):
                status, headers, body = await http_get(stream, KERNEL, "/file.bin")
            await stream.aclose()
    finally:
        namespace.terminate(server)
    assert status == 200
    assert int(headers["content-length"]) == len(content)
    assert hashlib.sha256(body).digest() == hashlib.sha256(content).digest()
