"""What the service shares between requests: its settings and one Store per worker thread.

FastAPI runs sync endpoints in a thread pool, and a database connection belongs to one thread
(:class:`~consentry.store.database.Database`), so each thread opens its own Store on first use
and keeps it; SQLite's WAL mode lets them read while one writes.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from consentry.store import Store


@dataclass(frozen=True)
class ApiSettings:
    db_target: str | os.PathLike[str]
    max_upload_bytes: int  # one model upload to /v1/scan
    max_import_bytes: int  # one bank file to /v1/banks/{name}/import
    max_json_bytes: int  # every other request body
    max_batch: int  # values in one batch lookup
    keep_uploads_dir: Path | None  # None: uploads are deleted once scanned


class StorePool:
    """One Store per thread, opened on first use, all closed at shutdown."""

    def __init__(self, target: str | os.PathLike[str]) -> None:
        self.target = target
        self._local = threading.local()
        self._opened: list[Store] = []
        self._lock = threading.Lock()

    def get(self) -> Store:
        store = getattr(self._local, "store", None)
        if store is None:
            store = Store.open(self.target)
            self._local.store = store
            with self._lock:
                self._opened.append(store)
        return store

    def close_all(self) -> None:
        with self._lock:
            stores, self._opened = self._opened, []
        for store in stores:
            store.close()


def settings(request: Request) -> ApiSettings:
    return request.app.state.settings


def store(request: Request) -> Store:
    """This thread's Store. Call it from sync code (a thread-pool thread), never from async code."""
    return request.app.state.stores.get()
