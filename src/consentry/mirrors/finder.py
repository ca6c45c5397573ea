"""Find the copies of every model in a bank, in one linear pass over the crawled hub files.

Signals, strongest first (a mirror found by several keeps them all as evidence):

* ``sha256``: the same file (a Hugging Face LFS oid, a Civitai file hash);
* ``autov3``: the same tensor bytes with the header rewritten (metadata stripped, renamed);
* ``content_hash``: the same tensors in another container;
* ``fingerprint``: a converted, re-cast, resized or merged copy, from the weight fingerprint of
  the banked model or of an exact copy of it found on a hub (verdict, score and threshold shown);
* ``archive``: the archive site lists the URL as a mirror of that SHA-256;
* ``autov3 (claimed)``: the file's header claims the banked AutoV3 (kohya's sshs_model_hash) —
  never checked by anyone, so weaker than all the above.

The bank's hashes are held in dictionaries and every hub file is looked at once: O(entries +
files), never entries × files. Fingerprints are matched through the nearest-neighbour index.
Mirrors are recorded (:mod:`consentry.store.mirrors`) so a later run can report only what is new.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from consentry.fingerprints.model import Fingerprint
from consentry.fingerprints.search import related_fingerprints
from consentry.fingerprints.stored import HUB_FILE_PREFIX, hub_file_key
from consentry.hubs.base import HubError
from consentry.hubs.civarchive import CivArchiveClient
from consentry.mirrors.known import KnownModel, known_models
from consentry.store.banks import BankEntry
from consentry.store.mirrors import StoredMirror
from consentry.store.records import utc_now

SIGNAL_ORDER = ("sha256", "autov3", "content_hash", "fingerprint", "archive", "autov3 (claimed)")
_HF_FILE_URL = re.compile(r"^https?://[^/]+/(?P<repo>[^/]+/[^/]+)/(?:resolve|blob)/[^/]+/(?P<path>.+?)(?:\?.*)?$")


@dataclass
class Mirror:
    hub: str
    url: str
    file_remote_id: str | None
    matched_by: str  # the strongest signal (SIGNAL_ORDER)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    hub_seen: str | None = None  # when the crawl last saw the file on the hub
    first_seen: str | None = None  # when consentry first reported this mirror
    new: bool = True

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class EntryMirrors:
    known: KnownModel
    mirrors: list[Mirror] = field(default_factory=list)

    @property
    def entry(self) -> BankEntry:
        return self.known.entry

    def as_dict(self) -> dict[str, Any]:
        return {**self.known.as_dict(), "mirrors": [m.as_dict() for m in self.mirrors]}


@dataclass
class MirrorReport:
    bank: str
    entries: list[EntryMirrors]
    hub_files_scanned: int = 0
    archive_lookups: int = 0
    notes: list[str] = field(default_factory=list)
    found: int | None = None  # mirrors found by the run, when ``entries`` lists only some (only_new)
    failed_source: str | None = None  # a source that could not be asked (the archive site down): said, not hidden

    @property
    def mirror_count(self) -> int:
        """Mirrors the run found (all of them, even when only the new ones are listed)."""
        return self.found if self.found is not None else sum(len(e.mirrors) for e in self.entries)

    @property
    def new_count(self) -> int:
        return sum(m.new for e in self.entries for m in e.mirrors)

    def only_new(self) -> "MirrorReport":
        """The same report listing only the mirrors no earlier run had reported."""
        entries = [EntryMirrors(e.known, [m for m in e.mirrors if m.new]) for e in self.entries]
        return MirrorReport(self.bank, entries, self.hub_files_scanned, self.archive_lookups, list(self.notes),
                            found=self.mirror_count, failed_source=self.failed_source)  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {"bank": self.bank, "hub_files_scanned": self.hub_files_scanned, "archive_lookups": self.archive_lookups,
                "mirrors": self.mirror_count, "new": self.new_count,
                "listed": sum(len(e.mirrors) for e in self.entries), "notes": self.notes,
                "failed_source": self.failed_source,
                "entries": [e.as_dict() for e in self.entries]}  # fmt: skip


class _Found:
    """Mirrors per entry, merged by URL."""

    def __init__(self) -> None:
        self.by_entry: dict[int, dict[str, Mirror]] = {}

    def add(self, entry_id: int, hub: str, url: str, remote_id: str | None, signal: str, evidence: dict[str, Any],
            hub_seen: str | None = None) -> None:  # fmt: skip
        mirrors = self.by_entry.setdefault(entry_id, {})
        mirror = mirrors.get(url)
        if mirror is None:
            mirror = mirrors[url] = Mirror(hub, url, remote_id, signal, hub_seen=hub_seen)
        elif SIGNAL_ORDER.index(signal) < SIGNAL_ORDER.index(mirror.matched_by):
            mirror.matched_by = signal
        mirror.file_remote_id = mirror.file_remote_id or remote_id
        mirror.hub_seen = mirror.hub_seen or hub_seen
        mirror.evidence.append({"signal": signal, **evidence})


def find_mirrors(store, bank_name: str, *, archive: CivArchiveClient | None = None, fingerprints: bool = True,
                 record: bool = True) -> MirrorReport:  # fmt: skip
    """Every mirror of every model in ``bank_name``, recorded in the store (unless ``record`` is
    False); each one says whether an earlier run had already reported it."""
    bank = store.banks.get(bank_name)
    known = known_models(store, bank)
    report = MirrorReport(bank=bank.name, entries=[EntryMirrors(k) for k in known])
    found = _Found()
    exact_copies = _match_hashes(store, known, found, report)
    if fingerprints:
        _match_fingerprints(store, known, exact_copies, found, report)
    if archive is not None:
        _match_archive(store, known, archive, found, report)
    now = utc_now()
    for item in report.entries:
        mirrors = sorted(found.by_entry.get(item.entry.id, {}).values(),
                         key=lambda m: (SIGNAL_ORDER.index(m.matched_by), m.url))  # fmt: skip
        for m in mirrors:
            m.evidence.sort(key=lambda e: SIGNAL_ORDER.index(e["signal"]))
        item.mirrors = mirrors
    if record:
        stored = store.mirrors.record(bank.id, [
            StoredMirror(item.entry.id, m.hub, m.url, m.file_remote_id, m.matched_by, m.evidence, m.hub_seen)
            for item in report.entries for m in item.mirrors
        ])  # fmt: skip
        first = {(s.entry_id, s.url): s.first_seen for s in stored}
        for item in report.entries:
            for m in item.mirrors:
                m.first_seen = first.get((item.entry.id, m.url), now)
                m.new = m.first_seen >= now
    return report


def _match_hashes(store, known: list[KnownModel], found: _Found, report: MirrorReport) -> dict[int, list[str]]:
    """One pass over every hub file; returns, per entry, the hub files that are exact copies
    (by SHA-256 or computed AutoV3), whose fingerprints can find converted copies in turn."""
    sha: dict[str, list[KnownModel]] = {}
    autov3: dict[str, list[KnownModel]] = {}  # by the 12-hex short form; full forms are checked in full
    content: dict[str, list[KnownModel]] = {}
    for k in known:
        for value in k.sha256:
            sha.setdefault(value, []).append(k)
        for value in k.autov3:
            autov3.setdefault(value[:12], []).append(k)
        for value in k.content_hash:
            content.setdefault(value, []).append(k)
    exact: dict[int, list[str]] = {}
    for rows in store.hubs.iter_file_identities():
        report.hub_files_scanned += len(rows)
        for row in rows:
            hits: list[tuple[KnownModel, str, str]] = []
            for k in sha.get(row["sha256"] or "", ()):
                hits.append((k, "sha256", row["sha256"]))
            for column, signal in (("autov3", "autov3"), ("autov3_claimed", "autov3 (claimed)")):
                value = row[column]
                for k in autov3.get((value or "")[:12], ()):
                    if any(_same_autov3(value, mine) for mine in k.autov3):
                        hits.append((k, signal, value))
            for k in content.get(row["content_hash"] or "", ()):
                hits.append((k, "content_hash", row["content_hash"]))
            for k, signal, value in hits:
                exact_copy = signal in ("sha256", "autov3", "content_hash")
                if exact_copy:  # its fingerprint, if crawled, finds converted copies in turn
                    exact.setdefault(k.entry.id, []).append(hub_file_key(row["hub"], row["remote_id"]))
                if is_origin(k, row):
                    continue  # the banked model's own file on Civitai, not a copy of it
                found.add(k.entry.id, row["hub"], page_url(row), row["remote_id"], signal, {"value": value},
                          hub_seen=row["last_seen"])  # fmt: skip
    return exact


def is_origin(k: KnownModel, row: Any) -> bool:
    """A file of the very Civitai model the bank entry names (its old URL)."""
    return row["hub"] == "civitai" and k.origin_model is not None and row["model_remote_id"] == k.origin_model


def _same_autov3(a: str | None, b: str) -> bool:
    """Equal as far as both go: a 12-hex Civitai form matches the 64-hex form it starts."""
    if not a:
        return False
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _match_fingerprints(store, known: list[KnownModel], exact: dict[int, list[str]], found: _Found,
                        report: MirrorReport) -> None:  # fmt: skip
    """Converted or merged copies: hub-file fingerprints related to the banked model's own
    fingerprint, or to that of an exact copy found above."""
    if store.fingerprints.count() == 0:
        return
    bank = store.banks.get(report.bank)
    for k in known:
        candidates = ([k.fingerprint_key] if k.fingerprint_key else []) + sorted(set(exact.get(k.entry.id, [])))
        existing = store.fingerprints.existing_keys(candidates)
        sources = [key for key in candidates if key in existing]
        if not sources:
            continue
        seen: set[str] = set(sources)
        for source in sources:
            meta, blob = store.fingerprints.by_key(source)
            query = Fingerprint.from_bytes(blob, source=source)
            for hit in related_fingerprints(store, query, prefix=HUB_FILE_PREFIX, query_is_known=True, exclude=seen):
                threshold = float(bank.thresholds.get("fingerprint", hit.default_threshold))
                if hit.score < threshold:
                    continue
                hub, remote_id = hit.stored.path[len(HUB_FILE_PREFIX):].split(":", 1)
                row = store.hubs.get("hub_files", hub, remote_id)
                if row is None or is_origin(k, row):
                    continue
                seen.add(hit.stored.path)
                via = "the banked file" if source == k.fingerprint_key else f"copy {source[len(HUB_FILE_PREFIX):]}"
                c = hit.comparison
                found.add(k.entry.id, hub, page_url(row), remote_id, "fingerprint", {
                    "verdict": c.verdict, "score": hit.score, "threshold": threshold, "via": via,
                    "identity": c.identity, "containment": c.containment, "coefficient": c.coefficient,
                    "coverage": c.coverage, "reason": c.reason,
                }, hub_seen=row["last_seen"])  # fmt: skip


def _match_archive(store, known: list[KnownModel], archive: CivArchiveClient, found: _Found,
                   report: MirrorReport) -> None:  # fmt: skip
    """The archive site's mirror lists, linked to the crawled hub file when the URL names one."""
    wanted = sorted({sha for k in known for sha in k.sha256})
    try:
        records = archive.lookup_many(wanted)
    except HubError as exc:  # the hub signals found so far still stand, and are recorded
        report.failed_source = str(exc)
        report.notes.append(f"the archive site could not be asked, its mirrors are missing from this report: {exc}")
        return
    report.archive_lookups = len(wanted)
    for k in known:
        for sha in sorted(k.sha256):
            record = records.get(sha)
            for m in record.mirrors if record else []:
                remote_id = hf_remote_id(m.url)
                row = store.hubs.get("hub_files", "huggingface", remote_id) if remote_id else None
                hub = "huggingface" if remote_id else (re.sub(r"^https?://([^/]+).*$", r"\1", m.url) or "web")
                url = page_url(row) if row else m.url
                found.add(k.entry.id, hub, url, remote_id, "archive", {
                    "value": sha, "archive_url": m.url, "filename": m.filename, "deleted_at": m.deleted_at,
                    "archived_model": record.model_id, "in_store": row is not None,
                }, hub_seen=row["last_seen"] if row else None)  # fmt: skip


def page_url(row: Any) -> str:
    """Where a person can see a hub file: a Civitai model page at its version, the pinned
    download URL elsewhere (a Hugging Face resolve URL names the commit: reproducible evidence)."""
    if row["hub"] == "civitai" and row["model_remote_id"]:
        return f"https://civitai.com/models/{row['model_remote_id']}?modelVersionId={row['version_remote_id']}"
    return row["url"] or row["remote_id"]


def hf_remote_id(url: str) -> str | None:
    """``https://huggingface.co/user/repo/resolve/main/LORA.safetensors`` → ``user/repo/LORA.safetensors``."""
    m = _HF_FILE_URL.match(url)
    return f"{m.group('repo')}/{m.group('path')}" if m else None
