from __future__ import annotations

import pytest

from airclass.rtmp.errors import HandshakeError
from airclass.rtmp.handshake import HandshakeState, ServerHandshake

C1 = bytes(range(256)) * 6
C2 = bytes(1536)
RANDOM = bytes(range(8, 256)) * 6 + bytes(range(8, 48))


def test_byte_by_byte() -> None:
    hs = ServerHandshake(RANDOM)
    stream = b"\x03" + C1
    for i, byte in enumerate(stream):
        assert hs.receive_data(bytes([byte])) == b""
        if i < len(stream) - 1:
            assert hs.data_to_send() == b""
            assert hs.state is HandshakeState.WAIT_C0C1
    assert hs.data_to_send() == b"\x03" + bytes(8) + RANDOM + C1
    assert hs.state is HandshakeState.WAIT_C2
    for byte in C2[:-1]:
        assert hs.receive_data(bytes([byte])) == b""
    assert not hs.done
    assert hs.receive_data(C2[-1:]) == b""
    assert hs.done
    assert hs.data_to_send() == b""
    assert hs.receive_data(b"\x02") == b"\x02"


def test_all_at_once_returns_what_follows() -> None:
    hs = ServerHandshake(RANDOM)
    rest = hs.receive_data(b"\x03" + C1 + C2 + b"chunk data")
    assert rest == b"chunk data"
    assert hs.done
    out = hs.data_to_send()
    assert len(out) == 3073
    assert out[1537:] == C1


def test_c1_split_across_c2() -> None:
    hs = ServerHandshake(RANDOM)
    assert hs.receive_data(b"\x03" + C1[:1000]) == b""
    assert hs.receive_data(C1[1000:] + C2[:5]) == b""
    assert hs.receive_data(C2[5:] + b"xy") == b"xy"


@pytest.mark.parametrize("version", [6, 8, 0, 0x16])
def test_other_versions_refused_on_first_byte(version: int) -> None:
    with pytest.raises(HandshakeError, match=f"unsupported RTMP version {version}"):
        ServerHandshake(RANDOM).receive_data(bytes([version]))


def test_random_must_fit() -> None:
    with pytest.raises(ValueError):
        ServerHandshake(b"short")
    assert len(ServerHandshake()._random) == 1528
