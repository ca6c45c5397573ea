"""File identity: the six hub hashes and ``content_hash`` of one model, in one read.

Raw-file hashes are computed even when the reader refuses the file ("hash first, parse
second"): a malicious or malformed upload still gets an identity for the moderation record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consentry.errors import ModelFileError, ModelFileUnreadable, UnsafeModelError
from consentry.formats import read_manifest, sniff_path
from consentry.formats.limits import DEFAULT_LIMITS, ReadLimits
from consentry.formats.tensors import Format, Manifest, Verdict
from consentry.identity.content_hash import combine
from consentry.identity.hashes import FileHashes, hash_file, tensor_digests_for

HASH_KEYS = ("sha256", "autov1", "autov2", "autov3", "autov3_short", "crc32", "crc32_conventional", "blake3")
IMAGE_KEYS = ("pdq", "pdq_quality", "width", "height")


@dataclass
class ModelIdentity:
    path: str
    size: int | None
    format: str
    verdict: Verdict
    problem: str | None = None
    hashes: FileHashes | None = None
    content_hash: str | None = None
    manifest: Manifest | None = field(default=None, repr=False)
    error: ModelFileError | None = field(default=None, repr=False)
    # What similarity signals need of a file that was computed while identifying it: for an
    # image (identify_image), its PDQ hashes and size. Empty for model files.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def as_json(self) -> dict[str, Any]:
        """The ``consentry hash --json`` object (keys documented in the README)."""
        row: dict[str, Any] = {"path": self.path, "size": self.size, "format": self.format}
        hashes = self.hashes.as_dict() if self.hashes else {}
        for key in HASH_KEYS:
            row[key] = hashes.get(key)
        row["content_hash"] = self.content_hash
        row["verdict"] = str(self.verdict)
        row["problem"] = self.problem
        for key in IMAGE_KEYS:  # images only
            if key in self.extra:
                row[key] = self.extra[key]
        return row


def identify(path: str | os.PathLike[str], *, limits: ReadLimits = DEFAULT_LIMITS, workers: int | None = None) -> ModelIdentity:
    """Read, validate and hash one model file or folder. Never raises for bad model input:
    the verdict and problem say what was wrong (the caller decides how loud to be)."""
    p = Path(path)
    manifest: Manifest | None = None
    error: ModelFileError | None = None
    try:
        manifest = read_manifest(p, limits)
    except ModelFileError as exc:
        error = exc
    if manifest is not None:
        fmt = str(manifest.format)
    else:  # never re-open what the reader could not (a FIFO would block)
        fmt = str(Format.UNKNOWN) if isinstance(error, ModelFileUnreadable) else _sniffed_format(p)

    if p.is_dir():
        return _identify_folder(p, manifest, error, fmt, workers)

    hashes: FileHashes | None = None
    if isinstance(error, ModelFileUnreadable):
        return ModelIdentity(path=str(p), size=_size_or_none(p), format=fmt, verdict=Verdict(error.verdict),
                             problem=error.problem, error=error)  # fmt: skip
    try:
        data_start = manifest.data_start if manifest and manifest.format is Format.SAFETENSORS else None
        if manifest is None and fmt == str(Format.SAFETENSORS):
            data_start = _length_field_data_start(p)  # rejected, but a hub still has its AutoV3
        own = [t for t in manifest.tensors if t.file_range is not None and t.path == p] if manifest else []
        crc_ranges = manifest.crc_ranges if manifest else []
        try:
            hashes = hash_file(p, data_start=data_start, tensors=own, crc_ranges=crc_ranges, workers=workers)
        except ValueError:
            if manifest is not None:
                raise
            hashes = hash_file(p, workers=workers)  # the file shrank below 8 + N since it was read
    except OSError as exc:
        unreadable = ModelFileUnreadable(p, f"cannot read: {exc.strerror or exc}")
        error = error or unreadable
    if hashes is not None and manifest is not None and error is None:
        error = _crc_mismatch(p, manifest, hashes)
    identity = ModelIdentity(
        path=str(p),
        size=hashes.size if hashes else _size_or_none(p),
        format=fmt,
        verdict=Verdict(error.verdict) if error else Verdict.CLEAN,
        problem=error.problem if error else None,
        hashes=hashes,
        manifest=manifest,
        error=error,
    )
    if manifest is not None and hashes is not None and error is None:
        identity.content_hash = _content_hash(manifest, dict(hashes.tensor_digests))
    return identity


def identify_image(path: str | os.PathLike[str], *, workers: int | None = None) -> ModelIdentity | None:
    """An image file (JPEG, PNG, WebP, GIF, BMP or TIFF by its magic bytes) identified for banks,
    or None for anything else (a model container's bytes win: it is never taken for an image).

    It gets the file hashes (an exact copy matches by SHA-256) and, in ``extra``, its size and
    its 8 dihedral PDQ hashes with their quality for the ``pdq`` similarity signal. An image
    that cannot be decoded (corrupt, a decompression bomb) is ``rejected`` with the reason and
    keeps its file hashes; without the ``likeness`` extra it is hashed but has no PDQ."""
    from consentry.images.sniff import image_format_of

    p = Path(path)
    if p.is_dir():
        return None
    fmt = image_format_of(p)
    if fmt is None or _sniffed_format(p) not in (str(Format.UNKNOWN), str(Format.EMPTY)):
        return None
    try:
        hashes = hash_file(p, workers=workers)
    except OSError as exc:
        return ModelIdentity(path=str(p), size=_size_or_none(p), format=fmt.lower(), verdict=Verdict.REJECTED,
                             problem=f"cannot read: {exc.strerror or exc}")  # fmt: skip
    identity = ModelIdentity(path=str(p), size=hashes.size, format=fmt.lower(), verdict=Verdict.CLEAN, hashes=hashes)
    from consentry.images.pdq import pdq_dihedral_with_quality
    from consentry.images.reading import ImageError, load_image

    try:
        rgb = load_image(p)
        dihedral, quality = pdq_dihedral_with_quality(rgb)
    except ImageError as exc:
        identity.verdict, identity.problem = Verdict.REJECTED, exc.problem
        identity.extra["pdq_unavailable"] = exc.problem
        return identity
    except ImportError as exc:  # the likeness extra (Pillow, pdqhash) is not installed
        identity.extra["pdq_unavailable"] = f"image hashing not installed ({exc.name}): pip install 'consentry[likeness]'"
        return identity
    identity.extra.update(width=int(rgb.shape[1]), height=int(rgb.shape[0]), pdq=dihedral[0], pdq_quality=quality,
                          pdq_dihedral=dihedral)  # fmt: skip
    return identity


def _identify_folder(p: Path, manifest: Manifest | None, error: ModelFileError | None, fmt: str, workers: int | None) -> ModelIdentity:
    """A diffusers folder or shard set has no file hashes of its own, only a content hash."""
    identity = ModelIdentity(
        path=str(p),
        size=None,
        format=fmt,
        verdict=Verdict(error.verdict) if error else Verdict.CLEAN,
        problem=error.problem if error else None,
        manifest=manifest,
        error=error,
    )
    if manifest is None:
        return identity
    digests: dict[str, bytes] = {}
    total = 0
    by_file: dict[Path, list] = {}
    for tensor in manifest.tensors:
        if tensor.file_range is not None and tensor.path is not None:
            by_file.setdefault(tensor.path, []).append(tensor)
    crcs_for: dict[Path, tuple[str, Manifest]] = {}
    for rel, part in manifest.parts:
        if part.crc_ranges:
            crcs_for[part.path] = (rel, part)
            by_file.setdefault(part.path, [])
    for file_path, tensors in by_file.items():
        rel, part = crcs_for.get(file_path, (None, None))
        file_hashes = hash_file(file_path, tensors=tensors, crc_ranges=part.crc_ranges if part else (), workers=workers)
        total += file_hashes.size
        digests.update(file_hashes.tensor_digests)
        mismatch = _crc_mismatch(file_path, part, file_hashes) if part else None
        if mismatch is not None:  # a stored member of one part fails its CRC: the folder is quarantine
            identity.verdict, identity.problem, identity.error = Verdict(mismatch.verdict), f"{rel}: {mismatch.problem}", mismatch
            return identity
    identity.size = total
    identity.content_hash = _content_hash(manifest, digests)
    return identity


def _content_hash(manifest: Manifest, digests: dict[str, bytes]) -> str | None:
    if manifest.format is Format.GGUF:
        return None  # tensors not read yet: no content hash rather than a wrong one
    missing = [t for t in manifest.tensors if t.name not in digests]
    if missing:
        digests.update(tensor_digests_for(manifest, missing))
    return combine(manifest.tensors, digests)


def _crc_mismatch(p: Path, manifest: Manifest, hashes: FileHashes) -> ModelFileError | None:
    """A stored zip member whose bytes do not match its CRC-32 (checked in the hashing pass).

    torch would load it regardless (its zip reader skips CRC checks), so like every zip that
    torch accepts and the strict reader does not, it is quarantine, not clean.
    """
    for what, _start, _end, expected in manifest.crc_ranges:
        got = hashes.range_crcs.get(what)
        if got is not None and got != expected:
            return UnsafeModelError(p, f"zip member {what!r} fails its CRC-32 check (stored {expected:08x}, computed {got:08x})")
    return None


def _length_field_data_start(p: Path) -> int | None:
    """``8 + N`` from a safetensors file's length field alone, if it lies within the file.

    A hub derives AutoV3 (SHA-256 of ``file[8+N:]``) from the length field without validating
    the header (Civitai's HashTask, kohya's ``addnet_hash_safetensors``), so a rejected file,
    e.g. a known LoRA with a polyglot appended, still gets the AutoV3 it is listed under.
    """
    try:
        with open(p, "rb") as fh:
            prefix = fh.read(8)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return None
    if len(prefix) < 8:
        return None
    start = 8 + int.from_bytes(prefix, "little")
    return start if start <= size else None


def _sniffed_format(p: Path) -> str:
    try:
        return str(sniff_path(p))
    except OSError:
        return str(Format.UNKNOWN)


def _size_or_none(p: Path) -> int | None:
    try:
        return p.stat().st_size
    except OSError:
        return None
