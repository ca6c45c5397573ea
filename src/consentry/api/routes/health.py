"""GET /health: liveness for load balancers and monitors (no key needed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from consentry import __version__
from consentry.api.errors import responses
from consentry.api.models import Health
from consentry.api.state import store

router = APIRouter(tags=["service"])


@router.get("/health", response_model=Health, responses=responses(503))
def health(request: Request) -> Any:
    """Answers 200 when the service and its database answer; 503 (error shape) otherwise."""
    store(request).db.query_one("SELECT 1 AS ok")
    return {"ok": True, "version": __version__, "store": "ok"}
