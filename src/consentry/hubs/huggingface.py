"""Crawl Hugging Face model repos through the real ``huggingface_hub`` client.

For each repo ``list_models`` finds: ``model_info(files_metadata=True)`` gives every file with
its LFS sha256 (no download) and the card (``base_model`` and ``base_model_relation``); each
``.safetensors`` file's header is range-read and validated by consentry's strict parser
(:mod:`consentry.hubs.remote`), its training metadata decoded. AutoV3 only with ``full_read``.

**Checkpoint (resume) decision:** huggingface_hub follows the ``Link`` header itself and does
not expose the next-page URL, and the Hub's cursor is server-private, so the checkpoint is the
*last repo id fully stored*, committed in the same transaction as that repo's rows. A resumed
crawl re-lists (cheap: metadata only) and skips up to and including that id; if the id is gone
from the listing (repo deleted, order changed) it stores the whole listing again, which is
harmless because every upsert is keyed by remote id. A finished crawl's next run starts over.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, TypeVar

import httpx
from huggingface_hub import HfApi, constants, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError, GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError,
)  # fmt: skip
from huggingface_hub.utils import build_hf_headers

from consentry.hubs.base import USER_AGENT, CrawlReport, HubError, Progress
from consentry.fingerprints.stored import hub_file_key, put_fingerprint
from consentry.formats.tensors import Manifest
from consentry.hubs.remote import HubAccessDenied, RemoteSafetensors, read_remote_file, registered_bases
from consentry.hubs.retry import RETRY_STATUS, RetryPolicy, Transient, retry_after_seconds, transport_failure

T = TypeVar("T")


def _transport_errors() -> tuple[type[BaseException], ...]:
    """huggingface_hub 1.x talks httpx, 2.x httpx2: retry the transport errors of either."""
    errors: list[type[BaseException]] = [httpx.TransportError]
    try:
        import httpx2

        errors.append(httpx2.TransportError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


class HuggingFaceConnector:
    """``crawl(store, {"search", "filter", "author", "limit"})`` into hub_models / hub_files."""

    name = "huggingface"

    def __init__(self, base_url: str | None = None, token: str | None = None, *, full_read: bool = False,
                 fingerprints: bool = False, retry: RetryPolicy | None = None, timeout: float = 30.0,
                 workers: int = 4) -> None:  # fmt: skip
        # HF_ENDPOINT is read by huggingface_hub at import (constants.ENDPOINT); --base-url wins
        self.endpoint = (base_url or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
        self.token: str | bool = token or os.environ.get("HF_TOKEN") or False  # False: never a stored token
        self.api = HfApi(endpoint=self.endpoint, token=self.token, library_name="consentry")
        self.full_read, self.fingerprints, self.timeout, self.workers = full_read, fingerprints, timeout, workers
        self.bases: dict[str, tuple[str, Manifest]] = {}  # family -> the one registered base of it
        self.retry = retry or RetryPolicy(retries=3, backoff=0.2)
        self.client = httpx.Client(follow_redirects=True, timeout=httpx.Timeout(timeout, connect=10.0),
                                   headers={"User-Agent": USER_AGENT})  # fmt: skip
        self._transport = _transport_errors()

    def close(self) -> None:
        self.client.close()

    # --- calls with bounded retries and clear errors -----------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return self.retry.call(f"huggingface: {what}", lambda: self._attempt(what, fn))

    def _attempt(self, what: str, fn: Callable[[], T]) -> T:
        """One try of ``fn``; the client's typed errors become clear, one-line hub errors."""
        try:
            return fn()
        except GatedRepoError as exc:
            raise HubAccessDenied(f"huggingface: {what}: gated repo, access not granted (401 GatedRepo)") from exc
        except RepositoryNotFoundError as exc:
            raise HubError(f"huggingface: {what}: repository not found (404 RepoNotFound)") from exc
        except RevisionNotFoundError as exc:
            raise HubError(f"huggingface: {what}: revision not found (404 RevisionNotFound)") from exc
        except EntryNotFoundError as exc:
            raise HubError(f"huggingface: {what}: file not found (404 EntryNotFound)") from exc
        except HfHubHTTPError as exc:
            response = exc.response
            status = response.status_code if response is not None else None
            if status not in RETRY_STATUS:
                raise HubError(f"huggingface: {what}: HTTP {status}: {str(exc).splitlines()[0]}") from exc
            retry_after = retry_after_seconds(response.headers.get("retry-after")) if response is not None else None
            raise Transient(f"HTTP {status}", retry_after) from None
        except self._transport as exc:
            raise transport_failure(f"huggingface: {what}", exc) from None

    # --- one repo ---------------------------------------------------------------------------------

    def remote_file(self, repo_id: str, filename: str, revision: str | None = None) -> RemoteSafetensors:
        url = hf_hub_url(repo_id, filename, revision=revision, endpoint=self.endpoint)
        headers = build_hf_headers(token=self.token, library_name="consentry")
        return RemoteSafetensors(url, client=self.client, headers=headers, retry=self.retry)

    def repo_records(self, repo_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The hub_models row and hub_files rows of one repo (headers range-read). With
        ``fingerprints``, a file row carries its weight fingerprint under ``"_fingerprint"``."""
        info = self._call(f"model_info {repo_id}", lambda: self.api.model_info(repo_id, files_metadata=True, timeout=self.timeout))
        card = info.card_data.to_dict() if info.card_data is not None else {}
        base = card.get("base_model")
        tags = list(info.tags or [])
        model = {
            "remote_id": info.id, "name": info.id.split("/", 1)[-1], "type": info.pipeline_tag,
            "creator": info.author or info.id.split("/", 1)[0], "url": f"{self.endpoint}/{info.id}", "tags": tags,
            "nsfw": any(t.startswith("not-for-all-audience") for t in tags),
            "base_model": base if isinstance(base, str) or base is None else json.dumps(base),
            "stats": {"downloads": info.downloads, "likes": info.likes},
            "raw": {"sha": info.sha, "gated": info.gated, "private": info.private, "card_data": card,
                    "base_model_relation": card.get("base_model_relation"), "library_name": info.library_name},
            "created_at": info.created_at.isoformat() if info.created_at else None,
            "updated_at": info.last_modified.isoformat() if info.last_modified else None,
        }  # fmt: skip
        files = [self._file_record(info, s) for s in info.siblings or []]
        return model, files

    def _file_record(self, info: Any, sibling: Any) -> dict[str, Any]:
        lfs = sibling.lfs
        sha = lfs.sha256.upper() if lfs is not None and lfs.sha256 else None
        record: dict[str, Any] = {
            "remote_id": f"{info.id}/{sibling.rfilename}", "model_remote_id": info.id, "name": sibling.rfilename,
            "url": hf_hub_url(info.id, sibling.rfilename, revision=info.sha, endpoint=self.endpoint),
            "size": sibling.size, "sha256": sha, "autov2": sha[:10] if sha else None, "bytes_fetched": 0,
            "raw": {"blob_id": sibling.blob_id, "lfs": bool(lfs), "commit": info.sha},
        }  # fmt: skip
        if not sibling.rfilename.endswith(".safetensors"):
            return record
        remote = self.remote_file(info.id, sibling.rfilename, revision=info.sha)
        read = read_remote_file(remote, full_read=self.full_read, fingerprints=self.fingerprints, bases=self.bases)
        record.update({**read, "raw": {**record["raw"], **read["raw"]}})
        return record

    # --- the crawl --------------------------------------------------------------------------------

    def _listing(self, options: dict[str, Any]) -> Iterable[Any]:
        return self.api.list_models(search=options.get("search"), filter=options.get("filter"),
                                    author=options.get("author"), limit=options.get("limit"))  # fmt: skip

    def crawl(self, store: Any, options: dict[str, Any], *, progress: Progress | None = None,
              max_pages: int | None = None) -> CrawlReport:  # fmt: skip
        """Crawl the repos matching ``options``; ``max_pages`` bounds the repos stored this run."""
        key = query_key(options)
        report = CrawlReport(hub=self.name, query_key=key)
        if self.fingerprints:
            self.bases = registered_bases(store)
        state = store.hubs.checkpoint(self.name, key)
        after: str | None = None
        if state and state.get("finished_at"):
            store.hubs.reset_checkpoint(self.name, key)
        elif state and state.get("cursor"):
            after = json.loads(state["cursor"])["last"]
            report.resumed_from = after
        def attempt() -> bool:
            # a listing that breaks mid-way is listed again, skipping what is already stored
            state = store.hubs.checkpoint(self.name, key)
            start = json.loads(state["cursor"])["last"] if state and state.get("cursor") else after
            return self._attempt("list_models", lambda: self._crawl_listing(store, options, key, start, report,
                                                                             progress, max_pages))  # fmt: skip

        done = self._listing_retry().call("huggingface: list_models", attempt)
        if done:
            with store.db.transaction():
                store.hubs.save_checkpoint(self.name, key, None, 0, finished=True)
            report.finished = True
        return report

    def _listing_retry(self) -> RetryPolicy:
        """huggingface_hub already retries every listing page itself (``http_backoff``: 5 tries,
        1-8 s apart, 429 reset honoured), so the whole listing gets one more attempt at most
        (for a break it does not retry, e.g. a truncated page), never ``retries`` × its own."""
        r = self.retry
        return RetryPolicy(retries=min(1, r.retries), backoff=r.backoff, max_backoff=r.max_backoff,
                           max_retry_after=r.max_retry_after, jitter=r.jitter, sleep=r.sleep)  # fmt: skip

    def _crawl_listing(self, store: Any, options: dict[str, Any], key: str, after: str | None,
                       report: CrawlReport, progress: Progress | None, max_pages: int | None) -> bool:  # fmt: skip
        skipping = after is not None
        seen_after = False
        wanted: list[str] = []
        for item in self._listing(options):  # lazy: a failing page raises here, in attempt()
            if skipping:
                if item.id == after:
                    skipping, seen_after = False, True
                continue
            wanted.append(item.id)
        stopped = max_pages is not None and len(wanted) > max_pages - report.pages
        wanted = wanted[: max(0, max_pages - report.pages)] if max_pages is not None else wanted
        # repos are read a few at a time but committed in listing order, so the checkpoint
        # ("last repo stored") never passes a repo that is not stored
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for repo_id, records in zip(wanted, pool.map(self._repo_or_error, wanted)):
                if isinstance(records, HubError):  # one repo the hub would not give: noted, the crawl goes on
                    self._skip_repo(store, key, repo_id, records, report)
                    continue
                self._store_repo(store, key, repo_id, *records, report, progress)
        if stopped:
            return False
        if skipping and not seen_after:  # the checkpointed repo vanished: store the whole listing again
            report.notes.append(f"checkpoint repo {after} not in the listing any more; re-crawled all")
            return self._crawl_listing(store, options, key, None, report, progress, max_pages)
        return True

    def _repo_or_error(self, repo_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | HubError:
        try:
            return self.repo_records(repo_id)
        except HubError as exc:
            return exc

    def _skip_repo(self, store: Any, key: str, repo_id: str, error: HubError, report: CrawlReport) -> None:
        """Past a repo that failed after its retries (gone, denied, malformed, host failing):
        the checkpoint moves on, so a resumed crawl does not stop at it again."""
        with store.db.transaction():
            store.hubs.save_checkpoint(self.name, key, json.dumps({"last": repo_id}), 0)
        report.failed += 1
        report.notes.append(f"skipped {repo_id}: {error}")

    def _store_repo(self, store: Any, key: str, repo_id: str, model: dict[str, Any], files: list[dict[str, Any]],
                    report: CrawlReport, progress: Progress | None) -> None:  # fmt: skip
        prints = [(f["remote_id"], f.pop("_fingerprint"), f.get("sha256")) for f in files if "_fingerprint" in f]
        with store.db.transaction():  # the repo, its fingerprints and the checkpoint naming it commit together
            store.hubs.upsert("hub_models", self.name, [model])
            store.hubs.upsert("hub_files", self.name, files)
            for remote_id, fp, sha256 in prints:
                put_fingerprint(store, fp, hub_file_key(self.name, remote_id), sha256=sha256)
            store.hubs.save_checkpoint(self.name, key, json.dumps({"last": repo_id}), 1 + len(files))
        report.pages += 1
        report.models += 1
        report.files += len(files)
        if progress:
            progress(1 + len(files))


def query_key(options: dict[str, Any]) -> str:
    """The crawl's identity for its checkpoint: the same query resumes, another starts fresh."""
    filt = options.get("filter")
    filt = sorted([filt] if isinstance(filt, str) else filt or [])
    return json.dumps({"search": options.get("search"), "filter": filt, "author": options.get("author"),
                       "limit": options.get("limit")}, sort_keys=True)  # fmt: skip
