"""The HTTP service: ``create_app`` builds it; ``consentry serve`` runs it under uvicorn.

Every route is a thin call into the library (consentry.banks, consentry.store); this package
only adds HTTP concerns: keys and roles (auth.py), one error shape (errors.py), body size
limits (limits.py), uploads streamed to disk (uploads.py).
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from fastapi import FastAPI

from consentry import __version__
from consentry.api.errors import install_error_handlers
from consentry.api.limits import BodyLimitMiddleware
from consentry.api.routes import banks, health, keys, lookup, review, scan
from consentry.api.state import ApiSettings, StorePool

MiB = 1024 * 1024
DEFAULT_MAX_UPLOAD = 4096 * MiB  # full checkpoints run to several GiB
DEFAULT_MAX_IMPORT = 1024 * MiB  # ~10M CSV rows
DEFAULT_MAX_JSON = 1 * MiB
DEFAULT_MAX_BATCH = 1000


def create_app(db_target: str | os.PathLike[str], *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
               keep_uploads_dir: str | os.PathLike[str] | None = None, max_import_bytes: int = DEFAULT_MAX_IMPORT,
               max_json_bytes: int = DEFAULT_MAX_JSON, max_batch: int = DEFAULT_MAX_BATCH) -> FastAPI:  # fmt: skip
    """Build the service over the store at ``db_target`` (a path or a postgresql:// URL)."""
    keep = Path(keep_uploads_dir) if keep_uploads_dir is not None else None
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    config = ApiSettings(db_target=db_target, max_upload_bytes=max_upload_bytes, max_import_bytes=max_import_bytes,
                         max_json_bytes=max_json_bytes, max_batch=max_batch, keep_uploads_dir=keep)  # fmt: skip
    stores = StorePool(db_target)
    stores.get()  # open (and migrate) once now, so a bad --db fails at start, not on a request

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        stores.close_all()

    app = FastAPI(
        title="consentry",
        version=__version__,
        description="Find AI models built to reproduce real people without consent: scan uploads, look hashes "
        "up in shared banks, and review every match. Authenticate with `Authorization: Bearer <key>` or `X-API-Key`.",
        lifespan=lifespan,
    )
    app.state.settings = config
    app.state.stores = stores
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, limit_for=_limits(config))
    for module in (health, scan, lookup, banks, review, keys):
        app.include_router(module.router)
    return app


def _limits(config: ApiSettings):
    def limit_for(path: str) -> int:
        if path == "/v1/scan":
            return config.max_upload_bytes
        if path.startswith("/v1/banks/") and path.endswith("/import"):
            return config.max_import_bytes
        return config.max_json_bytes

    return limit_for
