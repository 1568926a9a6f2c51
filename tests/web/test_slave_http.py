"""The slave's HLS edge, in process: token checks at entry, sessions on media requests, the live
viewer count, limits, headers, and the JSON errors a player or a prober gets.

Streams are fed with real H.264+AAC frames; time moves through the injected clock.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import secrets

import pytest
from aiohttp import ClientResponse

from airclass.auth.tokens import TokenIssuer
from tests.web.conftest import NODE_ID, PATH, SID_LINE, T0, Slave, SlaveFactory

SEGMENT_LINE = re.compile(r"^(\d+)\.ts$")


async def error_of(resp: ClientResponse, status: int) -> str:
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == "application/json", text
    assert "Traceback" not in text
    body = json.loads(text)
    assert set(body) == {"error"} and body["error"]
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    return str(body["error"])


async def entry(slave: Slave, token: str | None, path: str = PATH) -> ClientResponse:
    params = {"jwt": token} if token is not None else {}
    return await slave.client.get(f"/{path}/index.m3u8", params=params)


# -- entry: the JWT is checked once ----------------------------------------------------------


async def test_no_token_is_401_even_for_an_unknown_stream(live: Slave) -> None:
    assert await error_of(await entry(live, None), 401) == "missing token"
    assert await error_of(await entry(live, None, "live/nothing"), 401) == "missing token"
    assert await error_of(await entry(live, ""), 401) == "missing token"


async def test_expired_token_is_401(live: Slave) -> None:
    token = live.token(ttl=60, now=T0 - 3600)
    assert "expired" in await error_of(await entry(live, token), 401)


async def test_forged_and_garbage_tokens_are_401(live: Slave) -> None:
    forged = TokenIssuer(secrets.token_urlsafe(32)).mint(
        user_type="student", user_id="eve", action="read", path=PATH, node_id=NODE_ID,
        now=T0, ttl=3600,
    )
    await error_of(await entry(live, forged), 401)
    head, payload, sig = live.token().split(".")
    tampered = f"{head}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{sig}"
    await error_of(await entry(live, tampered), 401)
    await error_of(await entry(live, "not-a-jwt"), 401)
    await error_of(await entry(live, "a.b.c"), 401)


async def test_token_for_another_node_is_403(live: Slave) -> None:
    token = live.token(node_id="slave-b")
    assert await error_of(await entry(live, token), 403) == "token is for another node"


async def test_token_for_another_stream_is_403(live: Slave) -> None:
    live.publish("live/other")
    token = live.token("live/other")
    assert await error_of(await entry(live, token), 403) == "token is for another stream"


async def test_publish_token_does_not_open_the_player(live: Slave) -> None:
    token = live.token(action="publish", user_type="teacher")
    assert await error_of(await entry(live, token), 403) == "token does not allow read"


async def test_bearer_header_works_like_the_query(live: Slave) -> None:
    resp = await live.client.get(
        f"/{PATH}/index.m3u8", headers={"Authorization": f"Bearer {live.token()}"}
    )
    assert resp.status == 200


async def test_valid_token_for_an_unknown_stream_is_404(slave: Slave) -> None:
    await error_of(await entry(slave, slave.token("live/nothing"), "live/nothing"), 404)


async def test_stream_without_a_segment_is_503_with_retry_after(slave: Slave) -> None:
    # The publisher has connected and sent its codec configs and one GOP: no segment is
    # closed until the next keyframe.
    slave.publish(seconds=1.0)
    assert slave.packager().state == "waiting"
    resp = await entry(slave, slave.token())
    await error_of(resp, 503)
    assert int(resp.headers["Retry-After"]) >= 1
    # A token is still required first.
    await error_of(await entry(slave, None), 401)


async def test_entry_is_a_multivariant_playlist_with_a_session_variant(live: Slave) -> None:
    resp = await entry(live, live.token())
    assert resp.status == 200
    assert resp.content_type == "application/vnd.apple.mpegurl"
    assert resp.headers["Cache-Control"] == "private, no-store"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    lines = (await resp.text()).splitlines()
    assert lines[0] == "#EXTM3U"
    inf = [i for i, line in enumerate(lines) if line.startswith("#EXT-X-STREAM-INF:")]
    assert len(inf) == 1
    attrs = lines[inf[0]]
    assert re.search(r"BANDWIDTH=\d+", attrs)
    assert "RESOLUTION=320x240" in attrs
    assert 'CODECS="avc1.' in attrs and "mp4a.40.2" in attrs
    assert SID_LINE.match(lines[inf[0] + 1])
    # Each entry is a new viewer: a new session id.
    assert await live.enter() != await live.enter()


# -- media playlist and segments --------------------------------------------------------------


async def test_media_playlist_is_the_same_bytes_for_every_viewer(live: Slave) -> None:
    a, b = await live.enter(), await live.enter(token=live.token(user_id="bob"))
    ra = await live.client.get(f"/{PATH}/{a}/media.m3u8")
    rb = await live.client.get(f"/{PATH}/{b}/media.m3u8")
    assert ra.status == rb.status == 200
    body_a, body_b = await ra.read(), await rb.read()
    assert body_a == body_b == live.packager().playlist_bytes
    assert ra.content_type == "application/vnd.apple.mpegurl"
    assert ra.headers["Cache-Control"] == "no-cache"
    assert ra.headers["Access-Control-Allow-Origin"] == "*"
    uris = [m.group(1) for line in body_a.decode().splitlines() if (m := SEGMENT_LINE.match(line))]
    assert uris == ["0", "1", "2", "3"]


async def test_segments_are_shared_immutable_mpegts(live: Slave) -> None:
    sid = await live.enter()
    for seg in live.packager().segments():
        resp = await live.client.get(f"/{PATH}/{sid}/{seg.sequence}.ts")
        assert resp.status == 200
        assert resp.content_type == "video/mp2t"
        assert "immutable" in resp.headers["Cache-Control"]
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        data = await resp.read()
        assert data == seg.data and data[0] == 0x47 and len(data) % 188 == 0
    await error_of(await live.client.get(f"/{PATH}/{sid}/99.ts"), 404)


async def test_playlist_is_gzipped_when_asked(live: Slave) -> None:
    sid = await live.enter()
    resp = await live.client.get(
        f"/{PATH}/{sid}/media.m3u8", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert resp.status == 200
    assert resp.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in resp.headers["Vary"]
    raw = await resp.read()
    assert gzip.decompress(raw) == live.packager().playlist_bytes
    plain = await live.client.get(
        f"/{PATH}/{sid}/media.m3u8", headers={"Accept-Encoding": "identity"},
        auto_decompress=False,
    )
    assert "Content-Encoding" not in plain.headers
    assert await plain.read() == live.packager().playlist_bytes


async def test_preflight_on_hls_paths(live: Slave) -> None:
    sid = await live.enter()
    for url in (f"/{PATH}/index.m3u8", f"/{PATH}/{sid}/media.m3u8", f"/{PATH}/{sid}/0.ts"):
        resp = await live.client.options(
            url,
            headers={"Origin": "http://master:8000", "Access-Control-Request-Method": "GET",
                     "Access-Control-Request-Headers": "authorization"},
        )
        assert resp.status == 204, url
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "GET" in resp.headers["Access-Control-Allow-Methods"]
        assert "authorization" in resp.headers["Access-Control-Allow-Headers"].lower()


async def test_cors_headers_on_api_responses(live: Slave) -> None:
    for url in ("/health", "/api/stats"):
        resp = await live.client.get(url)
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "Retry-After" in resp.headers["Access-Control-Expose-Headers"]


# -- sessions ----------------------------------------------------------------------------------


async def test_session_of_another_node_is_403(live: Slave) -> None:
    sid = live.signer_for("slave-b").mint(PATH, T0 + 3600, "alice")
    for url in (f"/{PATH}/{sid}/media.m3u8", f"/{PATH}/{sid}/0.ts"):
        await error_of(await live.client.get(url), 403)


async def test_session_of_another_stream_is_403(live: Slave) -> None:
    live.publish("live/other")
    other = await live.enter("live/other", live.token("live/other"))
    assert (await live.client.get(f"/live/other/{other}/0.ts")).status == 200
    await error_of(await live.client.get(f"/{PATH}/{other}/media.m3u8"), 403)
    await error_of(await live.client.get(f"/{PATH}/{other}/0.ts"), 403)


async def test_forged_sessions_are_403(live: Slave) -> None:
    genuine = await live.enter()
    foreign_key = live.signer_for(NODE_ID, secrets.token_urlsafe(32)).mint(PATH, T0 + 3600)
    flipped = genuine[:5] + ("A" if genuine[5] != "A" else "B") + genuine[6:]
    random_sid = secrets.token_urlsafe(25)[: len(genuine)]
    for sid in (foreign_key, flipped, random_sid, "A" * 40):
        await error_of(await live.client.get(f"/{PATH}/{sid}/media.m3u8"), 403)
        await error_of(await live.client.get(f"/{PATH}/{sid}/0.ts"), 403)
    stats = await live.stats()
    assert stats["connections"] == 0


async def test_expired_token_keeps_watching_while_active(live: Slave) -> None:
    sid = await live.enter(token=live.token(ttl=60))
    media = f"/{PATH}/{sid}/media.m3u8"
    for _ in range(8):  # 8 × 25 s: well past the token's 60 s
        assert (await live.client.get(media)).status == 200
        assert (await live.client.get(f"/{PATH}/{sid}/3.ts")).status == 200
        live.clock.advance(25)
    assert live.clock() - T0 > 60
    # A new viewer with the same, now expired, token is refused at the entry...
    assert "expired" in await error_of(await entry(live, live.token(ttl=60, now=T0)), 401)
    # ...and the old session, once it has gone quiet past the window, is refused too.
    live.clock.advance(31)
    msg = await error_of(await live.client.get(media), 403)
    assert "expired" in msg


async def test_unexpired_session_may_resume_after_a_pause(live: Slave) -> None:
    sid = await live.enter()
    assert (await live.client.get(f"/{PATH}/{sid}/media.m3u8")).status == 200
    live.clock.advance(120)
    assert (await live.client.get(f"/{PATH}/{sid}/media.m3u8")).status == 200


# -- the live viewer count ---------------------------------------------------------------------


async def test_viewer_counted_from_first_media_request_until_the_window(live: Slave) -> None:
    sid = await live.enter()
    assert (await live.stats())["connections"] == 0  # entering is not watching
    assert (await live.client.get(f"/{PATH}/{sid}/media.m3u8")).status == 200
    stats = await live.stats()
    assert stats["connections"] == 1
    assert stats["streams"][PATH]["viewers"] == 1
    live.clock.advance(29.9)
    assert (await live.stats())["connections"] == 1
    live.clock.advance(0.1)
    stats = await live.stats()
    assert stats["connections"] == 0
    assert stats["streams"][PATH]["viewers"] == 0


async def test_150_concurrent_viewers_are_counted_as_150(live: Slave) -> None:
    sids = await asyncio.gather(
        *(live.enter(token=live.token(user_id=f"s{i}")) for i in range(150))
    )
    assert len(set(sids)) == 150

    async def watch(sid: str) -> int:
        a = await live.client.get(f"/{PATH}/{sid}/media.m3u8")
        b = await live.client.get(f"/{PATH}/{sid}/0.ts")
        await b.read()
        return a.status + b.status

    assert await asyncio.gather(*(watch(s) for s in sids)) == [400] * 150
    stats = await live.stats()
    assert stats["connections"] == 150
    assert stats["streams"][PATH]["viewers"] == 150
    seg_bytes = len(live.packager().segment(0).data)  # type: ignore[union-attr]
    assert stats["bytes_served"] == 150 * seg_bytes


async def test_stats_and_health_report_the_node(live: Slave) -> None:
    live.publish("live/other")
    sid = await live.enter()
    seg = live.packager().segment(1)
    assert seg is not None
    await (await live.client.get(f"/{PATH}/{sid}/1.ts")).read()
    for url in ("/health", "/api/stats"):
        resp = await live.client.get(url)
        assert resp.status == 200 and resp.content_type == "application/json"
        stats = await resp.json()
        assert stats["node_id"] == NODE_ID
        assert stats["connections"] == 1
        assert stats["max_connections"] == 150
        assert stats["bytes_served"] == len(seg.data)
        assert stats["streams"][PATH]["viewers"] == 1
        assert stats["streams"][PATH]["bytes_served"] == len(seg.data)
        assert stats["streams"]["live/other"]["viewers"] == 0
        assert stats["streams"][PATH]["state"] == "live"
        assert isinstance(stats["cpu"], int | float) and 0 <= stats["cpu"] <= 100 * 64
        assert isinstance(stats["memory"], int | float) and 0 < stats["memory"] <= 100
    assert (await (await live.client.get("/health")).json())["status"] == "ok"


# -- --hard-limit ------------------------------------------------------------------------------


async def test_soft_limit_serves_beyond_capacity(make_slave: SlaveFactory) -> None:
    slave = await make_slave(max_connections=2)
    slave.publish()
    for i in range(3):
        sid = await slave.enter(token=slave.token(user_id=f"s{i}"))
        assert (await slave.client.get(f"/{PATH}/{sid}/0.ts")).status == 200
    assert (await slave.stats())["connections"] == 3


@pytest.mark.parametrize("where", ["entry", "first-media-request"])
async def test_hard_limit_refuses_new_viewers_never_existing_ones(
    make_slave: SlaveFactory, where: str
) -> None:
    slave = await make_slave(max_connections=2, hard_limit=True)
    slave.publish()
    late = await slave.enter(token=slave.token(user_id="late"))  # entered, not yet watching
    existing = [await slave.enter(token=slave.token(user_id=f"s{i}")) for i in range(2)]
    for sid in existing:
        assert (await slave.client.get(f"/{PATH}/{sid}/media.m3u8")).status == 200
    if where == "entry":
        resp = await entry(slave, slave.token(user_id="new"))
    else:
        resp = await slave.client.get(f"/{PATH}/{late}/media.m3u8")
    assert "full" in await error_of(resp, 503)
    assert int(resp.headers["Retry-After"]) >= 1
    for _ in range(3):
        slave.clock.advance(20)
        for sid in existing:
            assert (await slave.client.get(f"/{PATH}/{sid}/media.m3u8")).status == 200
            assert (await slave.client.get(f"/{PATH}/{sid}/2.ts")).status == 200
    assert (await slave.stats())["connections"] == 2
    # Once a seat frees up (a viewer leaves and the window passes), a new viewer gets in.
    slave.clock.advance(20)
    assert (await slave.client.get(f"/{PATH}/{existing[0]}/0.ts")).status == 200
    slave.clock.advance(15)
    assert (await slave.client.get(f"/{PATH}/{existing[0]}/0.ts")).status == 200
    assert (await slave.stats())["connections"] == 1
    newcomer = await slave.enter(token=slave.token(user_id="newcomer"))
    assert (await slave.client.get(f"/{PATH}/{newcomer}/0.ts")).status == 200


# -- probing -----------------------------------------------------------------------------------


TRAVERSALS = [
    "/../../etc/passwd",
    "/live/../../etc/passwd",
    "/live/stream/../../../etc/passwd",
    "/live/%2e%2e/%2e%2e/etc/passwd",
    "/live/stream/..%2f..%2f..%2fetc%2fpasswd",
    "/live/stream/index.m3u8/../../../../etc/passwd",
    "/live/stream/%2e%2e%2f%2e%2e%2fetc%2fpasswd/media.m3u8",
    "/live/..%5c..%5cetc%5cpasswd/index.m3u8",
    "/static/../airclass/config.py",
    "/..;/..;/etc/passwd",
]


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_path_traversal_is_a_json_404(live: Slave, target: str) -> None:
    """Sent raw on the socket so that no client-side URL normalisation hides the attempt."""
    assert live.client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", live.client.port)
    try:
        writer.write(
            f"GET {target}?jwt={live.token()} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            .encode()
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"404", raw[:300]
    assert b"application/json" in head.lower()
    assert set(json.loads(body)) == {"error"}
    assert b"root:" not in body and b"SECRET" not in body


async def test_unknown_routes_and_methods_are_json(live: Slave) -> None:
    await error_of(await live.client.get("/nothing/here"), 404)
    await error_of(await live.client.get(f"/{PATH}/index.m3u8x"), 404)
    sid = await live.enter()
    await error_of(await live.client.get(f"/{PATH}/{sid}/0.mp4"), 404)
    await error_of(await live.client.post(f"/{PATH}/index.m3u8"), 405)
