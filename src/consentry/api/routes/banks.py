"""Banks: list and read (scanner); create, change, delete, add entries, import (admin); export."""

from __future__ import annotations

import io
import tempfile
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from consentry.api.auth import admin, require, scanner
from consentry.api.errors import responses
from consentry.api.models import BankIn, BankOut, BankPatch, Deleted, EntriesPage, EntryAdded, EntryIn, ImportOut
from consentry.api.state import store
from consentry.api.uploads import RAW_BODY, body_to_file
from consentry.banks.entries import normalise_signals
from consentry.store.api_keys import Principal
from consentry.store.banks import BankEntry

router = APIRouter(tags=["banks"])
NameParam = Path(max_length=200, description="the bank's name", examples=["civitai-deleted"])
EXPORT_CHUNK = 256 * 1024


@router.get("/v1/banks", response_model=list[BankOut], dependencies=[scanner], responses=responses(401, 403))
def list_banks(request: Request) -> Any:
    """Every bank with its entry count."""
    return [b.as_dict() for b in store(request).banks.list()]


@router.post("/v1/banks", response_model=BankOut, status_code=201, dependencies=[admin],
             responses=responses(401, 403, 409, 413, 422))  # fmt: skip
def create_bank(request: Request, body: BankIn) -> Any:
    """Create a positive bank (models to flag) or a negative one (known-good, never flagged)."""
    bank = store(request).banks.create(**body.model_dump())
    bank.entry_count = 0  # what GET answers for it, not null
    return bank.as_dict()


@router.get("/v1/banks/{name}", response_model=BankOut, dependencies=[scanner], responses=responses(401, 403, 404, 422))
def get_bank(request: Request, name: str = NameParam) -> Any:
    """One bank's settings and entry count."""
    return _with_count(request, name)


@router.patch("/v1/banks/{name}", response_model=BankOut, dependencies=[admin], responses=responses(401, 403, 404, 413, 422))
def update_bank(request: Request, body: BankPatch, name: str = NameParam) -> Any:
    """Change labels, description, source, thresholds, or enable/disable the bank."""
    store(request).banks.update(name, **body.model_dump(exclude_unset=True))
    return _with_count(request, name)


@router.delete("/v1/banks/{name}", response_model=Deleted, dependencies=[admin], responses=responses(401, 403, 404, 422))
def delete_bank(request: Request, name: str = NameParam) -> Any:
    """Delete a bank and every entry in it."""
    store(request).banks.delete(name)
    return {"ok": True, "deleted": name}


@router.get("/v1/banks/{name}/entries", response_model=EntriesPage, dependencies=[scanner], responses=responses(401, 403, 404, 422))
def list_entries(request: Request, name: str = NameParam, limit: int = Query(100, ge=1, le=1000),
                 offset: int = Query(0, ge=0, le=2**62)) -> Any:  # fmt: skip
    """A page of the bank's entries, oldest first."""
    banks = store(request).banks
    entries = banks.entries(banks.get(name), limit=limit, offset=offset)
    return {"bank": name, "limit": limit, "offset": offset, "entries": [e.as_dict() for e in entries]}


@router.post("/v1/banks/{name}/entries", response_model=EntryAdded, responses=responses(401, 403, 404, 413, 422))
def add_entry(request: Request, body: EntryIn, name: str = NameParam, who: Principal = Depends(require("admin"))) -> Any:
    """Add one model by typed signals (`{"sha256": "..."}`); `added` is false if already banked."""
    banks = store(request).banks
    bank = banks.get(name)
    entry = BankEntry(id=None, bank_name=bank.name, signals=normalise_signals(body.signals), name=body.name, url=body.url,
                      labels=body.labels, note=body.note, provenance={"added_from": "api", "actor": who.name})  # fmt: skip
    entry_id = banks.add_entry(bank, entry)
    stored = banks.entry(entry_id) if entry_id is not None else None  # as stored: with its added_at
    return {"added": entry_id is not None, "entry_id": entry_id, "entry": (stored or entry).as_dict()}


@router.post("/v1/banks/{name}/import", response_model=ImportOut, responses=responses(401, 403, 404, 413, 422),
             openapi_extra={"requestBody": RAW_BODY})  # fmt: skip
async def import_bank(request: Request, name: str = NameParam, format: Literal["csv", "json", "jsonl"] | None = Query(None),
                      source_name: str | None = Query(None, max_length=255), create: bool = Query(False),
                      strict: bool = Query(False), who: Principal = Depends(require("admin"))) -> Any:  # fmt: skip
    """Import a CSV/JSON/JSON Lines list or a consentry exchange file (the request body) into the
    bank: one transaction; the report lists rows added, duplicates and rejected rows with reasons."""
    from consentry.banks.importing import import_rows

    path = await body_to_file(request, None, "consentry-import-")
    try:
        report = await run_in_threadpool(
            lambda: import_rows(store(request), name, path, fmt=format, actor=who.name,
                                source_name=source_name or "upload", create=create, strict=strict)  # fmt: skip
        )
    finally:
        path.unlink(missing_ok=True)
    return report.as_dict()


@router.get("/v1/banks/{name}/export", dependencies=[scanner], responses={
    **responses(401, 403, 404, 422), 200: {"description": "the bank in consentry's exchange format (JSON Lines)",
                                          "content": {"application/x-ndjson": {}}}})  # fmt: skip
async def export_bank(request: Request, name: str = NameParam) -> StreamingResponse:
    """The whole bank in consentry's exchange format, which another consentry imports losslessly.

    Written to a spooled temporary file first, so a missing bank is a clean 404 rather than a
    stream that breaks half-way, and memory stays bounded however large the bank."""
    from consentry.banks.exchange import export_bank as export

    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
    text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
    try:
        await run_in_threadpool(lambda: export(store(request), name, text))
    except BaseException:
        text.close()
        raise
    text.flush()
    text.detach()
    spool.seek(0)

    def chunks():
        with spool:
            while chunk := spool.read(EXPORT_CHUNK):
                yield chunk

    headers = {"Content-Disposition": f'attachment; filename="{_safe_filename(name)}.jsonl"'}
    return StreamingResponse(chunks(), media_type="application/x-ndjson", headers=headers)


def _with_count(request: Request, name: str) -> dict[str, Any]:
    banks = store(request).banks
    bank = banks.get(name)
    bank.entry_count = next((b.entry_count for b in banks.list() if b.name == bank.name), 0)
    return bank.as_dict()


def _safe_filename(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "bank"
