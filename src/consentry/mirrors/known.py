"""What is known of each banked model before looking for its copies: the bank's own signals,
plus the hashes the Civitai crawl recorded for the same file or for the model its old URL names
(a deleted model's AutoV3 is usually known only that way), and the fingerprints on record."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from consentry.banks.fingerprint_matching import KEY_PREFIX as BANK_KEY_PREFIX
from consentry.store.banks import Bank, BankEntry

_CIVITAI_MODEL_URL = re.compile(r"civitai\.com/models/(\d+)")
_CIVITAI_VERSION = re.compile(r"modelVersionId=(\d+)")


@dataclass
class KnownModel:
    entry: BankEntry
    origin_model: str | None  # Civitai model id from the entry's old URL: its own files are not mirrors
    sha256: set[str] = field(default_factory=set)
    autov3: set[str] = field(default_factory=set)  # 64 hex, or the 12-hex form Civitai lists
    content_hash: set[str] = field(default_factory=set)
    fingerprint_key: str | None = None  # the bank entry's own fingerprint, when it was added from a file
    sources: list[str] = field(default_factory=list)  # where each identity came from, for the report

    def as_dict(self) -> dict[str, Any]:
        return {"entry_id": self.entry.id, "name": self.entry.name, "url": self.entry.url,
                "sha256": sorted(self.sha256), "autov3": sorted(self.autov3), "content_hash": sorted(self.content_hash),
                "fingerprint": self.fingerprint_key is not None, "sources": self.sources}  # fmt: skip


def civitai_model_id(url: str | None) -> str | None:
    """``https://civitai.com/models/12345/some-name?modelVersionId=6`` → ``"12345"``."""
    m = _CIVITAI_MODEL_URL.search(url or "")
    return m.group(1) if m else None


def known_models(store, bank: Bank) -> list[KnownModel]:
    known = []
    for entry in store.banks.entries(bank):
        k = KnownModel(entry, civitai_model_id(entry.url))
        s = entry.signals
        if s.get("sha256"):
            k.sha256.add(s["sha256"])
        if s.get("autov3"):
            k.autov3.add(s["autov3"])
        if s.get("content_hash"):
            k.content_hash.add(s["content_hash"])
        k.sources.append("bank entry: " + ", ".join(sorted(s)))
        known.append(k)
    _add_civitai_hashes(store, known)
    keys = [f"{BANK_KEY_PREFIX}{k.entry.id}" for k in known]
    stored = store.fingerprints.existing_keys(keys)
    for k, key in zip(known, keys):
        if key in stored:
            k.fingerprint_key = key
    return known


def _add_civitai_hashes(store, known: list[KnownModel]) -> None:
    """Hashes of the same files, or of the files of the model named by the old URL, from the
    crawl: one pass over the Civitai files, dictionaries in memory."""
    by_sha: dict[str, list[KnownModel]] = {}
    by_model: dict[str, list[KnownModel]] = {}
    for k in known:
        for sha in k.sha256:
            by_sha.setdefault(sha, []).append(k)
        if k.origin_model:
            by_model.setdefault(k.origin_model, []).append(k)
    if not by_sha and not by_model:
        return
    rows = (row for batch in store.hubs.iter_file_identities("civitai") for row in batch)
    for row in rows:
        models = {id(k): k for k in by_sha.get(row["sha256"], []) + by_model.get(row["model_remote_id"], [])}
        for k in models.values():
            added = []
            for kind, value, bucket in (("sha256", row["sha256"], k.sha256), ("autov3", row["autov3"], k.autov3)):
                if value and value not in bucket:
                    bucket.add(value)
                    added.append(kind)
            if added:
                k.sources.append(f"civitai crawl: file {row['remote_id']} ({row['name']}) of model "
                                 f"{row['model_remote_id']}: {', '.join(added)}")  # fmt: skip
