"""A cluster slave's copy of the teacher password epoch, against a real master app and a
master that answers badly: a bad answer never changes (or clears) what the slave knows."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from airclass.auth.epoch import TeacherEpochs, password_epoch
from airclass.cluster.signing import request_nonce
from airclass.cluster.teacher_epoch import MAX_REPLY, EpochFollower
from airclass.config import Config
from airclass.web.http import signed_reply
from airclass.web.master_app import create_master_app
from tests.web.test_master_app import CLUSTER_KEY, PASSWORD, SECRET, master_config

EPOCH = password_epoch(SECRET, "teacher", PASSWORD)


def slave_config(
    master_url: str, cluster_key: str = CLUSTER_KEY, interval: float = 0.2
) -> Config:
    return Config(role="slave", node_id="slave-1", master_url=master_url,
                  cluster_key=cluster_key, secret_key=SECRET, heartbeat_interval=interval)


async def test_the_slave_learns_the_masters_epoch(aiohttp_server: Any) -> None:
    server = await aiohttp_server(create_master_app(master_config()))
    epochs = TeacherEpochs()
    follower = EpochFollower(slave_config(str(server.make_url("")).rstrip("/")), epochs)
    await follower.start()
    try:
        assert epochs.current() == EPOCH  # the first answer came before start() returned
        assert follower.answers == 1
    finally:
        await follower.close()


async def test_a_wrong_cluster_key_learns_nothing(aiohttp_server: Any) -> None:
    server = await aiohttp_server(create_master_app(master_config()))
    epochs = TeacherEpochs()
    follower = EpochFollower(
        slave_config(str(server.make_url("")).rstrip("/"), "another-cluster-key-0123456789"),
        epochs,
    )
    await follower.start()
    try:
        assert epochs.current() is None and follower.failures == 1
    finally:
        await follower.close()


async def test_bad_answers_keep_the_last_epoch(aiohttp_server: Any) -> None:
    replies: list[tuple[int, bytes]] = [
        (200, json.dumps({"teacher_epoch": EPOCH}).encode()),
        (500, b'{"error": "down"}'),
        (200, b"not json"),
        (200, json.dumps({"teacher_epoch": 12}).encode()),
        (200, json.dumps({"teacher_epoch": "short"}).encode()),
        (200, json.dumps([1, 2]).encode()),
        (200, json.dumps({"teacher_epoch": "A" * 16, "pad": "x" * MAX_REPLY}).encode()),
    ]

    async def answer(request: web.Request) -> web.Response:
        """Signed as the master signs, so that only the contents are bad."""
        status, body = replies.pop(0)
        response = web.Response(status=status, body=body, content_type="application/json")
        return signed_reply(response, CLUSTER_KEY, request_nonce(request.headers))

    app = web.Application()
    app.router.add_post("/cluster/teacher-epoch", answer)
    server = await aiohttp_server(app)
    epochs = TeacherEpochs()
    # A long interval: after the first answer, the test asks by hand.
    url = str(server.make_url("")).rstrip("/")
    follower = EpochFollower(slave_config(url, interval=600.0), epochs)
    await follower.start(first_wait=5.0)
    try:
        assert epochs.current() == EPOCH
        for _ in range(6):
            assert await follower.fetch() is False
            assert epochs.current() == EPOCH
    finally:
        await follower.close()
    assert follower.failures == 6 and follower.answers == 1 and not replies


async def test_an_unsigned_or_forged_epoch_is_not_learnt(aiohttp_server: Any) -> None:
    """Whoever answers on the master's address cannot turn revocation off (null) or refuse
    every teacher (a wrong epoch)."""
    forged = TeacherEpochs()
    forged.learn(EPOCH)

    answers = ["unsigned", "wrong key"]

    async def answer(request: web.Request) -> web.Response:
        body = json.dumps({"teacher_epoch": None}).encode()
        response = web.Response(status=200, body=body, content_type="application/json")
        if answers.pop(0) == "wrong key":
            return signed_reply(response, "another-cluster-key-0123456789abcdef",
                                request_nonce(request.headers))
        return response

    app = web.Application()
    app.router.add_post("/cluster/teacher-epoch", answer)
    server = await aiohttp_server(app)
    follower = EpochFollower(
        slave_config(str(server.make_url("")).rstrip("/"), interval=600.0), forged
    )
    await follower.start(first_wait=5.0)  # the first answer: unsigned
    try:
        assert forged.current() == EPOCH
        assert await follower.fetch() is False  # the second: signed with another key
        assert forged.current() == EPOCH and follower.answers == 0 and not answers
    finally:
        await follower.close()
