"""API keys and roles: admin ⊃ reviewer ⊃ scanner.

scanner  read-only: scan uploads, look hashes up, list and read banks
reviewer + decide review items (confirm, dismiss, appeal)
admin    + create, change, delete and import banks; manage API keys

A key is sent as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.
"""

from __future__ import annotations

from typing import Callable

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from consentry.api.errors import ApiError
from consentry.api.state import store
from consentry.store.api_keys import Principal, role_allows

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key in X-API-Key")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def require(role: str) -> Callable[..., Principal]:
    """A dependency that admits keys with at least ``role`` and returns who is calling."""

    def authenticate(request: Request, bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
                     header: str | None = Security(_header)) -> Principal:  # fmt: skip
        secret = bearer.credentials if bearer else header
        if not secret:
            raise ApiError(401, "no API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'", headers=_CHALLENGE)
        principal = store(request).api_keys.authenticate(secret)
        if principal is None:
            raise ApiError(401, "unknown or revoked API key", headers=_CHALLENGE)
        if not role_allows(principal.role, role):
            raise ApiError(403, f"this needs the {role} role; key {principal.name!r} has the {principal.role} role")
        return principal

    return authenticate


scanner = Depends(require("scanner"))
reviewer = Depends(require("reviewer"))
admin = Depends(require("admin"))
