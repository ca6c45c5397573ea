"""``consentry index``: walk a folder tree, identify every model file, record it in the store.

Model files are found by their magic bytes, not their names. The index is incremental (a file
whose size, mtime and inode are unchanged is skipped) and resumable (each file is committed on
its own, so a killed run loses at most the file in flight). A bad file is recorded as
``rejected`` or ``quarantine`` with its reason, and the walk carries on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from consentry.errors import ModelFileUnreadable
from consentry.formats.limits import DEFAULT_LIMITS, ReadLimits
from consentry.formats.sniff import MODEL_EXTENSIONS, sniff_path
from consentry.formats.tensors import Format
from consentry.inspection.report import inspect_model
from consentry.store import Store
from consentry.store.records import utc_now


@dataclass
class Candidate:
    path: Path
    size: int
    mtime_ns: int
    inode: int
    device: int


@dataclass
class IndexResult:
    seen: int = 0
    indexed: int = 0
    unchanged: int = 0
    flagged: int = 0
    bytes_hashed: int = 0
    flagged_files: list[tuple[str, str, str]] = field(default_factory=list)  # path, verdict, problem

    def counts(self) -> dict[str, int]:
        return {"seen": self.seen, "indexed": self.indexed, "unchanged": self.unchanged, "flagged": self.flagged, "bytes": self.bytes_hashed}


def walk_candidates(root: Path) -> Iterator[Candidate]:
    """Every regular file under ``root`` (symlinks are not followed), sorted for stable runs,
    and every diffusers folder or shard set as one more candidate: a model made of files."""
    inside_bundle: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        here = Path(dirpath)
        if not any(here.is_relative_to(b) for b in inside_bundle):
            bundle = _bundle_candidate(here)
            if bundle is not None:
                inside_bundle.append(here)
                yield bundle
        for name in sorted(filenames):
            path = Path(dirpath) / name
            try:
                st = path.lstat()
            except OSError:
                continue
            if not os.path.isfile(path) or path.is_symlink():
                continue
            yield Candidate(path=path, size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino, device=st.st_dev)


def _bundle_candidate(folder: Path) -> Candidate | None:
    """A diffusers folder / shard set, with size and mtime summed over its files so that a
    change to any part re-indexes the whole."""
    try:
        if sniff_path(folder) not in (Format.DIFFUSERS, Format.SHARDED):
            return None
        size, mtime = 0, 0
        for dirpath, _dirs, files in os.walk(folder, followlinks=False):
            for name in files:
                st = (Path(dirpath) / name).lstat()
                size += st.st_size
                mtime = max(mtime, st.st_mtime_ns)
        st = folder.stat()
    except OSError:
        return None
    return Candidate(path=folder, size=size, mtime_ns=mtime, inode=st.st_ino, device=st.st_dev)


def is_model_candidate(path: Path) -> tuple[bool, Format | None]:
    """A file is indexed if its bytes sniff as a model container, or its name claims to be one
    (then a mismatch is recorded as rejected: a PNG renamed .ckpt must not vanish silently)."""
    try:
        fmt = sniff_path(path)
    except OSError:
        return path.suffix.lower() in MODEL_EXTENSIONS, None
    if fmt not in (Format.UNKNOWN, Format.EMPTY):
        return True, fmt
    return path.suffix.lower() in MODEL_EXTENSIONS, fmt


def index_tree(
    store: Store,
    root: str | os.PathLike[str],
    *,
    limits: ReadLimits = DEFAULT_LIMITS,
    workers: int | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_file: Callable[[Candidate, str], None] | None = None,
) -> IndexResult:
    """Index every model file under ``root`` (a folder or a single file) into ``store``.

    ``on_start(files, total_bytes)`` is called once candidates are known, ``on_file(candidate,
    status)`` after each file (status: indexed / unchanged / skipped / flagged).
    """
    root_path = Path(root).resolve()
    candidates = [c for c in walk_candidates(root_path)] if root_path.is_dir() else list(_single(root_path))
    result = IndexResult()
    run_id = store.start_run(str(root_path))
    if on_start:
        on_start(len(candidates), sum(c.size for c in candidates))
    for candidate in candidates:
        status = _index_one(store, candidate, limits, workers, result)
        if on_file:
            on_file(candidate, status)
    store.finish_run(run_id, result.counts())
    return result


def _single(path: Path) -> Iterator[Candidate]:
    st = path.stat()
    yield Candidate(path=path, size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino, device=st.st_dev)


def _index_one(store: Store, c: Candidate, limits: ReadLimits, workers: int | None, result: IndexResult) -> str:
    key = str(c.path)
    if store.file_stat(key) == (c.size, c.mtime_ns, c.inode):
        result.seen += 1
        result.unchanged += 1
        return "unchanged"
    wanted, _fmt = is_model_candidate(c.path)
    if not wanted:
        return "skipped"
    result.seen += 1
    report = inspect_model(c.path, limits=limits, workers=workers)
    ident = report.identity
    hashes = ident.hashes.as_dict() if ident.hashes else {}
    manifest = ident.manifest
    store.upsert_file(
        {
            "path": key,
            "size": c.size,  # as stat saw it: the incremental skip compares against this
            # A file the OS would not let us read (permissions) has no identity yet: no mtime is
            # recorded, so the next run tries it again instead of skipping it as unchanged.
            "mtime_ns": None if isinstance(ident.error, ModelFileUnreadable) else c.mtime_ns,
            "inode": c.inode,
            "device": c.device,
            "format": ident.format,
            "verdict": str(ident.verdict),
            "problem": ident.problem,
            "sha256": hashes.get("sha256"),
            "autov1": hashes.get("autov1"),
            "autov3": hashes.get("autov3"),
            "crc32": hashes.get("crc32"),
            "crc32_conventional": hashes.get("crc32_conventional"),
            "blake3": hashes.get("blake3"),
            "content_hash": ident.content_hash,
            "architecture": report.architecture.label() if report.architecture else None,
            "tensor_count": len(manifest.tensors) if manifest else None,
            "parameter_count": manifest.parameter_count if manifest else None,
            "metadata_json": manifest.metadata if manifest else None,
            "inspect_json": report.as_json(),
            "indexed_at": utc_now(),
        }
    )
    result.indexed += 1
    result.bytes_hashed += c.size
    if ident.problem:
        result.flagged += 1
        result.flagged_files.append((key, str(ident.verdict), ident.problem))
        return "flagged"
    return "indexed"
