"""Shared bodies on the wire: memory files for sendfile, and `send_shared` on both event loops.

Real sockets on loopback: every byte of each body must arrive, in order, on a kept-alive
connection (two responses back to back), whether the body went by sendfile, by sendfile and
then the transport (a reader slower than the socket buffer), or by the transport alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop
from aiohttp import web

from airclass.web.http import SHARED_CHUNK, SharedFiles, send_shared

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def body(size: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(size))


# -- SharedFiles -------------------------------------------------------------------------------


def test_a_memory_file_holds_exactly_the_body_and_is_reused_for_the_same_object() -> None:
    files = SharedFiles()
    data = body(200_000, 1)
    fd = files.fd(("live/a", 7, None), data)
    assert fd is not None
    assert os.pread(fd, len(data) + 10, 0) == data
    assert files.fd(("live/a", 7, None), data) == fd
    assert len(files) == 1 and files.bytes == len(data)
    files.close()
    assert len(files) == 0 and files.bytes == 0


def test_a_remade_body_under_the_same_key_gets_a_new_file() -> None:
    files = SharedFiles()
    first, second = body(100_000, 1), body(120_000, 2)
    files.fd("k", first)
    fd = files.fd("k", second)
    assert fd is not None
    assert os.pread(fd, 200_000, 0) == second
    assert len(files) == 1 and files.bytes == len(second)
    files.close()


def memory_files() -> int:
    """Memory files open in this process."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:airclass-body")
    return count


def test_files_of_bodies_no_longer_served_are_closed_when_a_new_one_is_made() -> None:
    before = memory_files()
    served = {("live/a", i, None): body(100_000, i) for i in range(3)}
    files = SharedFiles(still_served=lambda key, data: served.get(key) is data)
    fds = [files.fd(key, data) for key, data in served.items()]
    assert len(files) == 3 and memory_files() == before + 3
    del served["live/a", 0, None]  # the ring moved on
    served["live/a", 1, None] = body(100_000, 9)  # remade under the same key
    served["live/a", 3, None] = body(100_000, 3)
    fd_3 = files.fd(("live/a", 3, None), served["live/a", 3, None])
    assert len(files) == 2 and files.bytes == 200_000 and memory_files() == before + 2
    assert fd_3 is not None and os.pread(fd_3, 100_000, 0) == served["live/a", 3, None]
    assert files.fd(("live/a", 2, None), served["live/a", 2, None]) == fds[2]  # kept
    files.close()
    assert memory_files() == before


def test_small_bodies_get_no_file() -> None:
    files = SharedFiles()
    assert files.fd("small", body(SHARED_CHUNK, 3)) is None
    assert len(files) == 0


def test_files_beyond_the_byte_budget_are_evicted_least_recently_used_first() -> None:
    files = SharedFiles(max_bytes=300_000)
    bodies = {i: body(100_000, i) for i in range(4)}
    for i in range(3):
        files.fd(i, bodies[i])
    files.fd(0, bodies[0])  # 0 is used again: 1 is now the least recent
    files.fd(3, bodies[3])
    assert files.bytes == 300_000 and len(files) == 3
    fd_1 = files.fd(1, bodies[1])  # evicted before, so made again (evicting 2)
    assert fd_1 is not None and os.pread(fd_1, 100_000, 0) == bodies[1]
    assert files.bytes <= files.max_bytes
    files.close()


def test_a_body_larger_than_the_budget_is_sent_without_a_file() -> None:
    files = SharedFiles(max_bytes=100_000)
    assert files.fd("big", body(150_000, 4)) is None
    assert files.bytes == 0


# -- send_shared on the wire -------------------------------------------------------------------


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[bytes, bytes]:
    """One HTTP/1.1 response (head, body) from `sock`, using and refilling `buffer`."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the headers"
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    buffer[:] = rest
    while len(buffer) < length:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(buffer)} of {length} body bytes"
        buffer += chunk
    data = bytes(buffer[:length])
    buffer[:] = buffer[length:]
    return head, data


async def start_server(
    path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> tuple[web.AppRunner, int]:
    """`handler` at `path` on a free loopback port; the caller cleans the runner up."""
    app = web.Application()
    app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, runner.addresses[0][1]


async def serve_twice(
    bodies: list[bytes], use_files: bool, slow: bool
) -> tuple[list[bytes], list[bytes], list[int]]:
    """Serve `bodies` on one kept-alive connection; what arrived, and what sendfile sent."""
    files = SharedFiles()
    sent: list[int] = []
    real_sendfile = os.sendfile

    def counting_sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        n = real_sendfile(out_fd, in_fd, offset, count)
        sent.append(n)
        return n

    async def handler(request: web.Request) -> web.StreamResponse:
        index = int(request.match_info["n"])
        if slow:
            sock = request.transport.get_extra_info("socket")  # type: ignore[union-attr]
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        fd = files.fd(index, bodies[index]) if use_files else None
        return await send_shared(request, bodies[index], {"Content-Type": "video/mp2t"}, fd)

    runner, port = await start_server("/{n}.ts", handler)

    def client() -> tuple[list[bytes], list[bytes]]:
        heads, got = [], []
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            if slow:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            buffer = bytearray()
            for index in range(len(bodies)):
                sock.sendall(f"GET /{index}.ts HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                head, data = read_response(sock, buffer)
                heads.append(head)
                got.append(data)
        return heads, got

    original = os.sendfile
    os.sendfile = counting_sendfile  # type: ignore[assignment]
    try:
        heads, got = await asyncio.get_running_loop().run_in_executor(None, client)
    finally:
        os.sendfile = original
        await runner.cleanup()
        files.close()
    return heads, got, sent


@pytest.mark.parametrize("loop_name", list(LOOPS))
@pytest.mark.parametrize("use_files", [True, False], ids=["sendfile", "write"])
@pytest.mark.parametrize("slow", [False, True], ids=["fast-reader", "slow-reader"])
def test_every_byte_arrives_on_a_kept_alive_connection(
    loop_name: str, use_files: bool, slow: bool
) -> None:
    # A slow reader's window is small: smaller bodies still span many windows.
    bodies = (
        [body(200_003, 5), body(150_001, 6)] if slow else [body(1_000_003, 5), body(300_001, 6)]
    )
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        heads, got, sent = runner.run(serve_twice(bodies, use_files, slow))
    for head, data, expected in zip(heads, got, bodies, strict=True):
        assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
        assert f"Content-Length: {len(expected)}".encode() in head
        assert b"Transfer-Encoding" not in head
        assert data == expected
    if use_files:
        assert len(sent) == len(bodies), "one sendfile per response"
        assert sum(sent) > 0
        if not slow:
            # A fast reader on loopback: the socket takes most of each body at once.
            assert sum(sent) > sum(map(len, bodies)) // 2, sent
    else:
        assert sent == []


def test_a_small_body_goes_out_as_one_ordinary_response() -> None:
    small = body(1000, 7)

    async def scenario() -> tuple[Any, ...]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await send_shared(request, small, {"Content-Type": "video/mp2t"})

        runner, port = await start_server("/s.ts", handler)

        def client() -> tuple[bytes, bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET /s.ts HTTP/1.1\r\nHost: x\r\n\r\n")
                return read_response(sock, bytearray())

        try:
            return await asyncio.get_running_loop().run_in_executor(None, client)
        finally:
            await runner.cleanup()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        head, data = runner.run(scenario())
    assert data == small and b"Content-Length: 1000" in head
