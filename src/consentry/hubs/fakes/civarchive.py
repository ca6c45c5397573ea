"""A local fake of the archive site's lookup (CivArchive, ``hub-interfaces.md`` §1.7).

``GET /api/sha256/{sha256}`` answers ``{"data": {model context…, "version": {…, "files": [{
"sha256", "is_primary", "model_id", "model_version_id", "mirrors": [{"url", "filename",
"deletedAt"}]}]}}}``, 404 ``{"error": "Model not found"}`` otherwise; ``GET /api/models/{id}``
the same object by model id. Mirror URLs may name ``{hf}``, replaced by the Hugging Face
endpoint the fake is told, so an archive entry can point at the fake Hub.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from consentry.hubs.fakes.serving import FakeServer


@dataclass
class ArchivedFile:
    sha256: str
    name: str
    size_kb: float
    mirrors: list[dict[str, Any]] = field(default_factory=list)  # {"url", "filename", "deletedAt"}


@dataclass
class ArchivedModel:
    model_id: int
    version_id: int
    name: str
    type: str
    trigger: list[str]
    creator: str
    deleted_at: str | None
    files: list[ArchivedFile] = field(default_factory=list)
    nsfw_level: int = 1


def _payload(model: ArchivedModel, hf: str) -> dict[str, Any]:
    files = [{
        "id": 9_000_000 + i, "name": f.name, "sizeKB": f.size_kb, "type": "Model", "sha256": f.sha256.lower(),
        "is_primary": False,  # CivArchive says false even for the primary file (ComfyUI-Lora-Manager notes it)
        "model_id": model.model_id, "model_version_id": model.version_id,
        "mirrors": [{**m, "url": m["url"].replace("{hf}", hf)} for m in f.mirrors],
    } for i, f in enumerate(model.files)]  # fmt: skip
    version = {"id": model.version_id, "modelId": model.model_id, "name": "v1.0", "trigger": model.trigger,
               "files": files, "images": [], "deletedAt": model.deleted_at, "downloadCount": 0, "ratingCount": 0,
               "rating": 0}  # fmt: skip
    return {"data": {
        "id": model.model_id, "name": model.name, "type": model.type, "description": None, "tags": [],
        "is_nsfw": model.nsfw_level > 3, "nsfw_level": model.nsfw_level, "creator_username": model.creator,
        "creator_image": None, "deletedAt": model.deleted_at,
        "versions": [{"id": model.version_id, "modelId": model.model_id, "name": "v1.0"}], "version": version,
    }}  # fmt: skip


def create_fake_civarchive(models: list[ArchivedModel], *, hf_endpoint: str = "https://huggingface.co") -> Starlette:
    by_hash = {f.sha256.lower(): m for m in models for f in m.files}
    by_id = {m.model_id: m for m in models}
    hf = hf_endpoint.rstrip("/")

    async def sha256(request: Request) -> JSONResponse:
        model = by_hash.get(request.path_params["sha"].lower())
        if model is None:
            return JSONResponse({"error": "Model not found"}, status_code=404)
        return JSONResponse(_payload(model, hf))

    async def model(request: Request) -> JSONResponse:
        raw = request.path_params["id"]
        found = by_id.get(int(raw)) if raw.isdigit() else None
        if found is None:
            return JSONResponse({"error": "Model not found"}, status_code=404)
        return JSONResponse(_payload(found, hf))

    return Starlette(routes=[Route("/api/sha256/{sha}", sha256), Route("/api/models/{id}", model)])


def fake_civarchive(models: list[ArchivedModel], *, hf_endpoint: str = "https://huggingface.co") -> FakeServer:
    """``with fake_civarchive(models, hf_endpoint=hub.url) as archive:`` — base URL ``archive.url + "/api"``."""
    return FakeServer(create_fake_civarchive(models, hf_endpoint=hf_endpoint))
