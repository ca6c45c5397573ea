"""Decode training metadata (kohya ``ss_*``, Stability ``modelspec.*``) for people to read.

These keys survive when a re-upload is renamed "LORA": training folder names, caption tags,
the output name and the base model often name the person a LoRA was trained on. All values in
safetensors metadata are strings; nested data is JSON inside a string, parsed here with bounds.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

# JSON values inside metadata are parsed only up to this size (the header cap is 100 MB).
MAX_JSON_VALUE_BYTES = 16 * 1024 * 1024
TOP_TAGS = 20

_DREAMBOOTH_DIR = re.compile(r"^(\d+)_(.+)$")

_KOHYA_SCALARS = {
    "ss_output_name": "output_name",
    "ss_training_comment": "training_comment",
    "ss_sd_model_name": "base_model_name",
    "ss_base_model_version": "base_model_version",
    "ss_sd_model_hash": "base_model_hash_autov1",
    "ss_new_sd_model_hash": "base_model_hash_sha256",
    "ss_network_module": "network_module",
    "ss_network_dim": "network_dim",
    "ss_network_alpha": "network_alpha",
    "ss_num_train_images": "num_train_images",
    "ss_num_epochs": "num_epochs",
    "ss_steps": "steps",
    "ss_resolution": "resolution",
    "ss_learning_rate": "learning_rate",
    "ss_optimizer": "optimizer",
    "ss_seed": "seed",
    "ss_v2": "v2",
}


@dataclass
class TrainingFolder:
    folder: str  # directory basename as kohya recorded it, e.g. "10_ohwx woman"
    repeats: int | None
    name: str  # the part after "<repeats>_": often the trigger word or the person's name
    images: int | None = None
    tag_count: int | None = None

    def as_dict(self) -> dict:
        return {"folder": self.folder, "repeats": self.repeats, "name": self.name, "images": self.images, "tag_count": self.tag_count}


@dataclass
class DecodedMetadata:
    kohya: dict[str, Any] = field(default_factory=dict)
    training_folders: list[TrainingFolder] = field(default_factory=list)
    top_tags: list[tuple[str, int]] = field(default_factory=list)
    modelspec: dict[str, str] = field(default_factory=dict)
    embedded_hashes: dict[str, dict[str, Any]] = field(default_factory=dict)
    other: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "kohya": self.kohya,
            "training_folders": [f.as_dict() for f in self.training_folders],
            "top_tags": [[tag, count] for tag, count in self.top_tags],
            "modelspec": self.modelspec,
            "embedded_hashes": self.embedded_hashes,
            "other": self.other,
            "problems": self.problems,
        }


def decode_metadata(metadata: Mapping[str, str], *, autov3: str | None = None) -> DecodedMetadata:
    """Decode a safetensors ``__metadata__`` map. ``autov3`` (full hex) checks ``sshs_model_hash``."""
    out = DecodedMetadata()
    for key, value in metadata.items():
        if key in _KOHYA_SCALARS:
            out.kohya[_KOHYA_SCALARS[key]] = value
        elif key in ("ss_training_started_at", "ss_training_finished_at"):
            out.kohya[key[3:]] = _unix_to_iso(value)
        elif key.startswith("modelspec."):
            name = key[len("modelspec.") :]
            out.modelspec[name] = _shorten(value) if name == "thumbnail" else value
        elif key.startswith("sshs_"):
            continue
        elif not key.startswith("ss_"):
            out.other[key] = _shorten(value)
    _decode_training_data(metadata, out)
    _check_embedded_hashes(metadata, autov3, out)
    return out


def _decode_training_data(metadata: Mapping[str, str], out: DecodedMetadata) -> None:
    tag_frequency = _json_value(metadata, "ss_tag_frequency", out)
    dataset_dirs = _json_value(metadata, "ss_dataset_dirs", out)
    datasets = _json_value(metadata, "ss_datasets", out)
    folders: dict[str, TrainingFolder] = {}
    tags: Counter[str] = Counter()

    def folder(name: str) -> TrainingFolder:
        if name not in folders:
            match = _DREAMBOOTH_DIR.match(name)
            folders[name] = TrainingFolder(
                folder=name,
                repeats=int(match.group(1)) if match else None,
                name=match.group(2) if match else name,
            )
        return folders[name]

    if isinstance(tag_frequency, dict):
        for dir_name, freq in tag_frequency.items():
            entry = folder(str(dir_name))
            if isinstance(freq, dict):
                counts = {str(t): c for t, c in freq.items() if isinstance(c, int)}
                entry.tag_count = len(counts)
                tags.update(counts)
    if isinstance(dataset_dirs, dict):
        for dir_name, info in dataset_dirs.items():
            entry = folder(str(dir_name))
            if isinstance(info, dict):
                if isinstance(info.get("n_repeats"), int):
                    entry.repeats = info["n_repeats"]
                if isinstance(info.get("img_count"), int):
                    entry.images = info["img_count"]
    if isinstance(datasets, list):  # dataset-config mode
        for dataset in datasets:
            if not isinstance(dataset, dict):
                continue
            for subset in dataset.get("subsets") or []:
                if isinstance(subset, dict) and isinstance(subset.get("image_dir"), str):
                    entry = folder(subset["image_dir"])
                    if isinstance(subset.get("num_repeats"), int):
                        entry.repeats = subset["num_repeats"]
                    if isinstance(subset.get("img_count"), int):
                        entry.images = subset["img_count"]
                    if isinstance(subset.get("class_tokens"), str) and entry.name == entry.folder:
                        entry.name = subset["class_tokens"]
            freq_map = dataset.get("tag_frequency")
            if isinstance(freq_map, dict):
                for dir_name, freq in freq_map.items():
                    folder(str(dir_name))
                    if isinstance(freq, dict):
                        tags.update({str(t): c for t, c in freq.items() if isinstance(c, int)})
    out.training_folders = list(folders.values())
    out.top_tags = tags.most_common(TOP_TAGS)


def _check_embedded_hashes(metadata: Mapping[str, str], autov3: str | None, out: DecodedMetadata) -> None:
    # upper-case, as every hash consentry prints (kohya writes them lower-case)
    if "sshs_model_hash" in metadata:
        claimed = metadata["sshs_model_hash"].strip().upper()
        entry: dict[str, Any] = {"claimed": claimed, "compares_to": "autov3"}
        if autov3:
            entry["computed"] = autov3.upper()
            entry["status"] = "match" if claimed == autov3.upper() else "mismatch"
        else:
            entry["status"] = "not checked"
        out.embedded_hashes["sshs_model_hash"] = entry
    if "sshs_legacy_hash" in metadata:
        out.embedded_hashes["sshs_legacy_hash"] = {
            "claimed": metadata["sshs_legacy_hash"].strip().upper(),
            "status": "not checkable",
            "note": "kohya hashes a re-serialisation with only ss_* metadata, not this file",
        }


def _json_value(metadata: Mapping[str, str], key: str, out: DecodedMetadata) -> Any:
    raw = metadata.get(key)
    if raw is None or raw in ("", "None"):
        return None
    if len(raw) > MAX_JSON_VALUE_BYTES:
        out.problems.append(f"{key}: {len(raw)} bytes, too large to decode")
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        out.problems.append(f"{key}: not valid JSON")
        return None


def _unix_to_iso(value: str) -> str:
    try:
        return _dt.datetime.fromtimestamp(float(value), tz=_dt.timezone.utc).isoformat()
    except (ValueError, OverflowError, OSError):
        return value


def _shorten(value: str, limit: int = 200) -> str:
    return value if len(value) <= limit else f"{value[:limit]}… ({len(value)} chars)"
