"""The one error type of the auth layer, turned into a JSON 401/403 at the HTTP edge."""

from __future__ import annotations


class AuthError(Exception):
    """A request is refused.

    `status` is 401 when the caller did not prove who it is (missing, malformed, expired or
    forged token) and 403 when it did but may not do this. `reason` is short and safe to send
    to the client: it never contains the token.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    def __repr__(self) -> str:
        return f"AuthError({self.status}, {self.reason!r})"


def unauthorized(reason: str) -> AuthError:
    """401: the caller's credentials are missing or not valid."""
    return AuthError(401, reason)


def forbidden(reason: str) -> AuthError:
    """403: the credentials are valid but do not allow this request."""
    return AuthError(403, reason)
