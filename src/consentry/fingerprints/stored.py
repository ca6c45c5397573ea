"""Fingerprints in the store: compute one for a file (choosing the registered base for a
checkpoint) and record it. Used by `consentry fingerprint` and by banks."""

from __future__ import annotations

import os
from pathlib import Path

from consentry.fingerprints.build import _FULL_KINDS, fingerprint_manifest, folder_component
from consentry.fingerprints.errors import FingerprintError
from consentry.fingerprints.model import Fingerprint, join_fingerprints
from consentry.formats import read_manifest
from consentry.identity.identify import ModelIdentity
from consentry.inspection.architecture import recognise


def peft_adapter_files(path: str | os.PathLike[str]) -> list[Path]:
    """A folder of per-component PEFT adapters (``unet/``, ``text_encoder/``, ``text_encoder_2/``
    each holding ``adapter_model.safetensors``, as ``save_pretrained`` writes them), or []."""
    folder = Path(path)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*/adapter_model.safetensors") if folder_component(p) is not None)


def compute_fingerprint(store, path: str | os.PathLike[str], base_name: str | None = None) -> Fingerprint:
    """Fingerprint a file; a full checkpoint is measured against ``--base`` or, if exactly one
    base of its family is registered, that one (said in the notes). A folder of PEFT adapters,
    one per component, is fingerprinted as the one model they make together."""
    adapters = peft_adapter_files(path)
    if adapters:
        fp = join_fingerprints([compute_fingerprint(store, a) for a in adapters], source=str(path))
        fp.notes.append(f"{len(adapters)} PEFT adapters joined: {', '.join(a.parent.name for a in adapters)}")
        return fp
    manifest = read_manifest(path)
    arch = recognise(manifest.tensors)
    base_manifest, note = None, None
    if arch.kind in _FULL_KINDS and arch.variant is None:
        if base_name is None:
            bases = [b for b in store.fingerprints.list_bases() if b.family == arch.family]
            if len(bases) == 1:
                base_name, note = bases[0].name, f"base {bases[0].name} chosen: the only registered {arch.family} base"
        if base_name is not None:
            base = store.fingerprints.get_base(base_name)
            if base is None:
                raise FingerprintError(f"no base model named {base_name!r} (see `consentry base list`)")
            base_manifest = read_manifest(base.path)
    try:
        fp = fingerprint_manifest(manifest, base_manifest, base_name=base_name, component=folder_component(path))
    except FingerprintError as exc:
        if note:  # say that the base was picked automatically, not by the user
            raise FingerprintError(f"{exc} ({note})") from exc
        raise
    fp.source = str(path)
    if note:
        fp.notes.append(note)
    return fp


HUB_FILE_PREFIX = "hub-file:"


def hub_file_key(hub: str, remote_id: str) -> str:
    """The row key of a hub file's fingerprint (beside local paths and ``bank-entry:<id>``)."""
    return f"{HUB_FILE_PREFIX}{hub}:{remote_id}"


def save_fingerprint(store, fp: Fingerprint, path: str | os.PathLike[str], *, identity: ModelIdentity | None = None,
                     key: str | None = None) -> int:  # fmt: skip
    """Record ``fp``; ``key`` (default: the file's absolute path) names the row, so a bank
    entry's fingerprint can live beside files fingerprinted by path."""
    from consentry.identity.identify import identify

    if identity is None and peft_adapter_files(path):  # a folder of adapters: no one file's hashes
        return put_fingerprint(store, fp, key or str(Path(path).resolve()), sha256=None)
    ident = identity or identify(path)
    hashes = ident.hashes.as_dict() if ident.hashes else {}
    return put_fingerprint(store, fp, key or str(Path(path).resolve()), sha256=hashes.get("sha256"),
                           content_hash=ident.content_hash)  # fmt: skip


def put_fingerprint(store, fp: Fingerprint, key: str, *, sha256: str | None, content_hash: str | None = None) -> int:
    """Record ``fp`` under ``key`` with the identity known for it (a remote file has no local path)."""
    return store.fingerprints.put(
        path=key, sha256=sha256, content_hash=content_hash, kind=fp.kind, family=fp.family, key_format=fp.key_format,
        base_name=fp.base, module_count=fp.module_count, version=fp.version, sketch=fp.to_bytes(), vector=fp.vector(),
    )  # fmt: skip


def register_base(store, name: str, path: str | os.PathLike[str], *, replace: bool = False):
    """Register a full checkpoint as base model ``name`` (what checkpoints are measured against).
    Register it in the precision it is distributed in. A name already given to another file is
    refused unless ``replace``: fingerprints made against the old base would silently stop
    being comparable with new ones."""
    from consentry.identity.identify import identify

    manifest = read_manifest(path)
    arch = recognise(manifest.tensors)
    if arch.kind not in _FULL_KINDS:
        raise FingerprintError(f"{path}: {arch.label()} is not a full model; a base must be a checkpoint")
    ident = identify(path)
    hashes = ident.hashes.as_dict() if ident.hashes else {}
    existing = store.fingerprints.get_base(name)
    if existing is not None and existing.sha256 != hashes.get("sha256") and not replace:
        raise FingerprintError(f"base {name!r} is already registered as another file ({existing.path}, SHA256 "
                               f"{(existing.sha256 or '?')[:12]}); give another name, or --replace to repoint it")  # fmt: skip
    store.fingerprints.add_base(name=name, path=str(Path(path).resolve()), sha256=hashes.get("sha256"),
                                content_hash=ident.content_hash, family=arch.family)  # fmt: skip
    return arch
