"""TLS contexts for a node: HTTPS (and RTMPS) served with the node's certificate, and the
trust used for the node's own calls to the master and to relay origins.

A school usually runs its own certificate authority (or one self-signed set-up, docs/tls.md)
that the operating system does not know: `--tls-ca` adds it to the system's store for the
node's outgoing calls instead of turning verification off, so a machine on the school network
that answers on a node's address still cannot pose as the master.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

log = logging.getLogger(__name__)

MIN_VERSION = ssl.TLSVersion.TLSv1_2
"""Oldest protocol accepted either way: every browser, tablet, OBS and ffmpeg of the last
decade speaks 1.2; older versions have known attacks."""


class TlsError(ValueError):
    """A certificate, key or CA file that cannot be loaded."""


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """The context the node serves HTTPS and RTMPS with."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = MIN_VERSION
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot load the TLS certificate {cert} with key {key}: {exc}") from exc
    return context


def client_context(ca: str = "") -> ssl.SSLContext:
    """The context for the node's own calls: the system's trusted roots, plus `ca` if given;
    certificates and host names are always checked."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = MIN_VERSION
    if ca:
        try:
            context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"cannot load the CA bundle {ca}: {exc}") from exc
    return context


def is_tls(transport: asyncio.BaseTransport) -> bool:
    """Whether `transport` encrypts what it is given. Such a transport (asyncio's and uvloop's
    alike) still answers `get_extra_info("socket")` with the TCP socket underneath, so code that
    writes to the socket itself (sendfile, send with MSG_MORE) must ask this first: bytes
    written there would bypass the encryption and break the stream."""
    return (
        transport.get_extra_info("sslcontext") is not None
        or transport.get_extra_info("ssl_object") is not None
    )


__all__ = ["MIN_VERSION", "TlsError", "client_context", "is_tls", "server_context"]
