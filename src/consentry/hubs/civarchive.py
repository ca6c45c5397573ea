"""The archive site's lookup (CivArchive): where copies of a model deleted from Civitai live now.

``GET {base}/sha256/{sha256 lower-case}`` answers the archived model, its version and files,
each file with ``mirrors[]`` (``url``, ``filename``, ``deletedAt``): the re-hosted copies
(``shared/reference/hub-interfaces.md`` §1.7, a third-party-derived shape: fields are read
tolerantly, and the response may or may not be wrapped under ``data``). A 404 means the archive
does not know the hash. It is a further source for ``consentry mirrors``, never the only one.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable

import httpx

from consentry import jsonio
from consentry.hubs.base import USER_AGENT, HubError
from consentry.hubs.retry import RETRY_STATUS, RetryPolicy, Transient, retry_after_seconds, transport_failure

DEFAULT_URL = "https://civarchive.com/api"


@dataclass(frozen=True)
class ArchiveMirror:
    url: str
    filename: str | None
    deleted_at: str | None  # the copy is known to be gone since then

    @property
    def live(self) -> bool:
        return self.deleted_at is None


@dataclass
class ArchiveRecord:
    """What the archive knows of one SHA-256."""

    sha256: str  # upper-case, as the rest of consentry stores hashes
    model_id: str | None
    version_id: str | None
    name: str | None
    deleted_at: str | None
    mirrors: list[ArchiveMirror] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


class CivArchiveClient:
    """``lookup(sha256)`` → :class:`ArchiveRecord` or None; ``lookup_many`` a few at a time."""

    name = "civarchive"

    def __init__(self, base_url: str | None = None, *, timeout: float = 20.0, retry: RetryPolicy | None = None,
                 workers: int = 4) -> None:  # fmt: skip
        self.base_url = (base_url or os.environ.get("CONSENTRY_CIVARCHIVE_URL") or DEFAULT_URL).rstrip("/")
        self.http = httpx.Client(headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                                 timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)))  # fmt: skip
        self.retry = retry or RetryPolicy(retries=3, backoff=0.5)
        self.workers = workers

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "CivArchiveClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def lookup(self, sha256: str) -> ArchiveRecord | None:
        digest = sha256.strip().lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise HubError(f"civarchive: {sha256!r} is not a SHA-256 (64 hex digits)")
        body = self.retry.call(f"civarchive: /sha256/{digest[:12]}…", lambda: self._get(f"/sha256/{digest}"))
        return None if body is None else parse_record(digest.upper(), body)

    def lookup_many(self, hashes: Iterable[str]) -> dict[str, ArchiveRecord | None]:
        """Each SHA-256 (upper-case key) → its record; ``workers`` requests in flight."""
        unique = list(dict.fromkeys(h.upper() for h in hashes))
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return dict(zip(unique, pool.map(self.lookup, unique)))

    def _get(self, path: str) -> dict[str, Any] | None:
        try:
            response = self.http.get(self.base_url + path)
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise transport_failure(f"civarchive: {path}", exc) from None
        if response.status_code == 404:
            return None
        if response.status_code in RETRY_STATUS:
            raise Transient(f"HTTP {response.status_code}", retry_after_seconds(response.headers.get("retry-after")))
        if response.status_code != 200:
            raise HubError(f"civarchive: {path}: HTTP {response.status_code}: {response.text[:200]}")
        try:
            body = jsonio.loads(response.content)
        except ValueError:
            raise Transient("the body is not complete JSON (truncated?)") from None
        if not isinstance(body, dict):
            raise HubError(f"civarchive: {path}: expected a JSON object, got {type(body).__name__}")
        return body


def parse_record(sha256: str, body: dict[str, Any]) -> ArchiveRecord:
    """Read a /sha256 answer tolerantly: ``data`` wrapper or not, ``version`` at the top or
    inside ``model``, files on the version or at the top."""
    data = body.get("data") if isinstance(body.get("data"), dict) else body
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    version = data.get("version") if isinstance(data.get("version"), dict) else model.get("version") or {}
    files = version.get("files") or data.get("files") or model.get("files") or []
    mirrors: list[ArchiveMirror] = []
    for f in files if isinstance(files, list) else []:
        if not isinstance(f, dict) or str(f.get("sha256") or "").upper() != sha256:
            continue
        for m in f.get("mirrors") or []:
            if isinstance(m, dict) and m.get("url"):
                mirrors.append(ArchiveMirror(str(m["url"]), m.get("filename"), m.get("deletedAt")))
    model_id = data.get("id", model.get("id")) or version.get("modelId")
    return ArchiveRecord(
        sha256=sha256, model_id=str(model_id) if model_id is not None else None,
        version_id=str(version["id"]) if version.get("id") is not None else None,
        name=data.get("name") or model.get("name"), deleted_at=data.get("deletedAt") or version.get("deletedAt"),
        mirrors=mirrors, raw=body,
    )  # fmt: skip
