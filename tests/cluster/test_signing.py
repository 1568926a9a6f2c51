from __future__ import annotations

import hashlib
import hmac

import pytest

from airclass.cluster.signing import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReplayCache,
    SignatureError,
    derive_cluster_key,
    sign,
    verify,
)

KEY = "cluster-key-for-tests-0123456789abcdef"
NOW = 1_700_000_000.0
BODY = b'{"node_id": "slave-1", "stats": {"connections": 45, "cpu": 25.5, "memory": 35.2}}'
NONCE = "0123456789abcdef0123456789abcdef"


def headers() -> dict[str, str]:
    return sign(KEY, "POST", "/cluster/stats", BODY, NOW, nonce=NONCE)


def why(hdrs: dict[str, str], *, key: str = KEY, method: str = "POST",
        path: str = "/cluster/stats", body: bytes = BODY, now: float = NOW,
        replay: ReplayCache | None = None) -> str:
    with pytest.raises(SignatureError) as info:
        verify(key, method, path, body, hdrs, now, replay=replay)
    return info.value.reason


def test_exact_headers_and_canonical_string() -> None:
    canonical = "\n".join(["AIRClass-Signature-1", "POST", "/cluster/stats", "1700000000.000",
                           NONCE, hashlib.sha256(BODY).hexdigest()])
    expected = hmac.new(derive_cluster_key(KEY), canonical.encode(), hashlib.sha256).hexdigest()
    assert headers() == {
        TIMESTAMP_HEADER: "1700000000.000",
        NONCE_HEADER: NONCE,
        SIGNATURE_HEADER: expected,
    }


def test_valid_request_passes() -> None:
    verify(KEY, "POST", "/cluster/stats", BODY, headers(), NOW)
    verify(KEY, "post", "/cluster/stats", BODY, headers(), NOW + 30)
    verify(KEY, "POST", "/cluster/stats", BODY, headers(), NOW - 30)
    verify(KEY.encode(), "POST", "/cluster/stats", BODY, headers(), NOW)


def test_header_names_are_case_insensitive() -> None:
    lowered = {k.lower(): v for k, v in headers().items()}
    verify(KEY, "POST", "/cluster/stats", BODY, lowered, NOW)


def test_random_nonces() -> None:
    a = sign(KEY, "POST", "/x", b"", NOW)
    b = sign(KEY, "POST", "/x", b"", NOW)
    assert a[NONCE_HEADER] != b[NONCE_HEADER]
    assert a[SIGNATURE_HEADER] != b[SIGNATURE_HEADER]


@pytest.mark.parametrize("missing", [TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER])
def test_missing_header(missing: str) -> None:
    hdrs = headers()
    del hdrs[missing]
    assert why(hdrs) == "missing signature headers"


@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [
        (TIMESTAMP_HEADER, "", "malformed timestamp"),
        (TIMESTAMP_HEADER, "soon", "malformed timestamp"),
        (TIMESTAMP_HEADER, "-1700000000", "malformed timestamp"),
        (TIMESTAMP_HEADER, "1e9", "malformed timestamp"),
        (TIMESTAMP_HEADER, "nan", "malformed timestamp"),
        (TIMESTAMP_HEADER, "١٧٠٠٠٠٠٠٠٠", "malformed timestamp"),
        (NONCE_HEADER, "short", "malformed nonce"),
        (NONCE_HEADER, NONCE.upper(), "malformed nonce"),
        (SIGNATURE_HEADER, "zz", "malformed signature"),
        (SIGNATURE_HEADER, "A" * 64, "malformed signature"),
    ],
)
def test_malformed_header(header: str, value: str, reason: str) -> None:
    hdrs = headers()
    hdrs[header] = value
    assert why(hdrs) == reason


def test_stale_and_future_timestamps() -> None:
    assert why(headers(), now=NOW + 30.001) == "stale timestamp"
    assert why(headers(), now=NOW - 30.001) == "timestamp in the future"


@pytest.mark.parametrize(
    "change",
    [
        {"key": "another-cluster-key-0123456789abcdef"},
        {"method": "DELETE"},
        {"path": "/cluster/register"},
        {"path": "/cluster/stats?x=1"},
        {"body": BODY.replace(b"45", b"46")},
        {"body": b""},
    ],
)
def test_bad_signature(change: dict[str, object]) -> None:
    assert why(headers(), **change) == "bad signature"  # type: ignore[arg-type]


def test_timestamp_is_signed() -> None:
    hdrs = headers()
    hdrs[TIMESTAMP_HEADER] = "1700000001.000"
    assert why(hdrs) == "bad signature"


def test_nonce_is_signed() -> None:
    hdrs = headers()
    hdrs[NONCE_HEADER] = "f" * 32
    assert why(hdrs) == "bad signature"


def test_replay_refused_within_window() -> None:
    cache = ReplayCache(window=30.0)
    verify(KEY, "POST", "/cluster/stats", BODY, headers(), NOW, replay=cache)
    assert why(headers(), now=NOW + 1, replay=cache) == "replayed request"
    assert why(headers(), now=NOW + 30, replay=cache) == "replayed request"
    # Past the window the timestamp itself is refused.
    assert why(headers(), now=NOW + 31, replay=cache) == "stale timestamp"
    # A fresh request from the same node goes through.
    fresh = sign(KEY, "POST", "/cluster/stats", BODY, NOW + 5)
    verify(KEY, "POST", "/cluster/stats", BODY, fresh, NOW + 5, replay=cache)


def test_forged_requests_do_not_enter_the_replay_cache() -> None:
    cache = ReplayCache()
    hdrs = headers()
    assert why(hdrs, body=b"forged", replay=cache) == "bad signature"
    assert len(cache) == 0
    verify(KEY, "POST", "/cluster/stats", BODY, hdrs, NOW, replay=cache)
    assert len(cache) == 1


def test_replay_cache_keeps_nonces_for_two_windows_then_forgets() -> None:
    cache = ReplayCache(window=30.0)
    assert cache.add("a" * 32, 0.0)
    assert not cache.add("a" * 32, 59.9)
    assert cache.add("b" * 32, 60.0)  # prunes "a"
    assert len(cache) == 1
    assert cache.add("a" * 32, 60.0)


def test_replay_cache_is_bounded() -> None:
    cache = ReplayCache(window=30.0, max_entries=3)
    for i in range(5):
        assert cache.add(f"{i:032x}", 0.0)
    assert len(cache) == 3
    assert cache.evicted == 2
    assert not cache.add(f"{4:032x}", 1.0)
    assert cache.add(f"{0:032x}", 1.0)  # evicted: forgotten


def test_sign_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        sign(KEY, "POST", "/", b"", float("nan"))
    with pytest.raises(ValueError):
        sign(KEY, "POST", "/", b"", NOW, nonce="xyz")
    with pytest.raises(ValueError):
        sign("", "POST", "/", b"", NOW)


# Replies


def _reply_case() -> tuple[str, dict[str, str], bytes]:
    nonce = "0123456789abcdef0123456789abcdef"
    headers = {"Content-Type": "video/mp2t", "X-AIRClass-Sequence": "7",
               "X-AIRClass-Ended": "0", "Access-Control-Allow-Origin": "*"}
    return nonce, headers, b"\x47" * 188


def test_a_signed_reply_verifies_for_its_request_only() -> None:
    from airclass.cluster.signing import REPLY_SIGNATURE_HEADER, sign_reply, verify_reply

    nonce, headers, body = _reply_case()
    headers[REPLY_SIGNATURE_HEADER] = sign_reply("k" * 32, nonce, 200, headers, body)
    verify_reply("k" * 32, nonce, 200, headers, body)
    lowered = {name.lower(): value for name, value in headers.items()}
    verify_reply("k" * 32, nonce, 200, lowered, body)  # any case
    # Headers that are not the relay's metadata may change on the way (CORS, proxies).
    verify_reply("k" * 32, nonce, 200, {**headers, "Access-Control-Allow-Origin": "x"}, body)
    tampered: list[tuple[str, int, dict[str, str], bytes, str]] = [
        ("f" * 32, 200, headers, body, "bad reply signature"),  # a reply to another request
        (nonce, 204, headers, body, "bad reply signature"),
        (nonce, 200, {**headers, "X-AIRClass-Sequence": "8"}, body, "bad reply signature"),
        (nonce, 200, {**headers, "X-AIRClass-Newest": "9"}, body, "bad reply signature"),
        (nonce, 200, headers, body + b"\0", "bad reply signature"),
        (nonce, 200, {k: v for k, v in headers.items() if k != REPLY_SIGNATURE_HEADER}, body,
         "unsigned reply"),
        (nonce, 200, {**headers, REPLY_SIGNATURE_HEADER: "zz"}, body,
         "malformed reply signature"),
    ]
    for n, status, h, b, reason in tampered:
        with pytest.raises(SignatureError) as info:
            verify_reply("k" * 32, n, status, h, b)
        assert info.value.reason == reason
    with pytest.raises(SignatureError):
        verify_reply("other-key" * 4, nonce, 200, headers, body)


def test_reply_signature_is_exact() -> None:
    """The canonical string, spelled out: a change to it is a change to the wire."""
    import hashlib
    import hmac as hmac_

    from airclass.cluster.signing import derive_cluster_key, sign_reply

    nonce, headers, body = _reply_case()
    canonical = "\n".join([
        "AIRClass-Reply-1", nonce, "200", "x-airclass-ended:0", "x-airclass-sequence:7",
        hashlib.sha256(body).hexdigest(),
    ])
    expected = hmac_.new(derive_cluster_key("k" * 32), canonical.encode(),
                         hashlib.sha256).hexdigest()
    assert sign_reply("k" * 32, nonce, 200, headers, body) == expected
