"""POST /v1/scan: check one uploaded model file against every enabled bank."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from consentry.api.auth import scanner
from consentry.api.errors import responses
from consentry.api.models import ScanOut
from consentry.api.state import settings, store
from consentry.api.uploads import RAW_BODY, body_to_file
from consentry.banks.matching import match_identity, queue_matches
from consentry.identity.identify import identify, identify_image

router = APIRouter(tags=["scan"])


@router.post("/v1/scan", response_model=ScanOut, dependencies=[scanner], responses=responses(401, 403, 413, 422),
             openapi_extra={"requestBody": RAW_BODY})  # fmt: skip
async def scan_upload(request: Request, filename: str | None = Query(None, max_length=255, description="the upload's name, for the report")) -> Any:
    """Scan the request body (the model file's bytes): `match`, `no match` or `quarantine`.

    Matches are queued for review (source `api`). The upload is deleted once scanned unless
    the server keeps uploads."""
    config = settings(request)
    path = await body_to_file(request, config.keep_uploads_dir, "consentry-upload-")
    try:
        result = await run_in_threadpool(_scan, request, path, _display_name(filename))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    _keep_or_delete(path, result, config.keep_uploads_dir)
    return result


def _scan(request: Request, path: Path, name: str) -> dict[str, Any]:
    identity = identify_image(path) or identify(path)  # an image (PDQ banks) or a model file
    db = store(request)
    result = match_identity(db, identity)  # on the upload itself: similarity signals read its bytes
    # Report (and record in the review queue) the client's name, never the server's temp path.
    # The name is renamed in only now: it must never be opened (it could name a server file).
    identity.path = result.path = name
    if identity.problem:
        identity.problem = identity.problem.replace(str(path), name)
    result.notes = [note.replace(str(path), name) for note in result.notes]
    queue_matches(db, result, source="api")
    return result.as_json()


def _display_name(filename: str | None) -> str:
    name = os.path.basename((filename or "").replace("\\", "/")).strip()
    return name or "upload"


def _keep_or_delete(path: Path, result: dict[str, Any], keep_dir: Path | None) -> None:
    """Kept uploads are named by their SHA-256: no client-chosen name ever reaches the disk."""
    if keep_dir is None:
        path.unlink(missing_ok=True)
        return
    sha256 = result["hashes"].get("sha256")
    if sha256:
        os.replace(path, keep_dir / sha256)
