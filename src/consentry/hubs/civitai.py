"""Civitai connector: crawl the public REST API v1 into the store, resumably.

Decisions (see ``shared/reference/hub-interfaces.md`` §1):

* **Pagination** follows ``metadata.nextCursor`` (a number or a string, treated as opaque text)
  and re-sends it against our own base URL rather than following ``nextPage``, whose host is
  always civitai.com even behind a mirror or proxy. A response in page mode (``nextPage`` only)
  is followed by page number; Civitai refuses ``page*limit > 1000`` and that surfaces as a
  :class:`HubError` saying so instead of being retried.
* **Order and ``--since``**: the crawl asks for ``sort=Newest`` (Civitai orders that by each
  model's latest version), the order in which new uploads only ever prepend, so a cursor stays
  valid during a long crawl. ``since`` keeps models whose newest version was published at or
  after the date and stops at the first older one: everything after it is older still.
* **Images**: the listing embeds each version's preview images without generation metadata;
  those are always stored. ``images=True`` also pages ``/api/v1/images?modelVersionId=…&withMeta=true``
  for every version of the page (a few at a time), which adds ``meta`` and the images beyond the
  previews. Those requests belong to the page: its records and its cursor commit together.
* **Retries** (:class:`~consentry.hubs.retry.RetryPolicy`): transport errors (timeouts, dropped
  connections, truncated bodies, a wrong Content-Length), unparseable JSON, 429 and 5xx are
  retried a bounded number of times; ``Retry-After`` is honoured (capped), otherwise exponential
  backoff with jitter. Other 4xx answers fail at once with the hub's own message.
* **What is kept**: ``raw`` holds the hub's JSON as received minus what a column already holds
  verbatim (a version's files and images, a file's ``hashes`` and ``metadata``, an image's
  id, ``meta``, url, size and date), so together they give back the original object without storing it twice.
* **Checkpoint**: one per query (``query_key`` = a hash of the options that change what is
  listed); each page's upserts and the next cursor are committed in one transaction, so a killed
  crawl resumes at the first page it had not committed and the upserts keep it duplicate-free.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from consentry import jsonio
from consentry.hubs.base import USER_AGENT, CrawlReport, HubError, Progress
from consentry.fingerprints.stored import hub_file_key, put_fingerprint
from consentry.hubs.remote import RemoteSafetensors, read_remote_file, registered_bases
from consentry.hubs.retry import RETRY_STATUS, RetryPolicy, Transient, retry_after_seconds, transport_failure
from consentry.hubs.writer import PageWriter

DEFAULT_URL = "https://civitai.com"
FEEDS = ("models", "images")
NSFW_LABELS = ((1, "PG"), (2, "PG-13"), (4, "R"), (8, "X"), (16, "XXX"), (32, "Blocked"))
_DEPRECATED_LEVELS = {"None": 1, "Soft": 2, "Mature": 4, "X": 8, "Blocked": 32}
_HASH_COLUMNS = {"SHA256": "sha256", "AutoV1": "autov1", "AutoV2": "autov2", "AutoV3": "autov3", "CRC32": "crc32",
                 "BLAKE3": "blake3"}  # fmt: skip


_DECODED_LEVELS = tuple(tuple(label for bit, label in NSFW_LABELS if bits & bit) for bits in range(64))


def decode_nsfw_level(bits: int | None) -> list[str]:
    """Labels of Civitai's nsfwLevel bitmask (§1.4): ``7`` → ``["PG", "PG-13", "R"]``; 0 (unrated) → ``[]``."""
    return list(_DECODED_LEVELS[(bits or 0) & 63])  # a table: the crawl decodes every record's level


@dataclass
class CivitaiOptions:
    """What to crawl. Every field but ``restart`` and ``fingerprints`` (which change what is
    read of each file, not what is listed) is part of the checkpoint's query key."""

    query: str | None = None
    types: list[str] = field(default_factory=list)
    nsfw: bool = True  # trust & safety needs every level; Civitai's own default is PG only
    since: str | None = None  # ISO date or datetime (UTC)
    sort: str = "Newest"
    period: str = "AllTime"
    limit: int = 100
    images: bool = False  # models feed: also every version's gallery with generation metadata
    feed: str = "models"  # or "images": the whole /api/v1/images feed, with generation metadata
    restart: bool = False
    fingerprints: bool = False  # read each safetensors model file by ranges: header, AutoV3, fingerprint

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> "CivitaiOptions":
        known = {k: v for k, v in options.items() if k in cls.__dataclass_fields__ and v is not None}
        if isinstance(known.get("types"), str):
            known["types"] = [t.strip() for t in known["types"].split(",") if t.strip()]
        if known.get("feed") == "images":
            known.setdefault("limit", 200)
        opts = cls(**known)
        if opts.feed not in FEEDS:
            raise HubError(f"civitai: unknown feed {opts.feed!r} (one of {', '.join(FEEDS)})")
        most = 200 if opts.feed == "images" else 100
        if not 1 <= opts.limit <= most:
            raise HubError(f"civitai: limit must be between 1 and {most} for the {opts.feed} feed, not {opts.limit}")
        if opts.feed == "images" and (opts.query or opts.types or opts.images):
            raise HubError("civitai: the images feed takes no --query, --types or --images (they filter models)")
        if opts.since:
            opts.since = _since_iso(opts.since)
            if opts.sort != "Newest":
                raise HubError("civitai: --since needs sort=Newest (it stops at the first older model)")
        return opts

    def query_key(self) -> str:
        """A stable hash of the options that decide what is listed."""
        fields = {k: v for k, v in asdict(self).items() if k not in ("restart", "fingerprints")}
        fields["types"] = sorted(t.lower() for t in self.types)
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

    def params(self) -> dict[str, Any]:
        if self.feed == "images":
            params = {"limit": self.limit, "sort": self.sort, "withMeta": "true", "browsingLevel": 31 if self.nsfw else 1}
            return params if self.period == "AllTime" else {**params, "period": self.period}
        params: dict[str, Any] = {"limit": self.limit, "sort": self.sort, "nsfw": "true" if self.nsfw else "false"}
        if self.period != "AllTime":
            params["period"] = self.period
        if self.query:
            params["query"] = self.query
        if self.types:
            params["types"] = list(self.types)  # repeated: types=LORA&types=Checkpoint
        return params


def _since_iso(text: str) -> str:
    """``2026-08-01`` or a full ISO time → the ``…T…Z`` form Civitai's dates compare with as text."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise HubError(f"civitai: --since {text!r} is not a date (YYYY-MM-DD or an ISO 8601 time)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    when = when.astimezone(dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


# --- HTTP with bounded retries --------------------------------------------------------------------


class CivitaiClient:
    """GET JSON from the API with bounded timeouts and retries; thread-safe (one httpx pool)."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 30.0,
                 retry: RetryPolicy | None = None) -> None:  # fmt: skip
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, headers=headers,
                                 timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)))  # fmt: skip
        self.retry = retry or RetryPolicy()

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        return self.retry.call(f"civitai: {path}", lambda: self._get_once(path, params))

    def _get_once(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self.http.get(path, params=params)
        except (httpx.TransportError, httpx.DecodingError) as exc:  # dropped, truncated, wrong length, timeout
            raise transport_failure(f"civitai: {path}", exc) from None
        if response.status_code == 200:
            try:
                body = jsonio.loads(response.content)
            except ValueError:
                raise Transient("the body is not complete JSON (truncated?)") from None
            if not isinstance(body, dict) or not isinstance(body.get("items", []), list):
                raise HubError(f"civitai: {path}: the answer is not a listing (a JSON object with an items list)")
            return body
        message = _error_message(response)
        problem = f"HTTP {response.status_code}: {message}"
        if "too many pages" in message.lower():
            raise HubError(f"civitai: {path}: {problem} (page mode stops at page*limit > 1000;"
                           " the hub must give cursors for a full crawl)")  # fmt: skip
        if response.status_code in RETRY_STATUS:
            raise Transient(problem, retry_after_seconds(response.headers.get("retry-after")))
        raise HubError(f"civitai: {path}: {problem}")


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("error") or body.get("message") or body)[:200]
    return str(body)[:200]


# --- mapping API objects to store records ---------------------------------------------------------


@dataclass
class PageRecords:
    models: list[dict[str, Any]] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    images: dict[str, dict[str, Any]] = field(default_factory=dict)  # by remote_id: /images replaces previews
    skipped: int = 0  # listed objects without the id every record is keyed by (or not objects at all)

    def counts(self) -> dict[str, int]:
        return {"models": len(self.models), "versions": len(self.versions), "files": len(self.files),
                "images": len(self.images)}  # fmt: skip

    def total(self) -> int:
        return sum(self.counts().values())


def _published(model: dict[str, Any]) -> list[str]:
    return sorted(v["publishedAt"] for v in _objects(model.get("modelVersions")) if isinstance(v.get("publishedAt"), str))


def last_version_at(model: dict[str, Any]) -> str | None:
    dates = _published(model)
    return dates[-1] if dates else None


def add_model(records: PageRecords, item: dict[str, Any], site: str) -> None:
    """Split one listed model into model, version, file and preview-image records (objects
    without an id, which nothing could key, are counted in ``records.skipped``)."""
    if not _has_id(item):
        records.skipped += 1
        return
    model_id = item["id"]
    versions = [v for v in _objects(item.get("modelVersions")) if _has_id(v)]
    records.skipped += len(_objects(item.get("modelVersions"), keep_all=True)) - len(versions)
    dates = _published(item)
    records.models.append({
        "remote_id": model_id, "name": item.get("name"), "type": item.get("type"),
        "creator": _field(item, "creator").get("username"), "url": f"{site}/models/{model_id}",
        "description": item.get("description"), "tags": item.get("tags"), "nsfw": item.get("nsfw"),
        "nsfw_level": item.get("nsfwLevel"), "nsfw_labels": decode_nsfw_level(item.get("nsfwLevel")),
        "poi": item.get("poi"), "minor": item.get("minor"),
        "base_model": versions[0].get("baseModel") if versions else None, "stats": item.get("stats"),
        "raw": {k: v for k, v in item.items() if k != "modelVersions"},
        "created_at": dates[0] if dates else None, "updated_at": dates[-1] if dates else None,
    })  # fmt: skip
    for version in versions:
        version_id = version["id"]
        records.versions.append({
            "remote_id": version_id, "model_remote_id": model_id, "name": version.get("name"),
            "base_model": version.get("baseModel"), "trained_words": version.get("trainedWords"),
            "nsfw_level": version.get("nsfwLevel"), "nsfw_labels": decode_nsfw_level(version.get("nsfwLevel")),
            "created_at": version.get("createdAt"),
            "published_at": version.get("publishedAt"),
            "raw": {k: v for k, v in version.items() if k not in ("files", "images")},
        })  # fmt: skip
        files = [f for f in _objects(version.get("files")) if _has_id(f)]
        records.skipped += len(_objects(version.get("files"), keep_all=True)) - len(files)
        for f in files:
            hashes = {_HASH_COLUMNS[k]: str(v).upper() for k, v in _field(f, "hashes").items() if k in _HASH_COLUMNS and v}
            size_kb = f.get("sizeKB") if isinstance(f.get("sizeKB"), (int, float)) else None
            records.files.append({
                "remote_id": f["id"], "model_remote_id": model_id, "version_remote_id": version_id,
                "name": f.get("name"), "url": f.get("downloadUrl"),
                "size": round(size_kb * 1024) if size_kb is not None else None,
                "format": _field(f, "metadata").get("format"), "metadata_json": f.get("metadata"),
                "raw": {k: v for k, v in f.items() if k not in ("hashes", "metadata")},
                **hashes,
            })  # fmt: skip
        for image in _objects(version.get("images"), keep_all=True):
            add_image(records, image, model_id, version_id)


def _has_id(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("id") not in (None, "")


def _field(obj: dict[str, Any], key: str) -> dict[str, Any]:
    """A nested object of the API's, or an empty one when it is null or of another type."""
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def _objects(value: Any, *, keep_all: bool = False) -> list[Any]:
    """A listed array as a list (null or a non-array: empty); its objects only, unless ``keep_all``."""
    items = value if isinstance(value, list) else []
    return items if keep_all else [v for v in items if isinstance(v, dict)]


_IMAGE_COLUMNS = {"id", "meta", "url", "width", "height", "createdAt"}  # stored in columns of their own, verbatim


def add_image(records: PageRecords, image: dict[str, Any], model_id: Any, version_id: Any) -> None:
    """One image record, from a version's previews or from ``/images`` (whose ``nsfwLevel`` is
    the deprecated string and whose ``meta`` may be nested as ``{id, meta}``)."""
    if not isinstance(image, dict):
        records.skipped += 1
        return
    remote_id = image.get("id") or _image_id_from_url(image.get("url"))
    if remote_id is None:
        return
    level = image.get("browsingLevel", image.get("nsfwLevel"))
    if isinstance(level, str):
        level = _DEPRECATED_LEVELS.get(level)
    meta = image.get("meta")
    if isinstance(meta, dict) and set(meta) == {"id", "meta"}:
        meta = meta["meta"]
    records.images[str(remote_id)] = {
        "remote_id": remote_id, "model_remote_id": model_id, "version_remote_id": version_id,
        "url": image.get("url"), "width": image.get("width"), "height": image.get("height"),
        "nsfw_level": level, "nsfw_labels": decode_nsfw_level(level), "meta": meta, "raw": {k: v for k, v in image.items() if k not in _IMAGE_COLUMNS},
        "created_at": image.get("createdAt"),
    }  # fmt: skip


def _image_id_from_url(url: str | None) -> str | None:
    """``…/original=true/139221483.jpeg`` → ``139221483`` (``/model-versions`` images have no id)."""
    stem = (url or "").rsplit("/", 1)[-1].split(".", 1)[0]
    return stem if stem.isdigit() else None


# --- the connector --------------------------------------------------------------------------------


class CivitaiConnector:
    """Crawls ``/api/v1/models`` (with previews, and optionally every version's gallery) or the
    ``/api/v1/images`` feed into ``store.hubs``. The next page is fetched while the current one
    is committed, so the network and the database work at the same time."""

    name = "civitai"

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = 30.0,
                 retry: RetryPolicy | None = None, image_workers: int = 4) -> None:  # fmt: skip
        self.base_url = (base_url or os.environ.get("CONSENTRY_CIVITAI_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("CIVITAI_API_KEY") or None
        self.timeout, self.retry, self.image_workers = timeout, retry, image_workers

    def crawl(self, store: Any, options: dict[str, Any], *, progress: Progress | None = None,
              max_pages: int | None = None) -> CrawlReport:  # fmt: skip
        """Crawl until the listing ends, ``since`` is passed, or ``max_pages`` pages were stored."""
        opts = CivitaiOptions.from_dict(options)
        key = opts.query_key()
        report = CrawlReport(hub=self.name, query_key=key)
        if opts.restart:
            store.hubs.reset_checkpoint(self.name, key)
        cursor = self._resume_cursor(store, key, report)
        client = CivitaiClient(self.base_url, self.api_key, timeout=self.timeout,
                               retry=self.retry or RetryPolicy())  # fmt: skip
        path = "/api/v1/images" if opts.feed == "images" else "/api/v1/models"
        bases = registered_bases(store) if opts.fingerprints else {}
        self._downloads = (httpx.Client(follow_redirects=True, timeout=httpx.Timeout(self.timeout, connect=10.0),
                                        headers={"User-Agent": USER_AGENT}) if opts.fingerprints else None)  # fmt: skip
        fetch = lambda c: client.get(path, _with_cursor(opts.params(), c))  # noqa: E731

        def commit(pages: list[tuple[PageRecords, str | None, bool]]) -> None:
            with store.db.transaction():  # the pages and the cursor after the last, together
                for records, next_cursor, done in pages:
                    self._commit(store, key, records, next_cursor, finished=done)
            for records, _cursor, _done in pages:
                report.add(records.counts())
                report.failed += records.skipped
                if progress:
                    progress(records.total())

        try:
            with ThreadPoolExecutor(max_workers=self.image_workers + 1) as pool, PageWriter(commit) as writer:
                # from here on only the writer's thread touches the store
                pending = pool.submit(fetch, cursor)
                handed = 0  # pages given to the writer
                while True:
                    body = pending.result()
                    if opts.feed == "images":
                        records, next_cursor, stop = self._image_page(body, opts)
                    else:
                        records, next_cursor, stop = self._model_page(body, opts)
                    done = stop or next_cursor is None
                    handed += 1
                    last = max_pages is not None and handed >= max_pages
                    if not done and not last:
                        pending = pool.submit(fetch, next_cursor)  # prefetch while this page is mapped and written
                    if opts.images:
                        self._add_galleries(client, pool, records, opts)
                    if opts.fingerprints:
                        self._read_files(pool, records, bases)
                    writer.put((records, None if done else next_cursor, done))
                    if done or last:
                        report.finished = done
                        break
        finally:
            report.notes.append(f"{client.retry.retried} request(s) retried")
            if report.failed:
                report.notes.append(f"{report.failed} listed object(s) skipped: not an object, or no id to key it by")
            client.close()
            if self._downloads is not None:
                self._downloads.close()
        return report

    def _resume_cursor(self, store: Any, key: str, report: CrawlReport) -> str | None:
        checkpoint = store.hubs.checkpoint(self.name, key)
        if checkpoint and checkpoint["finished_at"] is None and checkpoint["cursor"]:
            report.resumed_from = checkpoint["cursor"]
            return checkpoint["cursor"]
        return None

    def _model_page(self, body: dict[str, Any], opts: CivitaiOptions) -> tuple[PageRecords, str | None, bool]:
        """The page's records, the next cursor, and whether ``since`` says to stop here."""
        records, stop = PageRecords(), False
        for item in body.get("items") or []:
            if not _has_id(item):
                records.skipped += 1
                continue
            if opts.since and (last_version_at(item) or "") < opts.since:
                stop = True
                break
            add_model(records, item, self.base_url)
        return records, _next_cursor(body.get("metadata") or {}), stop

    def _image_page(self, body: dict[str, Any], opts: CivitaiOptions) -> tuple[PageRecords, str | None, bool]:
        """Feed images; one naming exactly one version is linked to its model at commit time."""
        records, stop = PageRecords(), False
        for image in body.get("items") or []:
            if opts.since and (image.get("createdAt") or "") < opts.since:
                stop = True
                break
            if not isinstance(image, dict):
                records.skipped += 1
                continue
            ids = image.get("modelVersionIds") or []
            add_image(records, image, None, str(ids[0]) if len(ids) == 1 else None)
        return records, _next_cursor(body.get("metadata") or {}), stop

    def _add_galleries(self, client: CivitaiClient, pool: ThreadPoolExecutor, records: PageRecords,
                       opts: CivitaiOptions) -> None:  # fmt: skip
        versions = [(v["model_remote_id"], v["remote_id"]) for v in records.versions]
        fetch = lambda pair: (pair, self._version_images(client, pair[1], opts))  # noqa: E731
        for (model_id, version_id), images in pool.map(fetch, versions):
            for image in images:
                add_image(records, image, model_id, version_id)

    def _read_files(self, pool: ThreadPoolExecutor, records: PageRecords, bases: dict[str, Any]) -> None:
        """Range-read every safetensors model file of the page from its download URL, on our
        base URL (a mirror or proxy of Civitai serves the same paths; the API names civitai.com)."""
        auth = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

        def read(record: dict[str, Any]) -> dict[str, Any]:
            parts = urlsplit(record["url"])
            url = self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")
            remote = RemoteSafetensors(url, client=self._downloads, headers=auth, retry=RetryPolicy(retries=2, backoff=0.5))
            return read_remote_file(remote, fingerprints=True, bases=bases)

        wanted = [f for f in records.files if f.get("format") == "SafeTensor" and f["raw"].get("type") == "Model" and f["url"]]
        for record, found in zip(wanted, pool.map(read, wanted)):
            raw = {**record["raw"], **found.pop("raw")}
            found.pop("format")
            listed, computed = record.get("autov3"), found.get("autov3")
            if listed and computed and not computed.startswith(listed):
                raw["autov3_disagrees"] = f"computed {computed}, Civitai lists {listed}"
                found.pop("autov3")
            record.update(found, raw=raw)

    def _version_images(self, client: CivitaiClient, version_id: Any, opts: CivitaiOptions) -> list[dict[str, Any]]:
        params = {"modelVersionId": version_id, "withMeta": "true", "limit": 200, "browsingLevel": 31 if opts.nsfw else 1}
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            body = client.get("/api/v1/images", _with_cursor(params, cursor))
            out.extend(body.get("items") or [])
            cursor = _next_cursor(body.get("metadata") or {})
            if cursor is None:
                return out

    def _commit(self, store: Any, key: str, records: PageRecords, cursor: str | None, *, finished: bool) -> None:
        """A page and the cursor after it, in one transaction: what makes a resume exact."""
        unlinked = {i["version_remote_id"] for i in records.images.values() if i["version_remote_id"] and not i["model_remote_id"]}
        if unlinked:  # feed images: the model of a version already stored
            models = store.hubs.models_of_versions(self.name, unlinked)
            for image in records.images.values():
                image["model_remote_id"] = image["model_remote_id"] or models.get(image["version_remote_id"])
        with store.db.transaction():
            for table, rows in (("hub_models", records.models), ("hub_versions", records.versions),
                                ("hub_files", records.files), ("hub_images", records.images.values())):  # fmt: skip
                store.hubs.upsert(table, self.name, rows)
            for f in records.files:
                if "_fingerprint" in f:
                    put_fingerprint(store, f.pop("_fingerprint"), hub_file_key(self.name, str(f["remote_id"])), sha256=f.get("sha256"))
            store.hubs.save_checkpoint(self.name, key, cursor, records.total(), finished=finished)


def _next_cursor(metadata: dict[str, Any]) -> str | None:
    """``nextCursor`` as text (it comes as a number or a string); page mode → ``page:N``."""
    cursor = metadata.get("nextCursor")
    if cursor is not None and cursor != "":
        return str(cursor)
    next_page = metadata.get("nextPage")
    if next_page:
        page = parse_qs(urlsplit(next_page).query).get("page")
        if page:
            return f"page:{page[0]}"
    return None


def _with_cursor(params: dict[str, Any], cursor: str | None) -> dict[str, Any]:
    if cursor is None:
        return params
    if cursor.startswith("page:"):
        return {**params, "page": cursor[5:]}
    return {**params, "cursor": cursor}



