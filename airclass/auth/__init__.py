"""Tokens, the one authorization entry point, and viewer sessions."""

from airclass.auth.authorize import authorize, extract_token, verify_and_authorize
from airclass.auth.errors import AuthError
from airclass.auth.sessions import SessionInfo, SessionSigner, SessionTable
from airclass.auth.tokens import Action, Claims, IssuedToken, TokenIssuer, UserType

__all__ = [
    "Action",
    "AuthError",
    "Claims",
    "IssuedToken",
    "SessionInfo",
    "SessionSigner",
    "SessionTable",
    "TokenIssuer",
    "UserType",
    "authorize",
    "extract_token",
    "verify_and_authorize",
]
