"""Multi-file models: diffusers folders and shard sets, read part by part into one manifest.

**Which files are read.** Every regular file in the folder (recursively, for diffusers) that is
named like weights (``.safetensors``, ``.bin``, ``.ckpt``, ``.pt``... see
:data:`WEIGHT_EXTENSIONS`) *or* whose first bytes carry a model/archive magic is read with
:func:`consentry.formats.read_manifest`: a ``.bin`` next to a ``.safetensors`` of the same
component is read too, because a loader may pick either. Shards named by a ``*.index*.json``
are read as a set and checked against its ``weight_map`` both ways. ``.model`` files that do
not sniff as a model are tokenizers and are skipped.

**Tensor names.** A shard set read on its own keeps its names unprefixed. In a folder each
*weight set* (one file, or one index and its shards) gets ``<component>[<tags>]/`` where
``<component>`` is the folder relative to the root (empty at the root) and ``<tags>`` says
which variant it is: the canonical ``diffusion_pytorch_model`` / ``model`` / ``pytorch_model``
``.safetensors`` set has no tag (``unet/conv_in.weight``); a variant adds it
(``unet[fp16]/...``), a non-safetensors format adds its extension (``unet[bin]/...``,
``unet[fp16.bin]/...``); any other file name is the tag itself
(``[v1-5-pruned.safetensors]/...``). Should two sets still collide, both use their file name.

**Safety policy.** Symlinks whose target leaves the folder are refused
(:class:`UnsafeModelError`), except a Hugging Face cache snapshot's links into its own
``blobs/``. A folder that carries code a loader can run is **quarantined**, never clean
(``untrusted-files.md`` §1.8 row 28): a ``.py`` file anywhere in it, ``auto_map`` in a
``config.json`` (transformers' ``trust_remote_code``), or a ``_class_name`` given as a
``[module, class]`` pair in ``model_index.json`` or a ``config.json`` (a custom pipeline or
component from outside diffusers). Such code runs only when a user opts in with
``trust_remote_code`` / ``custom_pipeline``, but users do opt in, and consentry cannot prove
the code harmless; the problem names every file and key found, and the weights are not read.
JSON side files are capped at ``limits.max_json_bytes`` and must not repeat keys.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from consentry.errors import MalformedModelError, ModelFileUnreadable, UnsafeModelError
from consentry.formats.limits import DEFAULT_LIMITS, ReadLimits
from consentry.formats.sniff import SNIFF_BYTES, sniff_bytes
from consentry.formats.tensors import Format, Manifest, TensorInfo

__all__ = ["CombinedManifest", "WEIGHT_EXTENSIONS", "read_diffusers", "read_sharded"]

WEIGHT_EXTENSIONS = frozenset({".safetensors", ".sft", ".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle", ".gguf", ".th"})
CANONICAL_BASES = frozenset({"diffusion_pytorch_model", "model", "pytorch_model"})
# Magic bytes that are a model whatever the file is called (protocol 0/1 pickles have no magic
# and are only caught through the extension).
_MAGIC_FORMATS = frozenset({Format.SAFETENSORS, Format.ZIP, Format.TORCH_LEGACY, Format.GGUF, Format.SEVEN_ZIP, Format.TAR})
# Weights in formats consentry does not read (yet): reported in notes, never silently dropped.
UNREAD_WEIGHT_EXTENSIONS = frozenset({".msgpack", ".onnx", ".onnx_data", ".h5", ".tflite", ".ot", ".npz", ".npy", ".pb", ".mlmodel", ".keras"})
MAX_FOLDER_FILES = 100_000
MAX_FOLDER_DEPTH = 16


@dataclass
class CombinedManifest(Manifest):
    """A manifest of several files; each tensor's bytes come from the part that owns it."""

    owners: dict[str, tuple[Manifest, TensorInfo]] = field(default_factory=dict, repr=False)

    def iter_tensor_bytes(self, tensor: TensorInfo, chunk_size: int = 1 << 22) -> Iterator[bytes]:
        part, original = self.owners[tensor.name]
        return part.iter_tensor_bytes(original, chunk_size)


@dataclass
class _WeightSet:
    """One loadable unit: a single weight file, or an index and its shards."""

    name: str  # file name of the weight file or of the index
    rel_dir: str  # posix path of its folder relative to the root ("" at the root)
    parts: list[tuple[str, Manifest]]  # (path relative to the root, manifest)
    tensors: list[tuple[str, Manifest, TensorInfo]]  # (unprefixed name, owning part, tensor)


# ---------------------------------------------------------------------------------------------
# Public readers


def read_sharded(path: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS) -> Manifest:
    """Read a shard set from its ``*.index.json`` (or a folder holding one) into one manifest.

    Given an index file, only that set is read and names stay unprefixed. Given a folder,
    every index and every other weight file in it is read; names stay unprefixed when it
    holds exactly one set, and are prefixed as in the module docstring otherwise.
    """
    p = Path(path)
    if p.is_dir():
        root = p
        sets, notes = _read_dir(root, root, limits)
        if not any(_is_index(s.name) for s in sets):
            raise MalformedModelError(p, "folder holds no *.index.json shard index")
        return _combine(root, Format.SHARDED, sets, notes, prefixed=len(sets) > 1)
    root = p.parent
    _check_inside(root, p, _allowed_roots(root))
    ws = _read_index_set(root, p, limits)
    return _combine(p, Format.SHARDED, [ws], [], prefixed=False)


def read_diffusers(folder: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS) -> Manifest:
    """Read every weight file of a diffusers folder (``model_index.json``) into one manifest."""
    root = Path(folder)
    index = _load_json(root / "model_index.json", limits, root)
    if not isinstance(index, dict):
        raise MalformedModelError(root / "model_index.json", "model_index.json is not a JSON object")
    notes: list[str] = []
    code: list[str] = []
    class_name = index.get("_class_name")
    if isinstance(class_name, list):
        code.append(f"model_index.json _class_name {_short(class_name)} names a custom pipeline (code from outside diffusers)")
    elif not isinstance(class_name, str):
        raise MalformedModelError(root / "model_index.json", "model_index.json has no string '_class_name'")
    sets, more_notes = _read_dir(root, root, limits, recursive=True, code=code)
    notes.extend(more_notes)
    if not sets:
        notes.append("diffusers folder holds no weight files")
    return _combine(root, Format.DIFFUSERS, sets, notes, prefixed=True)


# ---------------------------------------------------------------------------------------------
# Walking a folder


def _read_dir(
    root: Path, start: Path, limits: ReadLimits, recursive: bool = False, code: list[str] | None = None
) -> tuple[list[_WeightSet], list[str]]:
    """Find and read every weight set under ``start``; return the sets and notes.

    First the whole tree is walked and searched for code (see the module docstring; ``code``
    holds what the caller already found): any makes the folder quarantine before a weight file
    is opened. Then every weight set is read.
    """
    allowed = _allowed_roots(root)
    walked: list[tuple[Path, list[str]]] = []
    files_seen = 0
    for directory, files in _walk(root, start, allowed, recursive):
        files_seen += len(files)
        if files_seen > MAX_FOLDER_FILES:
            raise MalformedModelError(root, f"folder holds more than {MAX_FOLDER_FILES} files")
        walked.append((directory, files))
    found = list(code or []) + _find_code(root, walked, limits)
    if found:
        shown = "; ".join(found[:8]) + (f"; and {len(found) - 8} more" if len(found) > 8 else "")
        raise UnsafeModelError(root, f"folder carries code a loader can run (trust_remote_code / custom_pipeline): {shown}")

    notes: list[str] = []
    sets: list[_WeightSet] = []
    for directory, files in walked:
        rel_dir = directory.relative_to(root).as_posix() if directory != root else ""
        claimed: set[str] = set()
        for name in sorted(files):
            if _is_index(name):
                ws = _read_index_set(root, directory / name, limits)
                sets.append(ws)
                claimed.add(name)
                claimed.update(PurePosixPath(rel).name for rel, _ in ws.parts)
        for name in sorted(files):
            file = directory / name
            if name in claimed or not _is_weight_file(file):
                if file.suffix.lower() in UNREAD_WEIGHT_EXTENSIONS:
                    notes.append(f"{_rel(root, file)}: weights in a format consentry does not read; not inspected")
                continue
            from consentry.formats import read_manifest  # the dispatcher imports this module

            part = read_manifest(file, limits)
            rel = _rel(root, file)
            sets.append(_WeightSet(name, rel_dir, [(rel, part)], [(t.name, part, t) for t in part.tensors]))
    return sets, notes


def _find_code(root: Path, walked: list[tuple[Path, list[str]]], limits: ReadLimits) -> list[str]:
    """Every file and key in the walked tree through which a loader can run code."""
    found: list[str] = []
    for directory, files in walked:
        for name in sorted(files):
            file = directory / name
            if name.endswith(".py"):
                found.append(f"{_rel(root, file)} is a Python file")
            elif name == "config.json":
                config = _load_json(file, limits, root)
                if not isinstance(config, dict):
                    continue
                if "auto_map" in config:
                    found.append(f"{_rel(root, file)} has auto_map {_short(config['auto_map'])} (custom model code)")
                if isinstance(config.get("_class_name"), list):
                    found.append(f"{_rel(root, file)} _class_name {_short(config['_class_name'])} names a class from outside diffusers")
    return found


def _short(value: Any, limit: int = 80) -> str:
    """A JSON value for a one-line message."""
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _walk(root: Path, start: Path, allowed: list[Path], recursive: bool) -> Iterator[tuple[Path, list[str]]]:
    """Yield (directory, regular file names); refuse links leaving the folder; never follow
    directory links (their targets are inside and get walked under their real name)."""
    pending = [(start, 0)]
    while pending:
        directory, depth = pending.pop()
        if depth > MAX_FOLDER_DEPTH:
            raise MalformedModelError(root, f"folder nests more than {MAX_FOLDER_DEPTH} levels deep")
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise ModelFileUnreadable(directory, f"cannot read: {exc.strerror or exc}") from None
        files: list[str] = []
        subdirs: list[Path] = []
        for entry in entries:
            path = Path(entry.path)
            if entry.is_symlink():
                target = _check_inside(root, path, allowed)
                if target.is_dir():
                    continue
                if target.is_file():
                    files.append(entry.name)
                continue
            if entry.is_dir(follow_symlinks=False):
                if entry.name.startswith("."):  # .git, .cache (huggingface_hub's download metadata)
                    continue
                subdirs.append(path)
            elif entry.is_file(follow_symlinks=False):
                files.append(entry.name)
        yield directory, files
        if recursive:
            pending.extend((d, depth + 1) for d in reversed(subdirs))


def _allowed_roots(root: Path) -> list[Path]:
    """The folder itself and, for a Hugging Face cache snapshot, its repo's ``blobs/``."""
    real = root.resolve()
    allowed = [real]
    for ancestor in [real, *real.parents]:
        if ancestor.parent.name == "snapshots" and ancestor.parent.parent.name.startswith("models--"):
            allowed.append(ancestor.parent.parent / "blobs")
            break
    return allowed


def _check_inside(root: Path, path: Path, allowed: list[Path]) -> Path:
    """Resolve ``path`` (following links) and refuse it unless it stays inside ``allowed``."""
    target = path.resolve()
    if not any(target == a or target.is_relative_to(a) for a in allowed):
        raise UnsafeModelError(path, f"symlink points outside the model folder (to {target})")
    return target


def _is_index(name: str) -> bool:
    return name.endswith(".json") and ".index" in name and (".safetensors" in name or ".bin" in name)


def _is_weight_file(file: Path) -> bool:
    if file.suffix.lower() in WEIGHT_EXTENSIONS:
        return True
    try:
        with open(file, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
            size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        raise ModelFileUnreadable(file, f"cannot read: {exc.strerror or exc}") from None
    fmt = sniff_bytes(head, size)
    return fmt in _MAGIC_FORMATS or (fmt is Format.PICKLE and head[:1] == b"\x80")


def _rel(root: Path, file: Path) -> str:
    return file.relative_to(root).as_posix()


# ---------------------------------------------------------------------------------------------
# Shard sets


def _read_index_set(root: Path, index_path: Path, limits: ReadLimits) -> _WeightSet:
    """Read an index and each shard it names; check the weight_map against the shards."""
    from consentry.formats import read_manifest  # the dispatcher imports this module

    data = _load_json(index_path, limits, root)
    if not isinstance(data, dict) or not isinstance(data.get("weight_map"), dict):
        raise MalformedModelError(index_path, "shard index has no 'weight_map' object")
    weight_map: dict[str, Any] = data["weight_map"]
    folder = index_path.parent
    allowed = _allowed_roots(root)
    shard_names: list[str] = []
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str):
            raise MalformedModelError(index_path, f"weight_map entry {tensor!r} is not a file name: {shard!r}")
        if shard not in shard_names:
            _check_shard_name(index_path, shard)
            shard_names.append(shard)
    if not shard_names:
        raise MalformedModelError(index_path, "shard index weight_map is empty")
    if len(weight_map) > limits.max_tensors:
        raise MalformedModelError(index_path, f"weight_map lists {len(weight_map)} tensors, more than the limit of {limits.max_tensors}")

    parts: list[tuple[str, Manifest]] = []
    tensors: list[tuple[str, Manifest, TensorInfo]] = []
    for shard in sorted(shard_names):
        shard_path = folder / shard
        if shard_path.is_symlink():
            _check_inside(root, shard_path, allowed)
        if not shard_path.is_file():
            raise MalformedModelError(index_path, f"shard {shard!r} named in weight_map is missing")
        part = read_manifest(shard_path, limits)
        parts.append((_rel(root, shard_path), part))
        for t in part.tensors:
            listed = weight_map.get(t.name)
            if listed != shard:
                where = f"lists it under {listed!r}" if listed is not None else "does not list it"
                raise MalformedModelError(index_path, f"shard {shard!r} holds tensor {t.name!r} but weight_map {where}")
            tensors.append((t.name, part, t))
    held = {t.name for _, part in parts for t in part.tensors}
    for tensor, shard in weight_map.items():
        if tensor not in held:
            raise MalformedModelError(index_path, f"weight_map lists tensor {tensor!r} in shard {shard!r}, which does not hold it")
    rel_dir = folder.relative_to(root).as_posix() if folder != root else ""
    return _WeightSet(index_path.name, rel_dir, parts, tensors)


def _check_shard_name(index_path: Path, shard: str) -> None:
    """Shards are plain file names next to their index: no paths, no parent, no drive."""
    bad = (
        not shard
        or shard in (".", "..")
        or "/" in shard
        or "\\" in shard
        or "\x00" in shard
        or ":" in shard
    )
    if bad:
        raise UnsafeModelError(index_path, f"weight_map names shard {shard!r}, which is not a plain file name in the index's folder")


# ---------------------------------------------------------------------------------------------
# Combining


def _set_tag(name: str) -> str:
    """The ``[tags]`` of a weight set (see the module docstring); "" for the canonical set."""
    stem = name[: -len(".json")] if name.endswith(".json") else name
    tokens = stem.split(".")
    base, rest = tokens[0], [t for t in tokens[1:] if t != "index"]
    ext = next((t for t in rest if t in ("safetensors", "bin")), None) if _is_index(name) else (rest[-1] if rest else None)
    if base not in CANONICAL_BASES or ext is None:
        return f"[{name}]"
    variant = [t for t in rest if t != ext] if _is_index(name) else rest[:-1]
    tags = variant + ([] if ext == "safetensors" else [ext])
    return f"[{'.'.join(tags)}]" if tags else ""


def _combine(path: Path, fmt: Format, sets: list[_WeightSet], notes: list[str], *, prefixed: bool) -> Manifest:
    prefixes = [_prefix(ws.rel_dir, _set_tag(ws.name)) if prefixed else "" for ws in sets]
    if prefixed:
        for i, prefix in enumerate(prefixes):
            if prefixes.count(prefix) > 1:
                clashing = [j for j, q in enumerate(prefixes) if q == prefix]
                for j in clashing:
                    prefixes[j] = _prefix(sets[j].rel_dir, f"[{sets[j].name}]")
    manifest = CombinedManifest(path=path, format=fmt, notes=list(notes))
    for ws, prefix in zip(sets, prefixes):
        manifest.parts.extend(ws.parts)
        for name, part, t in ws.tensors:
            full = prefix + name
            if full in manifest.owners:
                raise MalformedModelError(path, f"tensor name {full!r} occurs twice in the folder")
            info = TensorInfo(name=full, dtype=t.dtype, shape=t.shape, path=t.path, file_range=t.file_range)
            manifest.tensors.append(info)
            manifest.owners[full] = (part, t)
        for rel, part in ws.parts:
            manifest.notes.extend(f"{rel}: {note}" for note in part.notes)
    return manifest


def _prefix(rel_dir: str, tag: str) -> str:
    return f"{rel_dir}{tag}/" if rel_dir or tag else ""


# ---------------------------------------------------------------------------------------------
# JSON side files


def _load_json(path: Path, limits: ReadLimits, root: Path) -> Any:
    """Parse a bounded JSON side file, refusing duplicate keys (the last would win silently)."""
    if path.is_symlink():
        _check_inside(root, path, _allowed_roots(root))
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise MalformedModelError(path, "not a regular file")
            if st.st_size > limits.max_json_bytes:
                raise MalformedModelError(path, f"JSON file is {st.st_size} bytes, more than the limit of {limits.max_json_bytes}")
            raw = fh.read(limits.max_json_bytes + 1)
    except FileNotFoundError:
        raise MalformedModelError(path, "file is missing") from None
    except OSError as exc:
        raise ModelFileUnreadable(path, f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > limits.max_json_bytes:
        raise MalformedModelError(path, f"JSON file is more than the limit of {limits.max_json_bytes} bytes")

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
            raise MalformedModelError(path, f"duplicate key {dup!r} in JSON")
        return obj

    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=hook)
    except UnicodeDecodeError:
        raise MalformedModelError(path, "JSON file is not valid UTF-8") from None
    except RecursionError:
        raise MalformedModelError(path, "JSON is nested too deeply") from None
    except ValueError as exc:
        raise MalformedModelError(path, f"not valid JSON: {exc}") from None
