"""The origin → edge relay, in process: real slave apps on loopback ports, real HTTP between
them, packagers fed with synthetic segments or real encoded frames."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from airclass.auth.tokens import TokenIssuer
from airclass.cluster.relay import choose_backups
from airclass.cluster.relay_wire import (
    H_DISC_SEQUENCE,
    H_DURATION,
    H_PDT,
    H_SEQUENCE,
    RELAY_PREFIX,
    RelayError,
    parse_segment,
)
from airclass.cluster.signing import sign
from airclass.cluster.wire import ClusterView, Peer, StreamOrigin
from airclass.config import Config, finalize
from airclass.hls.ring import Segment
from airclass.streams import LiveStream
from airclass.web.hls_views import BACKUP_SESSION_GRACE, HLS_CONTEXT
from airclass.web.slave_app import RELAY, create_app
from tests.hls.conftest import make_test_frames

PATH = "live/stream"
SECRET = secrets.token_urlsafe(32)
CLUSTER_KEY = secrets.token_urlsafe(32)

ServerFactory = Callable[..., Awaitable[TestServer]]


@dataclass
class Node:
    node_id: str
    app: web.Application
    server: TestServer

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def origin(self) -> StreamOrigin:
        return StreamOrigin(self.node_id, self.base, self.base)

    def stream(self) -> LiveStream:
        stream = self.app[HLS_CONTEXT].streams.get(PATH)
        assert stream is not None
        return stream

    def sink(self) -> LiveStream:
        return self.app[HLS_CONTEXT].streams.sink(PATH)

    def newest(self) -> int | None:
        stream = self.app[HLS_CONTEXT].streams.get(PATH)
        return None if stream is None else stream.packager.newest_sequence

    def playlist(self) -> bytes:
        return self.stream().packager.playlist_bytes


def make_config(node_id: str, **overrides: Any) -> Config:
    values: dict[str, Any] = {
        "role": "slave",
        "node_id": node_id,
        "bind": "127.0.0.1",
        "public_host": "127.0.0.1",
        "rtmp_port": 0,
        "secret_key": SECRET,
        "cluster_key": CLUSTER_KEY,
    }
    values.update(overrides)
    return finalize(Config(**values))


@pytest.fixture
async def make_node(aiohttp_server: ServerFactory) -> Callable[..., Awaitable[Node]]:
    async def make(node_id: str, **overrides: Any) -> Node:
        app = create_app(make_config(node_id, **overrides))
        server = await aiohttp_server(app)
        return Node(node_id, app, server)

    return make


def synthetic(
    sequence: int, *, disc_seq: int = 0, disc: bool = False, size: int | None = None
) -> Segment:
    return Segment(
        sequence=sequence,
        duration=2.0 + sequence / 1000 + 1 / 3,
        data=secrets.token_bytes(size or 188 * (10 + sequence % 7)),
        program_date_time=1_700_000_000.123456 + 2.2 * sequence,
        discontinuity=disc,
        discontinuity_sequence=disc_seq,
    )


async def until(predicate: Callable[[], object], timeout: float = 5.0, what: str = "") -> None:
    """Wait for a condition that other tasks (the relay) make true; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.01)


async def signed_get(
    url_base: str, path_qs: str, *, key: str = CLUSTER_KEY, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    signed = sign(key, "GET", path_qs, b"", time.time())
    async with aiohttp.ClientSession() as session, session.get(
        url_base + path_qs, headers={**signed, **(headers or {})}
    ) as resp:
        return resp.status, dict(resp.headers), await resp.read()


# -- the origin endpoint -----------------------------------------------------------------------


async def test_relay_endpoint_refuses_anything_but_a_cluster_signature(
    make_node: Callable[..., Awaitable[Node]],
) -> None:
    origin = await make_node("origin")
    origin.sink().packager.append_segment(synthetic(0))
    issuer = TokenIssuer(SECRET)
    jwt = issuer.mint(
        user_type="teacher", user_id="t", action="read", path=PATH, node_id="origin",
        now=time.time(), ttl=3600,
    )
    url = f"{origin.base}{RELAY_PREFIX}/{PATH}?after=-1&wait=0"
    async with aiohttp.ClientSession() as session:
        for headers, query in (
            ({}, ""),
            ({"Authorization": f"Bearer {jwt}"}, ""),
            ({}, f"&jwt={jwt}"),
        ):
            async with session.get(url + query, headers=headers) as resp:
                assert resp.status == 401
                assert "error" in await resp.json()
        async with session.get(f"{origin.base}{RELAY_PREFIX}/{PATH}/state") as resp:
            assert resp.status == 401

    path_qs = f"{RELAY_PREFIX}/{PATH}?after=-1&wait=0"
    status, _, body = await signed_get(origin.base, path_qs, key=secrets.token_urlsafe(32))
    assert status == 401 and b"bad signature" in body
    # A signature covers the query: the same headers with another `after` are refused.
    signed = sign(CLUSTER_KEY, "GET", path_qs, b"", time.time())
    async with aiohttp.ClientSession() as session:
        async with session.get(origin.base + path_qs.replace("-1", "5"), headers=signed) as resp:
            assert resp.status == 401
        async with session.get(origin.base + path_qs, headers=signed) as resp:
            assert resp.status == 200
        async with session.get(origin.base + path_qs, headers=signed) as resp:
            assert resp.status == 401, "a replayed request is refused"
            assert "replayed" in (await resp.json())["error"]


async def test_a_node_without_cluster_key_serves_no_relay(
    make_node: Callable[..., Awaitable[Node]],
) -> None:
    origin = await make_node("lonely", cluster_key="")
    origin.sink().packager.append_segment(synthetic(0))
    status, _, body = await signed_get(origin.base, f"{RELAY_PREFIX}/{PATH}?after=-1&wait=0")
    assert status == 401 and b"cluster key" in body


async def test_long_poll_returns_the_segment_as_soon_as_it_exists(
    make_node: Callable[..., Awaitable[Node]],
) -> None:
    origin = await make_node("origin")
    packager = origin.sink().packager
    first = synthetic(0)
    packager.append_segment(first)

    # Without waiting: the segment after -1 is there, after 0 there is none yet.
    status, headers, body = await signed_get(origin.base, f"{RELAY_PREFIX}/{PATH}?after=-1&wait=0")
    assert status == 200 and body == first.data
    assert headers[H_SEQUENCE] == "0" and float(headers[H_DURATION]) == first.duration
    assert float(headers[H_PDT]) == first.program_date_time
    status, _, _ = await signed_get(origin.base, f"{RELAY_PREFIX}/{PATH}?after=0&wait=0")
    assert status == 204

    poll = asyncio.create_task(
        signed_get(origin.base, f"{RELAY_PREFIX}/{PATH}?after=0&wait=15")
    )
    await asyncio.sleep(0.2)
    assert not poll.done(), "the request blocks while there is no next segment"
    second = synthetic(1)
    made = time.monotonic()
    packager.append_segment(second)
    status, headers, body = await asyncio.wait_for(poll, 2.0)
    woke = time.monotonic() - made
    assert status == 200 and body == second.data and headers[H_SEQUENCE] == "1"
    assert woke < 0.25, f"long poll answered {woke:.3f} s after the segment was made"

    # A stream this node does not have; a bad parameter; an edge ahead of the origin.
    status, _, _ = await signed_get(origin.base, f"{RELAY_PREFIX}/live/other?after=-1&wait=0")
    assert status == 404
    status, _, body = await signed_get(origin.base, f"{RELAY_PREFIX}/{PATH}?after=x&wait=0")
    assert status == 400 and b"error" in body
    status, _, _ = await signed_get(origin.base, f"{RELAY_PREFIX}/{PATH}?after=9&wait=0")
    assert status == 409


async def test_segment_metadata_round_trips_and_bad_headers_are_refused() -> None:
    seg = synthetic(7, disc_seq=3, disc=True)
    headers = {
        H_SEQUENCE: "7", H_DURATION: repr(seg.duration), H_PDT: repr(seg.program_date_time),
        "X-AIRClass-Discontinuity": "1", H_DISC_SEQUENCE: "3", "X-AIRClass-Target-Duration": "3",
        "X-AIRClass-Ended": "0", "X-AIRClass-Video-Codec": "avc1.64000d",
        "X-AIRClass-Resolution": "320x240",
    }
    relayed = parse_segment(headers, seg.data)
    assert relayed.segment == seg
    assert relayed.target_duration == 3 and relayed.video_codec == "avc1.64000d"
    assert relayed.audio_codec is None and relayed.resolution == (320, 240)
    for name, bad in ((H_SEQUENCE, "-1"), (H_DURATION, "nan"), (H_PDT, "x"),
                      ("X-AIRClass-Discontinuity", "yes")):
        with pytest.raises(RelayError):
            parse_segment({**headers, name: bad}, seg.data)
    assert parse_segment({**headers, "X-AIRClass-Video-Codec": 'a"b'}, b"").video_codec is None


# -- edges ---------------------------------------------------------------------------------------


async def test_join_copies_the_ring_and_playlists_stay_identical(
    make_node: Callable[..., Awaitable[Node]],
) -> None:
    origin = await make_node("origin")
    edge = await make_node("edge")
    packager = origin.sink().packager
    packager.adopt_media_info(video_codec="avc1.64000d", audio_codec="mp4a.40.2",
                              resolution=(320, 240))
    for seq in range(11):
        # Some segments as large as a 1080p one, so that bodies arrive in many reads.
        packager.append_segment(synthetic(seq, size=3_000_000 if seq % 3 == 0 else None))
    ring = [s.sequence for s in packager.segments()]
    assert ring == list(range(3, 11)), "ring of 8, playlist of 6"

    assert edge.app[RELAY].follow(PATH, origin.origin)
    await until(lambda: edge.newest() == 10, what="the edge to copy the ring")
    edge_packager = edge.stream().packager
    assert [s.sequence for s in edge_packager.segments()] == ring, "every ring segment copied"
    assert edge.playlist() == origin.playlist()
    for seg in packager.segments():
        assert edge_packager.segment(seg.sequence) == seg

    # Live: each new segment reaches the edge, and the playlists match at every step.
    for seq in range(11, 16):
        packager.append_segment(synthetic(seq, disc_seq=1 if seq >= 13 else 0, disc=seq == 13))
        await until(lambda seq=seq: edge.newest() == seq)  # type: ignore[misc]
        assert edge.playlist() == origin.playlist()
        assert edge_packager.segment(seq) == packager.segment(seq)
    assert b"#EXT-X-DISCONTINUITY\n" in edge.playlist()

    # Entry playlists advertise the same variant on both nodes.
    assert edge_packager.codecs == packager.codecs and edge_packager.codecs
    assert edge_packager.resolution == packager.resolution
    assert edge_packager.bandwidth == packager.bandwidth > 0

    # The origin ends the stream: ENDLIST reaches the edge without a new segment.
    packager.end()
    await until(lambda: edge_packager.state == "ended", what="ENDLIST on the edge")
    assert edge.playlist() == origin.playlist()
    assert edge.playlist().endswith(b"#EXT-X-ENDLIST\n")
    stats = edge.app[RELAY].stats()["following"][PATH]
    assert stats["origin"] == "origin" and stats["segments"] == 13 and stats["errors"] == 0


async def test_edge_starts_over_when_the_origin_restarts_its_numbering(
    make_node: Callable[..., Awaitable[Node]],
) -> None:
    origin = await make_node("origin")
    edge = await make_node("edge")
    edge_packager = edge.sink().packager
    for seq in range(40, 44):
        edge_packager.append_segment(synthetic(seq))
    for seq in range(3):
        origin.sink().packager.append_segment(synthetic(seq))
    edge.app[RELAY].follow(PATH, origin.origin)
    await until(lambda: edge.newest() == 2, what="the edge to take the restarted numbering")
    assert edge.playlist() == origin.playlist()


async def test_origin_switch_keeps_the_numbering_with_a_discontinuity(
    make_node: Callable[..., Awaitable[Node]],
) -> None:
    """The teacher publishes to A; B and C relay. The teacher reconnects to B: B continues
    A's numbering with a discontinuity, C follows B, and every playlist stays identical."""
    a, b, c = [await make_node(n) for n in ("node-a", "node-b", "node-c")]
    video, audio, frames = make_test_frames(9.0)

    def publish(node: Node, part: list[Any]) -> None:
        stream = node.sink()
        stream.on_publish_start()
        stream.on_event(video)
        stream.on_event(audio)
        for frame in part:
            stream.on_event(frame)

    publish(a, frames)
    a_newest = a.newest()
    assert a_newest is not None and a_newest >= 2
    for edge in (b, c):
        assert edge.app[RELAY].follow(PATH, a.origin)
    await until(lambda: b.newest() == c.newest() == a_newest, what="B and C to catch up")
    a.stream().on_publish_stop()  # OBS lost its connection to A: the pending segment is cut
    last_a = a.newest()
    assert last_a == a_newest + 1
    await until(lambda: b.newest() == c.newest() == last_a, what="the last segment of A")
    assert a.playlist() == b.playlist() == c.playlist()
    assert b.stream().packager.codecs == a.stream().packager.codecs

    publish(b, frames)  # OBS reconnects to B
    assert b.app[RELAY].follow(PATH, a.origin) is False, "a publishing node does not follow"
    b_segments = b.stream().packager.segments()
    continued = [s for s in b_segments if s.sequence > last_a]
    assert continued[0].sequence == last_a + 1
    assert continued[0].discontinuity and continued[0].discontinuity_sequence == 1
    assert all(not s.discontinuity for s in continued[1:])

    assert c.app[RELAY].follow(PATH, b.origin)
    # LL-HLS: the open segment's parts follow the newest segment, one long poll each.
    await until(lambda: c.playlist() == b.playlist(), what="C to follow B, parts included")
    assert c.newest() == b.newest()
    assert b"#EXT-X-DISCONTINUITY\n" in c.playlist()
    for seg in b_segments:
        assert c.stream().packager.segment(seg.sequence) == seg
    # B's follower stopped on its own once B's publisher was live.
    await until(lambda: PATH not in b.app[RELAY].following, what="B to stop following")


async def test_follow_unfollow_from_the_master_view(
    make_node: Callable[..., Awaitable[Node]],
) -> None:
    origin = await make_node("origin")
    edge = await make_node("edge")
    origin.sink().packager.append_segment(synthetic(0))
    manager = edge.app[RELAY]
    peers = (
        Peer("origin", origin.base, origin.base, "healthy", 10.0),
        Peer("edge", edge.base, edge.base, "healthy", 0.0),
    )
    view = ClusterView("edge", {PATH: origin.origin, "live/mine": edge.origin}, peers)
    manager.apply(view)
    assert set(manager.following) == {PATH}, "a node never follows itself"
    assert edge.app[HLS_CONTEXT].backups == [("origin", origin.base)]
    await until(lambda: edge.newest() == 0)
    async with aiohttp.ClientSession() as session, session.get(f"{edge.base}/api/stats") as resp:
        relay = (await resp.json())["relay"]
    assert relay["following"][PATH]["origin"] == "origin" and relay["segments_relayed"] == 1

    manager.apply(ClusterView("edge", {}, ()))
    assert manager.following == {}
    stream = edge.stream()
    assert stream.stopped_at is not None, "an unfollowed stream is closed by the sweeper"
    assert edge.app[HLS_CONTEXT].backups == []

    # A path or URL the relay would not put in a request is ignored.
    assert not manager.follow("../etc", origin.origin)
    assert not manager.follow(PATH, StreamOrigin("x", "", "file:///etc"))


def test_backups_prefer_healthy_then_least_loaded_and_skip_offline() -> None:
    peers = [
        Peer("n1", "http://n1:8888", "http://n1:8000", "critical", 95.0),
        Peer("n2", "http://n2:8888/", "http://n2:8000", "healthy", 50.0),
        Peer("n3", "http://n3:8888", "http://n3:8000", "offline", 0.0),
        Peer("n4", "http://n4:8888", "http://n4:8000", "healthy", 20.0),
        Peer("me", "http://me:8888", "http://me:8000", "healthy", 0.0),
        Peer("n5", "http://n5:8888", "http://n5:8000", "warning", 75.0),
    ]
    assert choose_backups(peers, "me") == [("n4", "http://n4:8888"), ("n2", "http://n2:8888")]
    assert choose_backups(peers, "me", limit=4)[2:] == [
        ("n5", "http://n5:8888"), ("n1", "http://n1:8888")
    ]
    assert choose_backups(peers[2:3], "me") == []


async def test_entry_playlist_lists_backups_with_their_own_long_lived_sessions(
    make_node: Callable[..., Awaitable[Node]],
) -> None:
    origin = await make_node("origin")
    edge = await make_node("edge")
    packager = origin.sink().packager
    packager.adopt_media_info(video_codec="avc1.64000d", audio_codec="mp4a.40.2",
                              resolution=(320, 240))
    for seq in range(4):
        packager.append_segment(synthetic(seq))
    edge.app[RELAY].follow(PATH, origin.origin)
    await until(lambda: edge.newest() == 3)
    origin.app[HLS_CONTEXT].backups = [("edge", edge.base)]

    now = time.time()
    jwt = TokenIssuer(SECRET).mint(
        user_type="student", user_id="kim", action="read", path=PATH, node_id="origin",
        now=now, ttl=3600,
    )
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{origin.base}/{PATH}/index.m3u8?jwt={jwt}") as resp:
            assert resp.status == 200
            text = await resp.text()
        lines = text.splitlines()
        infs = [line for line in lines if line.startswith("#EXT-X-STREAM-INF:")]
        uris = [line for line in lines if line and not line.startswith("#")]
        assert len(infs) == 2 and infs[0] == infs[1]
        assert 'CODECS="avc1.64000d,mp4a.40.2"' in infs[0] and "RESOLUTION=320x240" in infs[0]
        assert not uris[0].startswith("http") and uris[1].startswith(f"{edge.base}/{PATH}/")
        backup_sid = uris[1].split("/")[-2]
        info = edge.app[HLS_CONTEXT].signer.check(backup_sid, PATH)
        assert info is not None and info.user_id == "kim"
        assert info.expires_at >= now + 3600 + BACKUP_SESSION_GRACE - 2
        assert origin.app[HLS_CONTEXT].signer.check(backup_sid, PATH) is None
        # The backup serves the same playlist bytes under the viewer's backup session.
        async with session.get(uris[1]) as resp:
            assert resp.status == 200
            assert await resp.read() == origin.playlist()


async def test_an_edge_that_joins_again_after_the_end_ends_too(
    make_node: Callable[..., Awaitable[Node]],
) -> None:
    origin = await make_node("origin")
    edge = await make_node("edge")
    for seq in range(3):
        origin.sink().packager.append_segment(synthetic(seq))
        edge.sink().packager.append_segment(origin.stream().packager.segments()[-1])
    origin.stream().packager.end()
    assert edge.stream().packager.state == "live"
    edge.app[RELAY].follow(PATH, origin.origin)
    await until(lambda: edge.stream().packager.state == "ended", what="ENDLIST on the edge")
    assert edge.playlist() == origin.playlist()


async def test_an_edge_holds_blocking_requests_for_a_part_it_does_not_have_yet(
    make_node: Callable[..., Awaitable[Node]],
) -> None:
    """LL-HLS through a relay: a viewer on the edge asks (blocking reload, and the preload
    hint) for the part the origin is still making; both requests wait on the edge and answer
    with that part once it is made on the origin and relayed."""
    origin = await make_node("origin", segment_duration=1.0)
    edge = await make_node("edge", segment_duration=1.0)
    video, audio, frames = make_test_frames(12.0, gop=25)
    stream = origin.sink()
    stream.on_publish_start()
    stream.on_event(video)
    stream.on_event(audio)
    sent = 0

    def send_until(predicate: Callable[[], bool]) -> None:
        nonlocal sent
        while not predicate():
            assert sent < len(frames), "ran out of frames"
            stream.on_event(frames[sent])
            sent += 1

    packager = stream.packager
    assert packager.low_latency
    send_until(lambda: (packager.newest_sequence or 0) >= 1 and packager.open_parts >= 1)
    assert edge.app[RELAY].follow(PATH, origin.origin)
    await until(
        lambda: edge.newest() is not None and edge.playlist() == origin.playlist(),
        what="the edge to catch up",
    )

    seq, index = packager.next_sequence, packager.open_parts
    assert packager.part(seq, index) is None, "the origin has not made it either"
    sid = edge.app[HLS_CONTEXT].signer.mint(PATH, time.time() + 3600, "student")
    base = f"{edge.base}/{PATH}/{sid}"

    async def fetch(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
        async with http.get(url) as resp:
            return resp.status, await resp.read()

    async with aiohttp.ClientSession() as http:
        reload = asyncio.create_task(
            fetch(http, f"{base}/media.m3u8?_HLS_msn={seq}&_HLS_part={index}")
        )
        hinted = asyncio.create_task(fetch(http, f"{base}/{seq}.{index}.ts"))
        await asyncio.sleep(0.5)
        assert not reload.done() and not hinted.done(), "both wait for the part"

        send_until(lambda: packager.part(seq, index) is not None)
        made = time.monotonic()
        status, playlist = await asyncio.wait_for(reload, 5)
        reload_s = time.monotonic() - made
        assert status == 200
        assert f'URI="{seq}.{index}.ts"'.encode() in playlist.split(b"#EXT-X-PRELOAD-HINT")[0]
        status, body = await asyncio.wait_for(hinted, 5)
        part = packager.part(seq, index)
        assert status == 200 and part is not None and body == part.data
        assert reload_s < 1.0, f"the edge answered {reload_s:.3f} s after the origin made it"
