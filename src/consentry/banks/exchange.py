"""consentry's bank exchange format: one bank, losslessly, as JSON Lines.

Line 1 describes the bank::

    {"format":"consentry-bank","version":1,"bank":{"name":...,"kind":"positive"|"negative",
     "labels":[...],"description":...,"source":...,"enabled":true,"thresholds":{...},"created_at":...}}

then one line per entry, in the order the entries were added::

    {"name":...,"url":...,"labels":[...],"note":...,"provenance":{...},"added_at":...,
     "signals":{"sha256":"...","autov3":"..."},"fingerprint":"<base64>"}

``fingerprint`` is present when the entry has a weight fingerprint: the base64 of
``consentry.fingerprints.model.Fingerprint.to_bytes()`` (magic ``CFP1``, u32 header
length, JSON header, float32 sketches), so converted and merged copies match in the importing
store too.

UTF-8, ``\\n`` line ends, compact separators, keys in the order shown, signal types sorted,
values in the signal type's canonical form. Importing keeps every field as written (name, url,
labels, note, provenance, added_at, signals, fingerprint; the bank's settings and created_at when the bank is
created), so export → import into another store → export gives the same bytes. What the
importing store adds lives outside the entry: its ``bank_imports`` record (file name, actor,
time), linked by ``bank_entries.import_id``. A bank's ``updated_at`` is not exported.

Readers must ignore keys they do not know (later versions may add some); a file whose
``version`` is higher than this one is refused.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import IO, Any, Iterator

from consentry.banks.importing import (
    Candidate, ImportContext, ImportFormatError, ImportReport, Progress, RowParser, RowResult, Source, _json_lines,
    first_line, open_source, run_import,
)  # fmt: skip
from consentry.banks.signals import signal_registry
from consentry.errors import HashFormatError
from consentry.store import Store
from consentry.store.banks import ENTRY_FINGERPRINT_KEY, Bank
from consentry.store.records import from_json, to_json

FORMAT = "consentry-bank"
VERSION = 1
BANK_KEYS = ("name", "kind", "labels", "description", "source", "enabled", "thresholds", "created_at")
PAGE = 2_000  # entries per query while exporting: memory stays constant whatever the bank's size


def _line(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def export_bank(store: Store, name: str, out: IO[str]) -> int:
    """Write bank ``name`` to ``out`` in the exchange format; returns the number of entries.

    Streams page by page (keyset on entry id). Entries of an import that commits during the
    export are all in it or all out of it: they get ids above every existing one."""
    bank = store.banks.get(name)
    header = {k: v for k, v in bank.as_dict().items() if k in BANK_KEYS}
    out.write(_line({"format": FORMAT, "version": VERSION, "bank": {k: header[k] for k in BANK_KEYS}}))
    db, last, count = store.db, 0, 0
    while True:
        rows = db.query(
            "SELECT id, name, url, labels, note, provenance, added_at FROM bank_entries WHERE bank_id = ? AND id > ?"
            " ORDER BY id LIMIT ?",
            (bank.id, last, PAGE),
        )
        if not rows:
            return count
        signals: dict[int, dict[str, str]] = {r["id"]: {} for r in rows}
        for s in db.query(
            "SELECT entry_id, signal_type, value FROM bank_signals WHERE bank_id = ? AND entry_id > ? AND entry_id <= ?",
            (bank.id, last, rows[-1]["id"]),
        ):
            if s["entry_id"] in signals:
                signals[s["entry_id"]][s["signal_type"]] = s["value"]
        fingerprints = _fingerprints(store, [r["id"] for r in rows])
        for r in rows:
            entry = {
                "name": r["name"], "url": r["url"], "labels": from_json(r["labels"], []), "note": r["note"],
                "provenance": from_json(r["provenance"], {}), "added_at": r["added_at"],
                "signals": dict(sorted(signals[r["id"]].items())),
            }  # fmt: skip
            if r["id"] in fingerprints:
                entry["fingerprint"] = base64.b64encode(fingerprints[r["id"]]).decode("ascii")
            out.write(_line(entry))
        count += len(rows)
        last = rows[-1]["id"]


def _fingerprints(store: Store, entry_ids: list[int]) -> dict[int, bytes]:
    """``{entry id: Fingerprint.to_bytes()}`` of the entries that have a fingerprint."""
    found = store.fingerprints.sketches([f"{ENTRY_FINGERPRINT_KEY}{i}" for i in entry_ids])
    return {int(key[len(ENTRY_FINGERPRINT_KEY):]): blob for key, blob in found.items()}


def read_header(line: bytes) -> dict[str, Any] | None:
    """The exchange header on ``line``, or None if the line is not one."""
    if b'"consentry-bank"' not in line:
        return None
    try:
        obj = json.loads(line.decode("utf-8"))
    except ValueError:
        return None
    return obj if isinstance(obj, dict) and obj.get("format") == FORMAT else None


def is_exchange_header(line: bytes) -> bool:
    return read_header(line) is not None


def _bank_settings(header: dict[str, Any]) -> dict[str, Any]:
    version = header.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ImportFormatError(f"exchange format version {version!r} is not supported (this consentry reads up to {VERSION})")
    bank = header.get("bank")
    if not isinstance(bank, dict) or not isinstance(bank.get("name"), str):
        raise ImportFormatError("exchange header has no bank settings")
    if bank.get("kind", "positive") not in ("positive", "negative"):
        raise ImportFormatError(f"exchange header: bank kind {bank.get('kind')!r} is neither positive nor negative")
    return bank


def _entry_rows(stream: IO[bytes]) -> RowParser:
    registry = signal_registry()

    def candidate(number: int, obj: Any) -> RowResult:
        if not isinstance(obj, dict):
            return f"malformed row: expected a JSON object, got {type(obj).__name__}"
        raw = obj.get("signals")
        if not isinstance(raw, dict) or not raw:
            return "no hash in this row (the entry has no signals)"
        signals = {}
        for signal_type, value in raw.items():
            try:
                kind = registry.get(str(signal_type))
                signals[kind.name] = kind.normalise(str(value))
            except HashFormatError as exc:
                return str(exc)
        fields = {k: obj.get(k) for k in ("name", "url", "note", "added_at")}
        if any(v is not None and not isinstance(v, str) for v in fields.values()):
            return "malformed row: name, url, note and added_at must be text"
        labels, provenance = obj.get("labels") or [], obj.get("provenance") or {}
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels) or not isinstance(provenance, dict):
            return "malformed row: labels must be a list of text and provenance an object"
        fingerprint = None
        if obj.get("fingerprint") is not None:
            from consentry.fingerprints.errors import FingerprintError
            from consentry.fingerprints.model import Fingerprint

            try:
                fingerprint = base64.b64decode(str(obj["fingerprint"]), validate=True)
                Fingerprint.from_bytes(fingerprint)  # refused here, row by row, rather than half-way through the import
            except (ValueError, KeyError, TypeError, FingerprintError, struct.error):
                return "malformed fingerprint (expected the base64 of a consentry fingerprint)"
        return Candidate(row=number, signals=signals, labels_json=to_json(labels), provenance_json=to_json(provenance),
                         fingerprint=fingerprint, **fields)

    def parse(_context: ImportContext) -> Iterator[tuple[int, RowResult]]:
        for number, obj in _json_lines(stream):
            if number > 1:  # line 1 is the header
                yield number, obj if isinstance(obj, str) else candidate(number, obj)

    return parse


def import_exchange(store: Store, source: Source, *, bank_name: str | None = None, actor: str | None = None,
                    source_name: str | None = None, strict: bool = False, progress: Progress | None = None) -> ImportReport:  # fmt: skip
    """Import an exchange file into ``bank_name`` (default: the bank named in the file).

    A missing bank is created with the file's settings and created_at; an existing one keeps
    its settings and receives the entries not already in it (the rest count as duplicates)."""
    with open_source(source, source_name) as (stream, name):
        header = read_header(first_line(stream))
        if header is None:
            raise ImportFormatError("not a consentry bank exchange file (its first line is no consentry-bank header)")
        settings = _bank_settings(header)
        target = bank_name or settings["name"]
        create = {k: settings[k] for k in ("kind", "labels", "description", "source", "enabled", "thresholds") if k in settings}

        def on_bank(bank: Bank, created: bool, report: ImportReport) -> None:
            if created and isinstance(settings.get("created_at"), str):
                store.db.execute("UPDATE banks SET created_at = ? WHERE id = ?", (settings["created_at"], bank.id))
            elif not created:
                report.notes.append(f"bank {bank.name!r} already existed: its settings were kept, entries merged")

        return run_import(store, target, _entry_rows(stream), fmt="consentry-bank", source_name=name, actor=actor,
                          create=create, strict=strict, progress=progress, on_bank=on_bank)  # fmt: skip
