"""HTTPS in process: a TLS connection never takes the fast path nor gets a body by sendfile.

Both write to the TCP socket under the transport, which a TLS transport still exposes; bytes
written there would reach the viewer unencrypted in the middle of the TLS stream. The same
segment is fetched over TLS (fast path in front, as a slave runs) and over plain HTTP from
aiohttp alone: the bytes must be the same, on uvloop and on asyncio's own loop.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import uvloop
from aiohttp import web

from airclass.tls import TlsError, client_context, is_tls, server_context
from airclass.web import http as web_http
from airclass.web.hls_views import HLS_CONTEXT
from airclass.web.slave_app import FAST_PATH, SLAVE, create_app
from tests.hardening.certs import NodeCert, make_ca_and_node
from tests.hls.conftest import make_test_frames
from tests.web.conftest import NODE_ID, PATH, SID_LINE, make_config

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> NodeCert:
    return make_ca_and_node(Path(tmp_path_factory.mktemp("certs")))


async def fetch(port: int, target: str, context: ssl.SSLContext | None) -> tuple[bytes, bytes]:
    """One GET on a new connection: (status line, body)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1" if context else None
    )
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head[:-4].split(b"\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in lines
            if line.lower().startswith(b"content-length:")
        )
        body = await asyncio.wait_for(reader.readexactly(length), 10)
        return lines[0], body
    finally:
        writer.close()


async def serve_both_and_compare(certs: NodeCert) -> None:
    app = create_app(make_config())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    assert runner.server is not None
    fast = app[FAST_PATH]
    loop = asyncio.get_running_loop()
    tls_context = server_context(str(certs.cert), str(certs.key))
    tls_server = await loop.create_server(
        fast.wrap(runner.server), "127.0.0.1", 0, ssl=tls_context
    )
    plain_server = await loop.create_server(runner.server, "127.0.0.1", 0)
    tls_port = tls_server.sockets[0].getsockname()[1]
    plain_port = plain_server.sockets[0].getsockname()[1]
    try:
        video, audio, frames = make_test_frames(12.0, gop=25)
        pub = app[HLS_CONTEXT].streams.hub.publish(PATH, "test")
        pub.send_video_config(video)
        pub.send_audio_config(audio)
        stream = app[SLAVE].streams.get(PATH)
        assert stream is not None
        sent = 0
        while stream.packager.newest_sequence is None or stream.packager.newest_sequence < 3:
            pub.send(frames[sent])
            sent += 1
        token = app[HLS_CONTEXT].issuer.mint(
            user_type="student", user_id="alice", action="read", path=PATH, node_id=NODE_ID,
            now=time.time(), ttl=3600,
        )
        trust = client_context(str(certs.ca))
        status, entry = await fetch(tls_port, f"/{PATH}/index.m3u8?jwt={token}", trust)
        assert status == b"HTTP/1.1 200 OK"
        [sid] = [m.group(1) for line in entry.decode().splitlines() if (m := SID_LINE.match(line))]
        newest = stream.packager.newest_sequence
        for target in (f"/{PATH}/{sid}/media.m3u8", f"/{PATH}/{sid}/{newest}.ts",
                       f"/{PATH}/{sid}/{newest}.0.ts"):
            over_tls = await fetch(tls_port, target, trust)
            plain = await fetch(plain_port, target, None)
            assert over_tls == plain, target
            assert over_tls[0] == b"HTTP/1.1 200 OK"
        segment = (await fetch(plain_port, f"/{PATH}/{sid}/{newest}.ts", None))[1]
        # Large enough that aiohttp's path would have used sendfile from a memory file.
        assert len(segment) > web_http.SHARED_CHUNK
        listed = stream.packager.segment(newest)
        assert listed is not None
        assert app[HLS_CONTEXT].files.fd((PATH, newest, None), listed.data) is not None
        # Every TLS connection went to aiohttp (4 of them), none stayed on the fast path.
        assert fast.handed_off >= 4
        assert not fast.connections
    finally:
        tls_server.close()
        plain_server.close()
        await runner.cleanup()
        fast.close()


LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def run(test: Callable[[], Awaitable[None]], loop_factory: LoopFactory | None) -> None:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(test())


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_tls_connections_get_the_same_bytes_without_fast_path_or_sendfile(
    certs: NodeCert, loop: str
) -> None:
    run(lambda: serve_both_and_compare(certs), uvloop.new_event_loop if loop == "uvloop" else None)


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_is_tls_on_real_transports(certs: NodeCert, loop: str) -> None:
    async def main() -> None:
        seen: list[tuple[bool, bool]] = []

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                # The socket underneath is there either way: it is no sign of plain TCP.
                seen.append((is_tls(transport), transport.get_extra_info("socket") is not None))
                transport.close()

        loop_ = asyncio.get_running_loop()
        tls = await loop_.create_server(
            Probe, "127.0.0.1", 0, ssl=server_context(str(certs.cert), str(certs.key))
        )
        plain = await loop_.create_server(Probe, "127.0.0.1", 0)
        for server, context in ((tls, client_context(str(certs.ca))), (plain, None)):
            _reader, writer = await asyncio.open_connection(
                "127.0.0.1", server.sockets[0].getsockname()[1], ssl=context,
                server_hostname="127.0.0.1" if context else None,
            )
            for _ in range(100):
                if len(seen) == (1 if context else 2):
                    break
                await asyncio.sleep(0.01)
            writer.close()
        tls.close()
        plain.close()
        assert seen == [(True, True), (False, True)]

    run(main, uvloop.new_event_loop if loop == "uvloop" else None)


def test_unreadable_certificate_or_ca_is_a_clean_error(tmp_path: Path, certs: NodeCert) -> None:
    with pytest.raises(TlsError, match="cannot load the TLS certificate"):
        server_context(str(certs.ca), str(certs.key))  # the key does not match the CA cert
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(TlsError, match="cannot load the CA bundle"):
        client_context(str(junk))


def test_client_context_checks_names_and_certificates(certs: NodeCert) -> None:
    context = client_context(str(certs.ca))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
