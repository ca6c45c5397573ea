"""``consentry inspect``: what a model file is, in terms a moderator can read."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

from consentry.formats.limits import DEFAULT_LIMITS, ReadLimits
from consentry.identity.identify import ModelIdentity, identify
from consentry.inspection.architecture import Architecture, recognise
from consentry.inspection.metadata import DecodedMetadata, decode_metadata


@dataclass
class InspectReport:
    identity: ModelIdentity
    architecture: Architecture | None
    metadata: DecodedMetadata | None

    def as_json(self) -> dict[str, Any]:
        ident = self.identity
        manifest = ident.manifest
        row: dict[str, Any] = {
            "path": ident.path,
            "format": ident.format,
            "size": ident.size,
            "verdict": str(ident.verdict),
            "problem": ident.problem,
            "hashes": {k: v for k, v in ident.as_json().items() if k not in ("path", "size", "format", "verdict", "problem")},
        }
        if manifest is not None:
            row["tensor_count"] = len(manifest.tensors)
            row["parameter_count"] = manifest.parameter_count
            row["dtypes"] = dict(Counter(t.dtype for t in manifest.tensors).most_common())
            row["notes"] = list(manifest.notes)
            row["parts"] = [name for name, _ in manifest.parts]
            if manifest.extras:
                row["extras"] = dict(list(manifest.extras.items())[:50])
        row["architecture"] = self.architecture.as_dict() if self.architecture else None
        row["metadata"] = self.metadata.as_dict() if self.metadata else None
        return row


def inspect_model(path: str | os.PathLike[str], *, limits: ReadLimits = DEFAULT_LIMITS, workers: int | None = None) -> InspectReport:
    """Identify the file, then recognise its architecture and decode its training metadata."""
    identity = identify(path, limits=limits, workers=workers)
    manifest = identity.manifest
    if manifest is None:
        return InspectReport(identity=identity, architecture=None, metadata=None)
    architecture = recognise(manifest.tensors)
    autov3 = identity.hashes.autov3 if identity.hashes else None
    metadata = decode_metadata(_all_metadata(manifest), autov3=autov3)
    return InspectReport(identity=identity, architecture=architecture, metadata=metadata)


def _all_metadata(manifest) -> dict[str, str]:
    """A folder's metadata is its parts'; the first part that has a key wins."""
    merged = dict(manifest.metadata)
    for _name, part in manifest.parts:
        for key, value in part.metadata.items():
            merged.setdefault(key, value)
    return merged
