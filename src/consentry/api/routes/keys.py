"""API key management (admin): list, create (the secret is returned once), revoke."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request

from consentry.api.auth import admin, require
from consentry.api.errors import ApiError, responses
from consentry.api.models import KeyCreated, KeyIn, KeyOut
from consentry.api.state import store
from consentry.store.api_keys import Principal

router = APIRouter(tags=["keys"])


@router.get("/v1/keys", response_model=list[KeyOut], dependencies=[admin], responses=responses(401, 403))
def list_keys(request: Request) -> Any:
    """Every key, revoked ones included (with when)."""
    return [k.as_dict() for k in store(request).api_keys.list()]


@router.post("/v1/keys", response_model=KeyCreated, status_code=201, dependencies=[admin],
             responses=responses(401, 403, 409, 413, 422))  # fmt: skip
def create_key(request: Request, body: KeyIn) -> Any:
    """Create a key; its secret is in this response and nowhere else."""
    secret = store(request).api_keys.create(body.name, body.role)
    return {"name": body.name.strip(), "role": body.role, "secret": secret}


@router.delete("/v1/keys/{name}", response_model=KeyOut, responses=responses(401, 403, 404, 409, 422))
def revoke_key(request: Request, name: str = Path(max_length=100), who: Principal = Depends(require("admin"))) -> Any:
    """Revoke a key at once. A key cannot revoke itself (that would lock its holder out)."""
    if name == who.name:
        raise ApiError(409, "a key cannot revoke itself: use another admin key or `consentry apikey revoke`")
    return store(request).api_keys.revoke(name).as_dict()
