"""Diffusers folders and shard sets: every weight file read, weight_map checked both ways."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.numpy

from consentry.errors import MalformedModelError, UnsafeModelError
from consentry.formats import read_manifest
from consentry.formats.folders import read_diffusers, read_sharded
from consentry.formats.limits import ReadLimits
from consentry.formats.tensors import Format


def save(path: Path, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    path.parent.mkdir(parents=True, exist_ok=True)
    safetensors.numpy.save_file(arrays, str(path))
    return arrays


def make_shards(folder: Path, base: str = "model", n: int = 2) -> dict[str, np.ndarray]:
    """A transformers-style shard set: base-0000i-of-0000n.safetensors + base.safetensors.index.json."""
    everything: dict[str, np.ndarray] = {}
    weight_map: dict[str, str] = {}
    for i in range(n):
        shard = f"{base}-{i + 1:05d}-of-{n:05d}.safetensors"
        arrays = {f"layer{i}.w": np.full((2, 3), i, np.float32), f"layer{i}.b": np.arange(4, dtype=np.int16) + i}
        save(folder / shard, arrays)
        everything.update(arrays)
        weight_map.update({k: shard for k in arrays})
    index = {"metadata": {"total_size": sum(a.nbytes for a in everything.values())}, "weight_map": weight_map}
    (folder / f"{base}.safetensors.index.json").write_text(json.dumps(index))
    return everything


def check_bytes(manifest, expected: dict[str, np.ndarray]) -> None:
    """Names match, and each tensor's bytes (through the combined manifest) are the array's."""
    assert sorted(t.name for t in manifest.tensors) == sorted(expected)
    for t in manifest.tensors:
        assert b"".join(manifest.iter_tensor_bytes(t)) == expected[t.name].tobytes()
        start, end = t.file_range
        assert t.path.read_bytes()[start:end] == expected[t.name].tobytes()


# ---------------------------------------------------------------------------------------------
# Shard sets


def test_shard_set_from_index(tmp_path: Path) -> None:
    expected = make_shards(tmp_path)
    manifest = read_sharded(tmp_path / "model.safetensors.index.json")
    assert manifest.format is Format.SHARDED
    check_bytes(manifest, expected)
    assert [rel for rel, _ in manifest.parts] == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert all(part.format is Format.SAFETENSORS for _, part in manifest.parts)
    with safetensors.safe_open(str(tmp_path / "model-00002-of-00002.safetensors"), framework="np") as f:
        assert {t.name for t in manifest.tensors if t.path.name.startswith("model-00002")} == set(f.keys())


def test_shard_set_from_folder_through_dispatcher(tmp_path: Path) -> None:
    expected = make_shards(tmp_path, n=3)
    manifest = read_manifest(tmp_path)
    assert manifest.format is Format.SHARDED
    check_bytes(manifest, expected)  # one set in the folder: names unprefixed
    assert len(manifest.parts) == 3


def test_folder_with_two_sets_prefixes_the_variant(tmp_path: Path) -> None:
    expected = make_shards(tmp_path)
    extra = save(tmp_path / "model.fp16.safetensors", {"layer0.w": np.ones((2, 3), np.float16)})
    manifest = read_sharded(tmp_path)
    names = sorted(t.name for t in manifest.tensors)
    assert names == sorted(list(expected) + ["[fp16]/layer0.w"])
    t = next(t for t in manifest.tensors if t.name == "[fp16]/layer0.w")
    assert b"".join(manifest.iter_tensor_bytes(t)) == extra["layer0.w"].tobytes()


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda wm: wm.update({"ghost": "model-00001-of-00002.safetensors"}), "weight_map lists tensor 'ghost'"),
        (lambda wm: wm.pop("layer1.b"), "holds tensor 'layer1.b' but weight_map does not list it"),
        (lambda wm: wm.update({"layer1.b": "model-00001-of-00002.safetensors"}), "lists it under 'model-00001-of-00002.safetensors'"),
        (lambda wm: wm.update({"ghost": "missing.safetensors"}), "shard 'missing.safetensors' named in weight_map is missing"),
        (lambda wm: wm.update({"layer0.w": 3}), "is not a file name"),
        (lambda wm: wm.clear(), "weight_map is empty"),
    ],
    ids=["tensor missing from shard", "tensor unlisted", "tensor in wrong shard", "missing shard", "non-string", "empty"],
)
def test_weight_map_mismatch(tmp_path: Path, mutate, fragment: str) -> None:
    make_shards(tmp_path)
    index_path = tmp_path / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    mutate(index["weight_map"])
    index_path.write_text(json.dumps(index))
    with pytest.raises(MalformedModelError) as info:
        read_sharded(index_path)
    assert fragment in info.value.problem


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd", "sub/x.safetensors", "..", "C:evil", "a\\b"])
def test_shard_name_must_be_plain(tmp_path: Path, shard: str) -> None:
    make_shards(tmp_path)
    index_path = tmp_path / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["evil"] = shard
    index_path.write_text(json.dumps(index))
    with pytest.raises(UnsafeModelError, match="not a plain file name"):
        read_sharded(index_path)


def test_index_duplicate_keys_and_size_limit(tmp_path: Path) -> None:
    make_shards(tmp_path)
    index_path = tmp_path / "model.safetensors.index.json"
    text = index_path.read_text()
    with pytest.raises(MalformedModelError, match="more than the limit of 10"):
        read_sharded(index_path, ReadLimits(max_json_bytes=10))
    index_path.write_text(text.replace('"weight_map": {', '"weight_map": {"layer0.w": "x.safetensors", ', 1))
    with pytest.raises(MalformedModelError, match="duplicate key 'layer0.w'"):
        read_sharded(index_path)
    index_path.write_text("[]")
    with pytest.raises(MalformedModelError, match="no 'weight_map'"):
        read_sharded(index_path)


def test_bad_shard_rejects_the_set(tmp_path: Path) -> None:
    make_shards(tmp_path)
    shard = tmp_path / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes() + b"polyglot")
    with pytest.raises(MalformedModelError, match="trailing bytes") as info:
        read_sharded(tmp_path / "model.safetensors.index.json")
    assert info.value.path == str(shard)


def test_symlinked_shard_outside_refused(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    folder.mkdir()
    make_shards(folder)
    outside = tmp_path / "elsewhere.safetensors"
    (folder / "model-00002-of-00002.safetensors").rename(outside)
    os.symlink(outside, folder / "model-00002-of-00002.safetensors")
    with pytest.raises(UnsafeModelError, match="symlink points outside"):
        read_sharded(folder / "model.safetensors.index.json")


# ---------------------------------------------------------------------------------------------
# Diffusers folders


def make_diffusers(root: Path) -> dict[str, np.ndarray]:
    """A small diffusers layout with variants, a .bin-free mix and a sharded component."""
    (root).mkdir(parents=True, exist_ok=True)
    (root / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "_diffusers_version": "0.30.0",
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "scheduler": ["diffusers", "PNDMScheduler"],
                "safety_checker": [None, None],
            }
        )
    )
    expected: dict[str, np.ndarray] = {}
    unet = save(root / "unet" / "diffusion_pytorch_model.safetensors", {"conv_in.weight": np.ones((2, 2), np.float32)})
    unet16 = save(root / "unet" / "diffusion_pytorch_model.fp16.safetensors", {"conv_in.weight": np.ones((2, 2), np.float16)})
    vae = save(root / "vae" / "diffusion_pytorch_model.safetensors", {"decoder.w": np.zeros(3, np.float32)})
    expected.update({f"unet/{k}": v for k, v in unet.items()})
    expected.update({f"unet[fp16]/{k}": v for k, v in unet16.items()})
    expected.update({f"vae/{k}": v for k, v in vae.items()})
    shards = make_shards(root / "text_encoder")
    expected.update({f"text_encoder/{k}": v for k, v in shards.items()})
    (root / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "vocab.json").write_text(json.dumps({"a": 1}))
    (root / "tokenizer" / "spiece.model").write_bytes(b"\n\x0fsentencepiece-ish")
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text("{}")
    return expected


def test_diffusers_reads_every_component_and_variant(tmp_path: Path) -> None:
    root = tmp_path / "pipe"
    expected = make_diffusers(root)
    manifest = read_manifest(root)
    assert manifest.format is Format.DIFFUSERS
    check_bytes(manifest, expected)
    rels = sorted(rel for rel, _ in manifest.parts)
    assert rels == [
        "text_encoder/model-00001-of-00002.safetensors",
        "text_encoder/model-00002-of-00002.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    ]
    assert not any("Python" in note for note in manifest.notes)


def test_diffusers_weights_under_other_names_and_magic(tmp_path: Path) -> None:
    root = tmp_path / "pipe"
    make_diffusers(root)
    save(root / "v1-5-pruned.safetensors", {"x": np.ones(1, np.float32)})
    # a safetensors file disguised as .txt is read because of its bytes, not its name
    save(root / "vae" / "notes.txt", {"hidden": np.ones(1, np.float32)})
    (root / "unet" / "flax_model.msgpack").write_bytes(b"\x81\xa1a\x01")
    manifest = read_diffusers(root)
    assert any(n.startswith("unet/flax_model.msgpack: ") and "not inspected" in n for n in manifest.notes)
    names = {t.name for t in manifest.tensors}
    assert "[v1-5-pruned.safetensors]/x" in names
    assert "vae[notes.txt]/hidden" in names


def test_diffusers_bad_component_file_rejects_folder(tmp_path: Path) -> None:
    root = tmp_path / "pipe"
    make_diffusers(root)
    bad = root / "vae" / "diffusion_pytorch_model.fp16.safetensors"
    save(bad, {"w": np.ones(2, np.float32)})
    bad.write_bytes(bad.read_bytes() + b"junk")
    with pytest.raises(MalformedModelError, match="4 trailing bytes") as info:
        read_diffusers(root)
    assert info.value.path.endswith("vae/diffusion_pytorch_model.fp16.safetensors")


@pytest.mark.parametrize(
    "plant,named",
    [
        (lambda root: (root / "unet" / "my_unet.py").write_text("import os\n"), "unet/my_unet.py is a Python file"),
        (lambda root: (root / "scheduler" / "deep" / "helper.py").parent.mkdir(parents=True)
         or (root / "scheduler" / "deep" / "helper.py").write_text("x = 1\n"), "scheduler/deep/helper.py is a Python file"),
        (lambda root: (root / "unet" / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "my_unet.MyUNet"}})),
         'unet/config.json has auto_map {"AutoModel": "my_unet.MyUNet"}'),
        (lambda root: (root / "unet" / "config.json").write_text(json.dumps({"_class_name": ["my_unet", "MyUNet"]})),
         'unet/config.json _class_name ["my_unet", "MyUNet"] names a class from outside diffusers'),
        (lambda root: (root / "model_index.json").write_text(
            json.dumps({**json.loads((root / "model_index.json").read_text()), "_class_name": ["pipeline", "MyPipeline"]})),
         'model_index.json _class_name ["pipeline", "MyPipeline"] names a custom pipeline'),
    ],
    ids=["py-in-component", "py-nested", "auto_map", "component-class-pair", "custom-pipeline"],
)
def test_diffusers_folder_with_code_is_quarantined(tmp_path: Path, plant, named: str) -> None:
    """§1.8 row 28: code a loader can be told to run makes the folder quarantine, never clean,
    and the problem names the file or key."""
    root = tmp_path / "pipe"
    make_diffusers(root)
    read_diffusers(root)  # clean before
    plant(root)
    with pytest.raises(UnsafeModelError) as info:
        read_diffusers(root)
    assert info.value.verdict == "quarantine"
    assert info.value.path == str(root)
    assert named in info.value.problem, info.value.problem
    assert info.value.problem.startswith("folder carries code a loader can run")


def test_diffusers_folder_with_code_names_every_finding_through_the_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from consentry.cli import cli

    root = tmp_path / "pipe"
    make_diffusers(root)
    (root / "unet" / "my_unet.py").write_text("import os\n")
    (root / "unet" / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "my_unet.MyUNet"}}))
    result = CliRunner().invoke(cli, ["hash", str(root)], catch_exceptions=False)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"consentry: {root}: quarantine: folder carries code")
    assert "unet/my_unet.py is a Python file" in lines[0] and "unet/config.json has auto_map" in lines[0]
    assert "(diffusers, " in result.stdout and "quarantine)" in result.stdout


def test_sharded_folder_with_remote_code_is_quarantined(tmp_path: Path) -> None:
    """A transformers-style repo: shards plus modeling code and auto_map (trust_remote_code)."""
    root = tmp_path / "repo"
    root.mkdir()
    save(root / "model-00001-of-00001.safetensors", {"w": np.ones(2, np.float32)})
    (root / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "model-00001-of-00001.safetensors"}}))
    read_sharded(root)  # clean before
    (root / "modeling_evil.py").write_text("import os\n")
    with pytest.raises(UnsafeModelError, match="modeling_evil.py is a Python file"):
        read_sharded(root)


def test_diffusers_symlink_outside_refused(tmp_path: Path) -> None:
    root = tmp_path / "pipe"
    make_diffusers(root)
    secret = tmp_path / "secret.safetensors"
    save(secret, {"s": np.ones(1, np.float32)})
    os.symlink(secret, root / "unet" / "diffusion_pytorch_model.bf16.safetensors")
    with pytest.raises(UnsafeModelError, match="symlink points outside"):
        read_diffusers(root)


def test_diffusers_symlink_dir_outside_refused(tmp_path: Path) -> None:
    root = tmp_path / "pipe"
    make_diffusers(root)
    os.symlink(tmp_path, root / "escape")
    with pytest.raises(UnsafeModelError, match="symlink points outside"):
        read_diffusers(root)


def test_diffusers_symlink_inside_allowed(tmp_path: Path) -> None:
    root = tmp_path / "pipe"
    expected = make_diffusers(root)
    os.symlink(root / "vae" / "diffusion_pytorch_model.safetensors", root / "vae" / "diffusion_pytorch_model.alias.safetensors")
    manifest = read_diffusers(root)
    assert "vae[alias]/decoder.w" in {t.name for t in manifest.tensors}
    assert len(manifest.tensors) == len(expected) + 1


def test_hf_cache_snapshot_links_into_blobs_allowed(tmp_path: Path) -> None:
    repo = tmp_path / "models--someone--pipe"
    blob = repo / "blobs" / "abc123"
    save(blob, {"w": np.ones(2, np.float32)})
    root = repo / "snapshots" / "0123abcd"
    make_diffusers(root)
    os.symlink("../../../blobs/abc123", root / "vae" / "diffusion_pytorch_model.fp16.safetensors")
    manifest = read_diffusers(root)
    assert "vae[fp16]/w" in {t.name for t in manifest.tensors}


def test_diffusers_model_index_checks(tmp_path: Path) -> None:
    root = tmp_path / "pipe"
    make_diffusers(root)
    (root / "model_index.json").write_text('{"_class_name": "A", "_class_name": "B"}')
    with pytest.raises(MalformedModelError, match="duplicate key '_class_name'"):
        read_diffusers(root)
    (root / "model_index.json").write_text("[1]")
    with pytest.raises(MalformedModelError, match="not a JSON object"):
        read_diffusers(root)
    (root / "model_index.json").write_text('{"_class_name": "A"}' + " " * 100)
    with pytest.raises(MalformedModelError, match="more than the limit"):
        read_diffusers(root, ReadLimits(max_json_bytes=50))


def test_diffusers_bin_variant_is_read(tmp_path: Path) -> None:
    """.bin next to .safetensors: both are read (needs the torch reader being written)."""
    pytest.importorskip("consentry.formats.torch_pickle")
    torch = pytest.importorskip("torch")
    root = tmp_path / "pipe"
    make_diffusers(root)
    torch.save({"conv_in.weight": torch.ones(2, 2)}, root / "unet" / "diffusion_pytorch_model.bin")
    manifest = read_diffusers(root)
    assert "unet[bin]/conv_in.weight" in {t.name for t in manifest.tensors}
    assert "unet/diffusion_pytorch_model.bin" in [rel for rel, _ in manifest.parts]
