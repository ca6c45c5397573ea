"""API keys for the HTTP service: a name, a role, and only the SHA-256 of the secret.

The secret is shown once, when created, and never stored: a leaked database does not leak
working keys. Secrets carry 256 random bits, so a plain (unsalted) SHA-256 is enough — this is
not a password — and looking a key up by its hash leaks nothing an attacker can steer.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, NamedTuple

from consentry.errors import ConsentryError
from consentry.store.database import Database, integrity_errors
from consentry.store.records import utc_now

# Each role can do everything the roles before it can.
ROLES: tuple[str, ...] = ("scanner", "reviewer", "admin")
KEY_PREFIX = "cns_"  # makes a leaked key recognisable to secret scanners
_MAX_NAME = 100


class ApiKeyError(ConsentryError):
    exit_code = 2


class ApiKeyNotFound(ApiKeyError, KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no API key named {name!r}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class ApiKeyExists(ApiKeyError):
    pass


class ApiKeyRevoked(ApiKeyError):
    pass


class Principal(NamedTuple):
    """Who a request acts as: the key's name (recorded as the actor) and its role."""

    name: str
    role: str


@dataclass(frozen=True)
class ApiKey:
    name: str
    role: str
    created_at: str
    revoked_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "created_at": self.created_at, "revoked_at": self.revoked_at}


def role_allows(role: str, needed: str) -> bool:
    """True when ``role`` includes ``needed`` (admin ⊃ reviewer ⊃ scanner)."""
    return ROLES.index(role) >= ROLES.index(needed)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class ApiKeyRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, name: str, role: str) -> str:
        """Create a key and return its secret: the only time it can be seen."""
        name = name.strip()
        if not name or len(name) > _MAX_NAME or not name.isprintable():
            raise ApiKeyError(f"an API key name must be 1-{_MAX_NAME} printable characters")
        if role not in ROLES:
            raise ApiKeyError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        try:
            with self.db.transaction():
                self.db.insert(
                    "INSERT INTO api_keys (name, key_hash, role, created_at) VALUES (?, ?, ?, ?)",
                    (name, hash_secret(secret), role, utc_now()),
                )
        except integrity_errors():
            raise ApiKeyExists(f"an API key named {name!r} already exists (names stay taken after revocation)") from None
        return secret

    def authenticate(self, secret: str) -> Principal | None:
        """The key's (name, role), or None for an unknown or revoked secret."""
        row = self.db.query_one(
            "SELECT name, role FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL", (hash_secret(secret),)
        )
        return Principal(row["name"], row["role"]) if row else None

    def get(self, name: str) -> ApiKey:
        row = self.db.query_one("SELECT name, role, created_at, revoked_at FROM api_keys WHERE name = ?", (name,))
        if row is None:
            raise ApiKeyNotFound(name)
        return ApiKey(row["name"], row["role"], row["created_at"], row["revoked_at"])

    def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        sql = "SELECT name, role, created_at, revoked_at FROM api_keys"
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        return [ApiKey(r["name"], r["role"], r["created_at"], r["revoked_at"]) for r in self.db.query(sql + " ORDER BY name")]

    def revoke(self, name: str) -> ApiKey:
        """Revoke a key at once; it stays listed (with when) for the audit trail."""
        with self.db.transaction():
            key = self.get(name)
            if key.revoked_at:
                raise ApiKeyRevoked(f"API key {name!r} was already revoked at {key.revoked_at}")
            self.db.execute("UPDATE api_keys SET revoked_at = ? WHERE name = ?", (utc_now(), name))
        return self.get(name)
