from __future__ import annotations

import base64
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airclass.auth.sessions import (
    NO_TOKEN,
    SessionInfo,
    SessionSigner,
    SessionTable,
    token_key,
)

SECRET = "session-test-secret-0123456789abcdef"
PATH = "live/stream"
EXP = 1_700_003_600.0
URLSAFE = set(string.ascii_letters + string.digits + "-_")


@pytest.fixture
def signer() -> SessionSigner:
    return SessionSigner(SECRET, "slave-1")


def raw_of(sid: str) -> bytes:
    return base64.urlsafe_b64decode(sid + "=" * (-len(sid) % 4))


def test_round_trip(signer: SessionSigner) -> None:
    sid = signer.mint(PATH, EXP + 0.9)
    info = signer.check(sid, PATH)
    assert info == SessionInfo(
        sid, raw_of(sid)[:8].hex(), "slave-1", PATH, EXP, None, NO_TOKEN
    )
    assert signer.check(sid, "/live/stream/") == info


def test_sid_is_short_url_path_safe_and_unique(signer: SessionSigner) -> None:
    sids = {signer.mint(PATH, EXP) for _ in range(1000)}
    assert len(sids) == 1000
    for sid in sids:
        assert len(sid) == 44  # 33 bytes
        assert set(sid) <= URLSAFE


def test_user_id_travels_in_the_sid(signer: SessionSigner) -> None:
    sid = signer.mint(PATH, EXP, "student-42")
    assert len(sid) == 58  # 43 bytes
    info = signer.check(sid, PATH)
    assert info is not None and info.user_id == "student-42"


def test_long_user_id_is_cut_on_a_character_boundary(signer: SessionSigner) -> None:
    user = "é" * 20  # 40 bytes of UTF-8
    info = signer.check(signer.mint(PATH, EXP, user), PATH)
    assert info is not None and info.user_id == "é" * 16


def test_other_node_refused_and_backup_minting(signer: SessionSigner) -> None:
    other = SessionSigner(SECRET, "slave-2")
    sid = signer.mint(PATH, EXP)
    assert other.check(sid, PATH) is None
    backup = signer.mint(PATH, EXP, "u", node_id="slave-2")
    assert signer.check(backup, PATH) is None
    info = other.check(backup, PATH)
    assert info is not None and info.node_id == "slave-2" and info.user_id == "u"


def test_node_prefix_is_unambiguous() -> None:
    # Node "a" + path "bc" must not sign the same bytes as node "ab" + path "c".
    sid = SessionSigner(SECRET, "a").mint("bc", EXP)
    assert SessionSigner(SECRET, "ab").check(sid, "c") is None


def test_other_path_refused(signer: SessionSigner) -> None:
    sid = signer.mint(PATH, EXP)
    assert signer.check(sid, "live/stream2") is None
    assert signer.check(sid, "live/other") is None
    assert signer.check(sid, "") is None


def test_other_secret_refused(signer: SessionSigner) -> None:
    sid = SessionSigner("another-secret-0123456789abcdefghij", "slave-1").mint(PATH, EXP)
    assert signer.check(sid, PATH) is None


def test_every_single_character_change_is_refused(signer: SessionSigner) -> None:
    sid = signer.mint(PATH, EXP, "bob")
    for i, c in enumerate(sid):
        for replacement in "AQgw_-9z":
            if replacement != c:
                forged = sid[:i] + replacement + sid[i + 1:]
                assert signer.check(forged, PATH) is None, (i, replacement)


def test_tampered_expiry_refused(signer: SessionSigner) -> None:
    raw = bytearray(raw_of(signer.mint(PATH, EXP)))
    raw[8:12] = (2**32 - 1).to_bytes(4, "big")
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert signer.check(forged, PATH) is None


def test_every_truncation_and_extension_refused(signer: SessionSigner) -> None:
    sid = signer.mint(PATH, EXP)
    for n in range(len(sid)):
        assert signer.check(sid[:n], PATH) is None
    for extra in ("A", "AA", "AAA", "AAAA", "="):
        assert signer.check(sid + extra, PATH) is None


def test_non_canonical_spellings_refused(signer: SessionSigner) -> None:
    sid = signer.mint(PATH, EXP, "b")
    assert len(sid) % 4 == 2  # the last character carries 4 unused bits
    assert signer.check(sid, PATH) is not None
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(sid[-1])
    alias = sid[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last | 1]
    assert raw_of(alias) == raw_of(sid)
    assert signer.check(alias, PATH) is None
    assert signer.check(sid + "==", PATH) is None
    standard = sid.replace("-", "+").replace("_", "/")
    if standard != sid:
        assert signer.check(standard, PATH) is None


@pytest.mark.parametrize(
    "sid",
    ["", "A", "A" * 33, "A" * 34, "A" * 100, "é" * 34, "\x00" * 34, "AAAA AAAA" * 4,
     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "../../../etc/passwd", "A" * 34 + "\n"],
)
def test_malformed_refused(signer: SessionSigner, sid: str) -> None:
    assert signer.check(sid, PATH) is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_any_text_is_refused_without_raising(sid: str) -> None:
    assert SessionSigner(SECRET, "slave-1").check(sid, PATH) is None


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=25, max_size=60))
def test_any_well_formed_base64_is_refused(raw: bytes) -> None:
    sid = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    assert SessionSigner(SECRET, "slave-1").check(sid, PATH) is None


def test_the_token_travels_in_the_sid_and_is_signed(signer: SessionSigner) -> None:
    key = token_key("jti-1", "alice")
    assert key == bytes.fromhex("2406e9f0db44a87b")
    sid = signer.mint(PATH, EXP, "alice", token=key)
    assert raw_of(sid)[12:20] == key
    info = signer.check(sid, PATH)
    assert info is not None and info.token == key and info.user_id == "alice"
    backup = SessionSigner(SECRET, "slave-2").check(
        signer.mint(PATH, EXP, "alice", node_id="slave-2", token=key), PATH
    )
    assert backup is not None and backup.token == key
    raw = bytearray(raw_of(sid))
    raw[12:20] = token_key("jti-2", "alice")
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert signer.check(forged, PATH) is None
    with pytest.raises(ValueError):
        signer.mint(PATH, EXP, token=b"short")


def test_token_key_separates_tokens_and_users() -> None:
    keys = {token_key("a", "u"), token_key("b", "u"), token_key("a", "v"), token_key("au", "")}
    assert len(keys) == 4
    assert all(len(k) == 8 and k != NO_TOKEN for k in keys)
    assert token_key("a", "u") == token_key("a", "u")


def test_expiry_is_clamped_to_32_bits(signer: SessionSigner) -> None:
    assert signer.check(signer.mint(PATH, -5), PATH).expires_at == 0.0  # type: ignore[union-attr]
    far = signer.check(signer.mint(PATH, 1e12), PATH)
    assert far is not None and far.expires_at == float(2**32 - 1)
    with pytest.raises(ValueError):
        signer.mint(PATH, float("inf"))


# SessionTable


def info_for(signer: SessionSigner, expires_at: float = EXP, path: str = PATH) -> SessionInfo:
    info = signer.check(signer.mint(path, expires_at), path)
    assert info is not None
    return info


def test_window_expiry_is_exact() -> None:
    table = SessionTable(window=30.0)
    assert table.touch("s", PATH, 100.0)
    assert table.is_active("s", 129.999)
    assert table.count(129.999) == 1
    assert not table.is_active("s", 130.0)
    assert table.count(130.0) == 0
    assert (table.sessions_opened, table.sessions_closed) == (1, 1)


def test_touch_keeps_a_session_alive() -> None:
    table = SessionTable(window=30.0)
    for t in range(0, 300, 10):
        assert table.touch("s", PATH, float(t))
    assert table.count(300.0) == 1
    assert (table.sessions_opened, table.sessions_closed) == (1, 0)


def test_token_expiry_mid_lecture_does_not_cut_an_active_viewer(signer: SessionSigner) -> None:
    table = SessionTable(window=30.0)
    info = info_for(signer, expires_at=1000.0)
    assert table.admit(info, 990.0)
    for t in range(1000, 5000, 4):  # segments every 4 s long after the expiry
        assert table.admit(info, float(t))
    # Gone quiet for a window after expiry: the sid is dead.
    assert not table.admit(info, 4996.0 + 30.0)
    assert table.sessions_refused == 1


def test_expired_sid_never_seen_is_refused(signer: SessionSigner) -> None:
    table = SessionTable()
    info = info_for(signer, expires_at=1000.0)
    assert not table.admit(info, 1000.0)
    assert table.admit(info, 999.0)


def test_hard_limit_refuses_new_sessions_only() -> None:
    table = SessionTable(window=30.0, capacity=2, hard_limit=True)
    assert table.touch("a", PATH, 0.0)
    assert table.touch("b", PATH, 1.0)
    assert not table.touch("c", PATH, 2.0)
    assert table.touch("a", PATH, 3.0)
    assert table.touch("b", PATH, 3.0)
    assert table.sessions_refused == 1
    # "a" and "b" go quiet; a seat frees up once they leave the window.
    assert not table.touch("c", PATH, 32.9)
    assert table.touch("c", PATH, 33.0)
    assert table.count(33.0) == 1


def test_soft_capacity_counts_beyond_capacity() -> None:
    table = SessionTable(capacity=2)
    assert all(table.touch(f"s{i}", PATH, 0.0) for i in range(5))
    assert table.count(0.0) == 5


def test_max_sessions_bounds_memory() -> None:
    table = SessionTable(max_sessions=3)
    assert [table.touch(f"s{i}", PATH, 0.0) for i in range(5)] == [True] * 3 + [False] * 2


def test_150_viewers_at_once(signer: SessionSigner) -> None:
    table = SessionTable()
    infos = [info_for(signer) for _ in range(150)] + [info_for(signer, path="live/b")
                                                      for _ in range(7)]
    for info in infos:
        assert table.admit(info, 1000.0, nbytes=100)
    for info in infos:  # each viewer fetches more segments: still 150 + 7 viewers
        assert table.admit(info, 1002.0, nbytes=1000)
    assert table.count(1002.0) == 157
    assert table.count_by_path(1002.0) == {PATH: 150, "live/b": 7}
    assert table.bytes_served == 157 * 1100
    assert table.bytes_by_path() == {PATH: 150 * 1100, "live/b": 7 * 1100}
    assert table.count(1031.9) == 157
    assert table.count(1032.0) == 0
    assert table.count_by_path(1032.0) == {}
    assert (table.sessions_opened, table.sessions_closed) == (157, 157)


def test_add_bytes() -> None:
    table = SessionTable()
    table.touch("a", PATH, 0.0)
    table.add_bytes("a", 500)
    table.add_bytes("unknown", 7)
    assert table.bytes_served == 500


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.sampled_from(["p", "q"]),
                          st.floats(0, 20, allow_nan=False)), max_size=60))
def test_counts_match_a_naive_model(ops: list[tuple[int, str, float]]) -> None:
    table = SessionTable(window=10.0)
    last_seen: dict[str, tuple[str, float]] = {}
    now = 0.0
    for sid_no, path, step in ops:
        now += step
        sid = f"s{sid_no}"
        if sid in last_seen and now - last_seen[sid][1] < 10.0:
            path = last_seen[sid][0]  # an active session keeps its path
        table.touch(sid, path, now)
        last_seen[sid] = (path, now)
        active = {s: p for s, (p, seen) in last_seen.items() if now - seen < 10.0}
        assert table.count(now) == len(active)
        expected: dict[str, int] = {}
        for p in active.values():
            expected[p] = expected.get(p, 0) + 1
        assert table.count_by_path(now) == expected
        assert table.sessions_opened - table.sessions_closed == len(active)


def test_touch_active_is_only_for_active_sessions_of_the_same_path() -> None:
    table = SessionTable(window=10.0)
    assert not table.touch_active("a", PATH, 0.0)  # unknown: the caller must check the MAC
    table.touch("a", PATH, 0.0)
    assert table.touch_active("a", PATH, 5.0)
    assert not table.touch_active("a", "live/other", 6.0)  # another stream: full check
    assert table.touch_active("a", PATH, 14.9)  # 5.0 + window > 14.9: still active
    assert not table.touch_active("a", PATH, 25.0)  # silent for a whole window
    assert table.count(25.0) == 0


TOKEN_A = token_key("jti-a", "alice")
TOKEN_B = token_key("jti-b", "bob")


def test_per_token_cap_counts_only_active_sessions_of_that_token() -> None:
    table = SessionTable(window=30.0, per_token=3)
    assert [table.touch(f"a{i}", PATH, 0.0, token=TOKEN_A) for i in range(5)] == [
        True, True, True, False, False
    ]
    assert (table.sessions_refused, table.refused_per_token) == (2, 2)
    assert table.token_sessions(TOKEN_A, 0.0) == 3 and table.token_full(TOKEN_A, 0.0)
    # Another token, and sids minted without a token, are not held back.
    assert table.touch("b0", PATH, 0.0, token=TOKEN_B)
    assert all(table.touch(f"n{i}", PATH, 0.0) for i in range(10))
    assert table.token_sessions(TOKEN_B, 0.0) == 1 and not table.token_full(TOKEN_B, 0.0)
    assert table.token_sessions(NO_TOKEN, 0.0) == 0 and not table.token_full(NO_TOKEN, 0.0)
    assert table.count(0.0) == 3 + 1 + 10
    # The active sessions go on; a1 and a2 go quiet, a0 keeps playing.
    assert table.touch("a0", PATH, 20.0, token=TOKEN_A)
    assert not table.touch("a3", PATH, 29.9, token=TOKEN_A)
    assert table.token_sessions(TOKEN_A, 30.0) == 1
    assert table.touch("a3", PATH, 30.0, token=TOKEN_A)
    assert table.touch("a4", PATH, 30.0, token=TOKEN_A)
    assert not table.touch("a5", PATH, 30.0, token=TOKEN_A)
    assert table.token_sessions(TOKEN_A, 30.0) == 3
    assert table.token_sessions(TOKEN_A, 80.0) == 0
    assert table.refused_per_token == 4


def test_admit_counts_the_token_carried_by_the_sid(signer: SessionSigner) -> None:
    table = SessionTable(window=30.0, per_token=2)
    infos = [signer.check(signer.mint(PATH, EXP, "alice", token=TOKEN_A), PATH)
             for _ in range(3)]
    assert [table.admit(info, 1000.0) for info in infos if info] == [True, True, False]
    assert table.token_sessions(TOKEN_A, 1000.0) == 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 2),
                          st.floats(0, 20, allow_nan=False)), max_size=60))
def test_per_token_counts_match_a_naive_model(ops: list[tuple[int, int, float]]) -> None:
    tokens = [TOKEN_A, TOKEN_B, NO_TOKEN]
    table = SessionTable(window=10.0, per_token=2)
    seen: dict[str, tuple[bytes, float]] = {}
    now = 0.0
    for sid_no, token_no, step in ops:
        now += step
        sid = f"s{sid_no}"
        active = {s: t for s, (t, at) in seen.items() if now - at < 10.0}
        token = active.get(sid, tokens[token_no])
        held = sum(1 for t in active.values() if t == token)
        allowed = sid in active or token == NO_TOKEN or held < 2
        assert table.touch(sid, PATH, now, token=token) == allowed
        if allowed:
            seen[sid] = (token, now)
        for key in (TOKEN_A, TOKEN_B):
            expected = sum(1 for s, (t, at) in seen.items() if t == key and now - at < 10.0)
            assert table.token_sessions(key, now) == expected
