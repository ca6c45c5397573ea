"""Hash lookups: one value (GET) or a batch (POST), each in any hash form or typed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Request

from consentry.api.auth import scanner
from consentry.api.errors import ApiError, responses
from consentry.api.models import HashValue, LookupRequest, LookupResponse, TypedHash
from consentry.api.state import settings, store
from consentry.banks.lookup import lookup

router = APIRouter(tags=["lookup"], dependencies=[scanner])
EXAMPLE_SHA256 = "5B1C3F5E8A2D4B6C9E0F1A2B3C4D5E6F708192A3B4C5D6E7F8091A2B3C4D5E6F7"


@router.get("/v1/lookup/{value}", response_model=LookupResponse, responses=responses(401, 403, 404, 422))
def lookup_one(request: Request, value: HashValue = Path(description="a hash in any form: SHA256, AutoV1/V2/V3, CRC32, BLAKE3, content_hash",
                                                  examples=[EXAMPLE_SHA256, EXAMPLE_SHA256[:10]])) -> Any:
    """Look one hash up in every enabled bank; 422 if it is no hash form consentry knows."""
    [result] = lookup(store(request), [value])
    if result.error:
        raise ApiError(422, result.error)
    return _response([result.as_dict()])


@router.post("/v1/lookup", response_model=LookupResponse, responses=responses(401, 403, 413, 422))
def lookup_batch(request: Request, body: LookupRequest) -> Any:
    """Look up to the server's batch limit of values up at once; a bad value gets its own `error`."""
    limit = settings(request).max_batch
    if len(body.hashes) > limit:
        raise ApiError(422, f"{len(body.hashes)} values in one batch; at most {limit}")
    queries = [(h.signal, h.value) if isinstance(h, TypedHash) else h for h in body.hashes]
    return _response([r.as_dict() for r in lookup(store(request), queries)])


def _response(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"matched": sum(1 for r in results if r["matches"]), "results": results}
