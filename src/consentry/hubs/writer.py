"""Commit a crawl's pages in a thread of their own, in order, while the next page is fetched and
mapped: SQLite and psycopg release the GIL while they write, so the two overlap on two cores.

While a :class:`PageWriter` runs, only its thread touches the store. At most ``depth`` pages
wait; when several are waiting, ``commit`` gets them all at once, so a writer that falls behind
pays for one transaction instead of several. ``commit`` writes the pages it is given whole or
not at all (with the checkpoint after the last), so a killed crawl still resumes exactly: what
the writer had not committed yet is simply fetched again. The first failure stops the writer
and is raised in the caller at its next ``put`` or at ``close``.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")
_STOP = object()


class PageWriter(Generic[T]):
    def __init__(self, commit: Callable[[list[T]], None], *, depth: int = 4) -> None:
        self._commit = commit
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="consentry-page-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            pages = [self._queue.get()]
            while True:  # whatever else is already waiting goes into the same transaction
                try:
                    pages.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if pages[-1] is _STOP:
                stopping = True
                pages.pop()
            if pages and self._error is None:
                try:
                    self._commit(pages)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    self._error = exc

    def put(self, page: T) -> None:
        self._raise()
        self._queue.put(page)

    def close(self) -> None:
        """Wait for every page to be committed; raise the writer's failure, if any."""
        self._queue.put(_STOP)
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def __enter__(self) -> "PageWriter[T]":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:  # the caller failed: still let the pages already handed over commit, then re-raise its error
            self._queue.put(_STOP)
            self._thread.join()
