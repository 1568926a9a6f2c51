"""The viewers' hot path (airclass.web.fastpath) against aiohttp serving the same app.

One slave app, two listening sockets on uvloop: one with the fast path in front of aiohttp, one
with aiohttp alone. The same raw requests go to both; the replies must be the same bytes (the
Date header aside), the same metrics must count them, and everything the fast path does not
answer itself must reach aiohttp on the same connection.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import uvloop
from aiohttp import web

from airclass.media.hub import Publication
from airclass.web import fastpath
from airclass.web import http as web_http
from airclass.web.fastpath import FastPath
from airclass.web.hls_views import HLS_CONTEXT
from airclass.web.slave_app import FAST_PATH, SLAVE, create_app
from tests.hls.conftest import make_test_frames
from tests.web.conftest import NODE_ID, PATH, SID_LINE, make_config

pytestmark = pytest.mark.timeout(60)

Reply = tuple[bytes, dict[str, str], bytes]
"""Status line, headers (lower-case names, Date removed), body."""


@dataclass
class Servers:
    app: web.Application
    fast: FastPath
    fast_port: int
    plain_port: int
    pub: Publication
    frames: list[Any]
    sent: int

    def feed_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            assert self.sent < len(self.frames), "ran out of frames"
            self.pub.send(self.frames[self.sent])
            self.sent += 1

    @property
    def packager(self) -> Any:
        stream = self.app[SLAVE].streams.get(PATH)
        assert stream is not None
        return stream.packager


@asynccontextmanager
async def servers(**overrides: Any) -> AsyncIterator[Servers]:
    """A slave app with a live stream (9 s published, 2 s segments unless overridden)."""
    app = create_app(make_config(**overrides))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    assert runner.server is not None
    fast = app[FAST_PATH]
    loop = asyncio.get_running_loop()
    fast_server = await loop.create_server(fast.wrap(runner.server), "127.0.0.1", 0)
    plain_server = await loop.create_server(runner.server, "127.0.0.1", 0)
    video, audio, frames = make_test_frames(12.0, gop=25)
    pub = app[HLS_CONTEXT].streams.hub.publish(PATH, "test")
    pub.send_video_config(video)
    pub.send_audio_config(audio)
    s = Servers(
        app, fast, fast_server.sockets[0].getsockname()[1],
        plain_server.sockets[0].getsockname()[1], pub, frames, 0,
    )
    s.feed_until(lambda: s.packager.newest_sequence is not None and s.packager.newest_sequence >= 3)
    try:
        yield s
    finally:
        fast_server.close()
        plain_server.close()
        await runner.cleanup()
        fast.close()


def run(test: Callable[[], Awaitable[None]]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(test())


class Conn:
    """A raw HTTP/1.1 client connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, *, small: bool = False) -> Conn:
        """`small`: a client that buffers little before it stops reading from the socket."""
        sock = socket.socket()
        if small:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 14)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        limit = 1 << 16 if small else 1 << 22
        reader, writer = await asyncio.open_connection(sock=sock, limit=limit)
        return cls(reader, writer)

    def send(self, raw: bytes) -> None:
        self.writer.write(raw)

    async def reply(self) -> Reply:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        lines = head[:-4].split(b"\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await asyncio.wait_for(self.reader.readexactly(int(headers["content-length"])), 10)
        headers.pop("date")
        return lines[0], headers, body

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 10) == b""

    def close(self) -> None:
        self.writer.close()


def get(target: str, *extra: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", *extra, "", ""]
    return "\r\n".join(lines).encode()


async def exchange(port: int, raw: bytes) -> Reply:
    conn = await Conn.open(port)
    try:
        conn.send(raw)
        return await conn.reply()
    finally:
        conn.close()


def mint_token(s: Servers, user_id: str = "alice", path: str = PATH) -> str:
    """A student's token to watch `path` on this node for an hour."""
    return s.app[HLS_CONTEXT].issuer.mint(
        user_type="student", user_id=user_id, action="read", path=path, node_id=NODE_ID,
        now=time.time(), ttl=3600,
    )


async def enter(s: Servers) -> str:
    token = mint_token(s)
    _status, _headers, body = await exchange(s.plain_port, get(f"/{PATH}/index.m3u8?jwt={token}"))
    [sid] = [m.group(1) for line in body.decode().splitlines() if (m := SID_LINE.match(line))]
    return sid


def requests_counted(s: Servers) -> dict[tuple[str, str, str], int]:
    return dict(s.fast.metrics.requests) if s.fast.metrics else {}


def test_the_fast_path_sends_the_same_bytes_as_aiohttp() -> None:
    async def main() -> None:
        async with servers() as s:
            sid = await enter(s)
            newest = s.packager.newest_sequence
            base = f"/{PATH}/{sid}"
            cases = [
                get(f"{base}/media.m3u8"),
                get(f"{base}/media.m3u8", "Accept-Encoding: gzip, deflate, br"),
                get(f"{base}/media.m3u8?_HLS_skip=YES"),
                get(f"{base}/media.m3u8?_HLS_msn={newest}&_HLS_part=0"),  # ready at once
                get(f"{base}/media.m3u8?_HLS_msn=abc"),  # 400
                get(f"{base}/media.m3u8?_HLS_part=1"),  # 400: part without msn
                get(f"{base}/media.m3u8?_HLS_msn={newest + 9}"),  # 400: too far ahead
                get(f"{base}/{newest}.ts"),  # a whole segment: sendfile
                get(f"{base}/{newest}.0.ts"),  # a part
                get(f"{base}/{newest}.99.ts"),  # 404: no such part
                get(f"{base}/999.ts"),  # 404: not made
                get(f"/{PATH}/AAAAAAAAAAAAAAAAAAAAAAAA/media.m3u8"),  # 403: forged session
                get(f"/live/other/{sid}/{newest}.ts"),  # 403: another stream's session
                get(f"{base}/{newest}.ts", "Connection: close"),
            ]
            for raw in cases:
                fast = await exchange(s.fast_port, raw)
                plain = await exchange(s.plain_port, raw)
                assert fast == plain, raw
            assert s.fast.handed_off == 0, "every one of these was answered on the fast path"
            _status, headers, body = await exchange(
                s.fast_port, get(f"{base}/media.m3u8", "Accept-Encoding: gzip")
            )
            assert headers["content-encoding"] == "gzip"
            assert gzip.decompress(body) == s.packager.playlist_bytes

    run(main)


SID_IN_URI = re.compile(rb"[A-Za-z0-9_-]{8,96}(?=/media\.m3u8)")


def without_sids(reply: Reply) -> Reply:
    """The reply with its new session ids blanked (each entry reply mints random ones)."""
    status, headers, body = reply
    return status, headers, SID_IN_URI.sub(b"SID", body)


def test_the_entry_playlist_is_answered_on_the_fast_path_as_aiohttp_does() -> None:
    async def main() -> None:
        async with servers() as s:
            s.app[HLS_CONTEXT].backups = [("backup-1", "http://10.0.0.2:8080/hls")]
            token = mint_token(s)
            other = mint_token(s, "bob", "live/other")
            entry = f"/{PATH}/index.m3u8"
            cases = [
                get(f"{entry}?jwt={token}"),
                get(entry, f"Authorization: Bearer {token}"),
                get(f"{entry}?jwt={token}", "Authorization: Basic dXNlcjpwYXNz"),
                get(f"{entry}?jwt={token}", "Accept-Encoding: gzip"),
                get(entry),  # 401: no token
                get(f"{entry}?jwt=not.a.token"),  # 401
                get(f"{entry}?jwt={other}"),  # 403: another stream's token
                get(f"/live/other/index.m3u8?jwt={other}"),  # 404: not streaming
            ]
            for raw in cases:
                fast = without_sids(await exchange(s.fast_port, raw))
                plain = without_sids(await exchange(s.plain_port, raw))
                assert fast == plain, raw
            assert s.fast.handed_off == 0, "every one of these was answered on the fast path"
            status, _headers, body = await exchange(s.fast_port, cases[0])
            assert status == b"HTTP/1.1 200 OK" and body.count(b"/media.m3u8") == 2
            lines = body.decode().splitlines()
            [sid] = [m.group(1) for line in lines if (m := SID_LINE.match(line))]
            # A player keeps its connection: the media requests that follow stay on the fast path.
            conn = await Conn.open(s.fast_port)
            conn.send(cases[0] + get(f"/{PATH}/{sid}/media.m3u8"))
            assert (await conn.reply())[0] == b"HTTP/1.1 200 OK"
            assert (await conn.reply())[2] == s.packager.playlist_bytes
            conn.close()
            assert s.fast.handed_off == 0

    run(main)


def test_entry_refusals_per_token_are_the_same_bytes_on_both_paths() -> None:
    """A token past its entry allowance, and a token that already holds its sessions, get
    the same 429 from the fast path as from aiohttp, for entries and for new sessions."""

    async def main() -> None:
        async with servers(entry_burst=4, entry_refill=600.0, sessions_per_token=1) as s:
            entry = f"/{PATH}/index.m3u8"
            hasty = mint_token(s, "hasty")
            for _ in range(2):
                for port in (s.fast_port, s.plain_port):
                    reply = await exchange(port, get(f"{entry}?jwt={hasty}"))
                    assert reply[0] == b"HTTP/1.1 200 OK"
            fast = await exchange(s.fast_port, get(f"{entry}?jwt={hasty}"))
            plain = await exchange(s.plain_port, get(f"{entry}?jwt={hasty}"))
            assert fast == plain
            assert fast[0] == b"HTTP/1.1 429 Too Many Requests"
            assert fast[1]["retry-after"] == "600"
            assert fast[2] == b'{"error":"too many requests with this link; try again in 600 s"}'

            token = mint_token(s, "carol")
            sids = []
            for _ in range(2):  # two entries before either sid is used
                body = (await exchange(s.plain_port, get(f"{entry}?jwt={token}")))[2]
                sids += [m.group(1) for line in body.decode().splitlines()
                         if (m := SID_LINE.match(line))]
            playing = get(f"/{PATH}/{sids[0]}/media.m3u8")
            assert (await exchange(s.fast_port, playing))[0].endswith(b"200 OK")
            cap = (
                b'{"error":"this link is already playing in the most players allowed (1); '
                b'close one and try again in 30 s"}'
            )
            for raw in (get(f"{entry}?jwt={token}"), get(f"/{PATH}/{sids[1]}/media.m3u8")):
                fast = await exchange(s.fast_port, raw)
                plain = await exchange(s.plain_port, raw)
                assert fast == plain, raw
                assert fast[0] == b"HTTP/1.1 429 Too Many Requests" and fast[2] == cap
                assert fast[1]["retry-after"] == "30"
            assert s.fast.handed_off == 0
            assert s.app[HLS_CONTEXT].sessions.count(time.time()) == 1

    run(main)


def test_each_request_is_counted_once_in_the_same_metrics() -> None:
    async def main() -> None:
        async with servers() as s:
            sid = await enter(s)
            newest = s.packager.newest_sequence
            token = mint_token(s)
            raws = [
                get(f"/{PATH}/index.m3u8?jwt={token}"),
                get(f"/{PATH}/index.m3u8"),
                get(f"/{PATH}/{sid}/media.m3u8"),
                get(f"/{PATH}/{sid}/{newest}.ts"),
                get(f"/{PATH}/{sid}/{newest}.1.ts"),
                get(f"/{PATH}/{sid}/999.ts"),
            ]
            counts = []
            for port in (s.fast_port, s.plain_port):
                before = requests_counted(s)
                for raw in raws:
                    await exchange(port, raw)
                after = requests_counted(s)
                counts.append(
                    {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
                )
            assert counts[0] == counts[1] == {
                ("/{app}/{stream}/index.m3u8", "GET", "200"): 1,
                ("/{app}/{stream}/index.m3u8", "GET", "401"): 1,
                ("/{app}/{stream}/{sid}/media.m3u8", "GET", "200"): 1,
                ("/{app}/{stream}/{sid}/{seq}.ts", "GET", "200"): 1,
                ("/{app}/{stream}/{sid}/{seq}.ts", "GET", "404"): 1,
                ("/{app}/{stream}/{sid}/{seq}.{part}.ts", "GET", "200"): 1,
            }

    run(main)


def test_pipelined_requests_are_answered_in_order_on_one_connection() -> None:
    async def main() -> None:
        async with servers() as s:
            sid = await enter(s)
            newest = s.packager.newest_sequence
            targets = [f"/{PATH}/{sid}/{seq}.ts" for seq in (newest, newest - 1, newest)]
            targets.insert(1, f"/{PATH}/{sid}/media.m3u8")
            conn = await Conn.open(s.fast_port)
            conn.send(b"".join(get(t) for t in targets))
            bodies = [(await conn.reply())[2] for _ in targets]
            conn.close()
            assert bodies == [
                s.packager.segment(newest).data,
                s.packager.playlist_bytes,
                s.packager.segment(newest - 1).data,
                s.packager.segment(newest).data,
            ]

    run(main)


def test_other_requests_hand_the_connection_to_aiohttp() -> None:
    async def main() -> None:
        async with servers() as s:
            sid = await enter(s)
            conn = await Conn.open(s.fast_port)
            conn.send(get(f"/{PATH}/{sid}/media.m3u8"))
            first = await conn.reply()
            assert first[0] == b"HTTP/1.1 200 OK" and s.fast.handed_off == 0
            conn.send(get("/health"))  # not ours: aiohttp takes the connection from here
            health = await conn.reply()
            assert health[0] == b"HTTP/1.1 200 OK" and b"status" in health[2]
            conn.send(get(f"/{PATH}/{sid}/media.m3u8"))  # and keeps it
            assert (await conn.reply())[2] == s.packager.playlist_bytes
            conn.close()
            assert s.fast.handed_off == 1
            # Unusual forms of our own routes go to aiohttp too, with the same answers.
            for raw in [
                get(f"/{PATH}/{sid}/media.m3u8?_HLS_skip=%59ES"),
                get(f"/{PATH}/{sid}/media%2Em3u8"),
                get(f"/{PATH}/{sid}/media.m3u8", "Range: bytes=0-9"),
                b"HEAD /" + f"{PATH}/{sid}/media.m3u8".encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                get("/nowhere"),
            ]:
                if raw.startswith(b"HEAD"):
                    for port in (s.fast_port, s.plain_port):
                        conn = await Conn.open(port)
                        conn.send(raw)
                        head = await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), 10)
                        assert head.startswith(b"HTTP/1.1 200 OK")
                        conn.close()
                    continue
                assert await exchange(s.fast_port, raw) == await exchange(s.plain_port, raw), raw
            assert s.fast.handed_off == 6

    run(main)


def test_a_blocking_reload_waits_and_holds_the_requests_behind_it() -> None:
    async def main() -> None:
        async with servers(segment_duration=1.0) as s:
            sid = await enter(s)
            packager = s.packager
            msn, part = packager.next_sequence, packager.open_parts
            conn = await Conn.open(s.fast_port)
            conn.send(get(f"/{PATH}/{sid}/media.m3u8?_HLS_msn={msn}&_HLS_part={part}"))
            conn.send(get(f"/{PATH}/{sid}/{msn}.{part}.ts"))  # the hinted part, pipelined
            reply = asyncio.ensure_future(conn.reply())
            for _ in range(20):
                await asyncio.sleep(0.005)
            assert not reply.done(), "the reload waits for the part"
            s.feed_until(lambda: packager.part(msn, part) is not None)
            status, _headers, body = await reply
            assert status == b"HTTP/1.1 200 OK"
            assert b"#EXT-X-PART:DURATION=" in body
            assert f"{msn}.{part}.ts".encode() in body
            status, _headers, data = await conn.reply()
            assert data == packager.part(msn, part).data
            # A hinted part that is not made yet waits the same way.
            msn, part = packager.next_sequence, packager.open_parts
            conn.send(get(f"/{PATH}/{sid}/{msn}.{part}.ts"))
            waiting = asyncio.ensure_future(conn.reply())
            await asyncio.sleep(0.05)
            assert not waiting.done()
            s.feed_until(lambda: packager.part(msn, part) is not None)
            assert (await waiting)[2] == packager.part(msn, part).data
            conn.close()
            assert s.fast.handed_off == 0

    run(main)


def test_a_held_request_ends_quietly_when_the_viewer_leaves() -> None:
    async def main() -> None:
        async with servers(segment_duration=1.0) as s:
            sid = await enter(s)
            packager = s.packager
            conn = await Conn.open(s.fast_port)
            conn.send(get(f"/{PATH}/{sid}/{packager.next_sequence}.{packager.open_parts}.ts"))
            await asyncio.sleep(0.05)
            assert len(s.fast.connections) == 1
            conn.close()
            for _ in range(100):
                if not s.fast.connections:
                    break
                await asyncio.sleep(0.01)
            assert not s.fast.connections

    run(main)


def test_connection_close_and_idle_connections_are_closed() -> None:
    async def main() -> None:
        async with servers() as s:
            sid = await enter(s)
            s.fast.keepalive_timeout = 1.0
            conn = await Conn.open(s.fast_port)
            conn.send(get(f"/{PATH}/{sid}/media.m3u8", "Connection: close"))
            _status, headers, _body = await conn.reply()
            assert headers["connection"] == "close"
            assert await conn.closed()
            idle = await Conn.open(s.fast_port)
            idle.send(b"GET /live/stream/")  # never finished
            started = time.monotonic()
            assert await idle.closed()
            assert 0.9 < time.monotonic() - started < 5

    run(main)


def test_a_slow_reader_gets_every_byte_of_every_segment(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    real_sendfile = os.sendfile
    heads: list[int] = []
    real_send = socket.socket.send

    def counting_sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        sent = real_sendfile(out_fd, in_fd, offset, count)
        calls.append((sent, count))
        return sent

    def flagged_send(sock: socket.socket, data: Any, flags: int = 0) -> int:
        heads.append(flags)
        return real_send(sock, data, flags)

    monkeypatch.setattr(os, "sendfile", counting_sendfile)
    monkeypatch.setattr(socket.socket, "send", flagged_send)

    async def main() -> None:
        async with servers() as s:
            sid = await enter(s)
            sequences = [seq for seq in range(4) if s.packager.segment(seq)] * 25
            conn = await Conn.open(s.fast_port)
            conn.send(b"".join(get(f"/{PATH}/{sid}/{seq}.ts") for seq in sequences))
            await asyncio.sleep(0.3)  # the socket fills: the rest waits in the transport
            for seq in sequences:
                _status, _headers, body = await conn.reply()
                assert body == s.packager.segment(seq).data
            conn.close()

    run(main)
    assert sum(sent for sent, _count in calls) > 0, "segments went out by sendfile"
    assert any(sent < count for sent, count in calls), "the socket filled up at least once"
    assert heads and all(flags == socket.MSG_MORE for flags in heads), "heads wait for bodies"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def prime(s: Servers, sid: str) -> int:
    """Make the shared files of segments 0-3, wait for those connections to end; returns the
    number of open descriptors then."""
    for seq in range(4):
        await exchange(s.fast_port, get(f"/{PATH}/{sid}/{seq}.ts"))
    for _ in range(200):
        if not s.fast.connections:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    return open_fds()


async def fill(s: Servers, conn: Conn, sid: str, replies: int = 120) -> list[bytes]:
    """Ask for `replies` segments at once on a connection that reads nothing: the socket fills
    and the rest waits in the transport. Returns the bodies expected, in order."""
    sequences = [seq for seq in range(4) if s.packager.segment(seq)]
    asked = [sequences[i % len(sequences)] for i in range(replies)]
    conn.send(b"".join(get(f"/{PATH}/{sid}/{seq}.ts") for seq in asked))
    for _ in range(100):
        await asyncio.sleep(0.01)
        [protocol] = s.fast.connections
        if protocol.transport is not None and protocol.transport.get_write_buffer_size():
            break
    else:
        raise AssertionError("the socket never filled up")
    return [s.packager.segment(seq).data for seq in asked]


def test_a_viewer_leaving_in_the_middle_of_a_segment_leaves_nothing_behind() -> None:
    async def main() -> None:
        async with servers() as s:
            sid = await enter(s)
            before = await prime(s, sid)
            conn = await Conn.open(s.fast_port, small=True)
            await fill(s, conn, sid)
            assert open_fds() == before + 3  # both ends of the connection, the duplicate
            conn.writer.transport.abort()
            for _ in range(200):
                if not s.fast.connections and open_fds() <= before:
                    break
                await asyncio.sleep(0.01)
            assert not s.fast.connections
            assert open_fds() <= before

    run(main)


def test_a_segment_evicted_while_it_is_being_sent_arrives_whole() -> None:
    async def main() -> None:
        async with servers() as s:
            sid = await enter(s)
            conn = await Conn.open(s.fast_port, small=True)
            expected = await fill(s, conn, sid)
            s.app[HLS_CONTEXT].files.close()  # every shared file closed under the replies
            for body in expected:
                assert (await conn.reply())[2] == body
            conn.close()

    run(main)


def test_connection_close_after_replies_that_waited_for_the_socket() -> None:
    async def main() -> None:
        async with servers() as s:
            sid = await enter(s)
            conn = await Conn.open(s.fast_port, small=True)
            expected = await fill(s, conn, sid)
            conn.send(get(f"/{PATH}/{sid}/0.ts", "Connection: close"))
            for body in expected:
                assert (await conn.reply())[2] == body
            _status, headers, body = await conn.reply()
            assert headers["connection"] == "close"
            assert body == s.packager.segment(0).data
            assert await conn.closed()

    run(main)


def test_a_request_for_aiohttp_after_replies_that_waited_gets_its_turn() -> None:
    async def main() -> None:
        async with servers() as s:
            sid = await enter(s)
            before = await prime(s, sid)
            conn = await Conn.open(s.fast_port, small=True)
            expected = await fill(s, conn, sid)
            odd = get(f"/{PATH}/{sid}/media.m3u8", "Range: bytes=0-9")
            conn.send(odd)
            for body in expected:
                assert (await conn.reply())[2] == body
            reply = await conn.reply()
            assert s.fast.handed_off == 1
            assert open_fds() == before + 2  # both ends of the connection: no duplicate left
            assert reply == await exchange(s.plain_port, odd)
            conn.close()

    run(main)


def test_memory_files_go_with_the_segments_that_leave_the_ring(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The test stream's 1 s segments are ~36 KB: give every body over 1 KB its memory file.
    monkeypatch.setattr(web_http, "SHARED_CHUNK", 1024)
    monkeypatch.setattr(fastpath, "SHARED_CHUNK", 1024)

    async def main() -> None:
        async with servers(segment_duration=1.0) as s:
            sid = await enter(s)
            files = s.app[HLS_CONTEXT].files
            conn = await Conn.open(s.fast_port)
            requested = []
            for early in range(s.packager.newest_sequence):
                conn.send(get(f"/{PATH}/{sid}/{early}.ts"))
                assert (await conn.reply())[2] == s.packager.segment(early).data
                requested.append(early)
            while True:
                newest = s.packager.newest_sequence
                conn.send(get(f"/{PATH}/{sid}/{newest}.ts"))
                assert (await conn.reply())[2] == s.packager.segment(newest).data
                requested.append(newest)
                if newest >= 10:
                    break
                s.feed_until(lambda n=newest: s.packager.newest_sequence > n)
            conn.close()
            ring = {segment.sequence for segment in s.packager.segments()}
            assert len(requested) == 11 and len(ring) == 8
            assert {key[1] for key in files._files} <= ring

    run(main)


def test_an_oversized_or_odd_request_head_goes_to_aiohttp() -> None:
    async def main() -> None:
        async with servers() as s:
            sid = await enter(s)
            huge = get(f"/{PATH}/{sid}/media.m3u8", "X-Filler: " + "a" * 9000)
            fast = await exchange(s.fast_port, huge)
            assert fast == await exchange(s.plain_port, huge)
            folded = get(f"/{PATH}/{sid}/media.m3u8", "Bad Header : x")
            fast_status = (await exchange(s.fast_port, folded))[0]
            assert fast_status == (await exchange(s.plain_port, folded))[0]
            bare_lf = get(f"/{PATH}/{sid}/media.m3u8").replace(b"\r\n", b"\n")
            fast_status = (await exchange(s.fast_port, bare_lf))[0]
            assert fast_status == (await exchange(s.plain_port, bare_lf))[0]
            nul = get(f"/{PATH}/{sid}/media.m3u8", "X-Odd: a\0b")
            fast_status = (await exchange(s.fast_port, nul))[0]
            assert fast_status == (await exchange(s.plain_port, nul))[0]
            assert s.fast.handed_off == 4

    run(main)


def test_on_asyncio_every_connection_goes_to_aiohttp() -> None:
    async def main() -> None:
        async with servers() as s:
            sid = await enter(s)
            status, _headers, body = await exchange(s.fast_port, get(f"/{PATH}/{sid}/media.m3u8"))
            assert status == b"HTTP/1.1 200 OK" and body == s.packager.playlist_bytes
            assert s.fast.handed_off == 1

    with asyncio.Runner() as runner:
        runner.run(main())


def test_route_pattern_matches_the_aiohttp_routes() -> None:
    from airclass.web.head import ROUTE

    app = create_app(make_config())
    canonical = {
        r.canonical for r in app.router.resources() if re.search(r"(m3u8|ts)$", r.canonical)
    }
    assert canonical >= {
        "/{app}/{stream}/{sid}/media.m3u8",
        "/{app}/{stream}/{sid}/{seq}.ts",
        "/{app}/{stream}/{sid}/{seq}.{part}.ts",
    }
    sid = "A" * 8
    for path, ours in [
        (f"/live/stream/{sid}/media.m3u8", True),
        (f"/live/stream/{sid}/12.ts", True),
        (f"/live/stream/{sid}/12.3.ts", True),
        (f"/live/stream/{'A' * 7}/12.ts", False),  # sid too short
        (f"/live/stream/{sid}/12.34567.ts", False),
        (f"/live/stream/{sid}/index.m3u8", False),
        ("/live/stream/index.m3u8", False),
        (f"/{'a' * 65}/stream/{sid}/1.ts", False),
    ]:
        assert (ROUTE.fullmatch(path.encode()) is not None) is ours, path
