"""content_hash: same tensors, same value, whatever the container and metadata.

The expected value is recomputed here from the README's definition with blake3 and struct on
torch's own bytes, independently of consentry's implementation.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch
from blake3 import blake3
from safetensors.torch import save_file

from consentry.identity.identify import identify

TORCH_TO_ST = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64", torch.bool: "BOOL", torch.uint8: "U8"}


def reference_content_hash(tensors: dict[str, torch.Tensor]) -> str:
    """The README's content_hash v1 definition, written out independently."""
    h = blake3(b"consentry-content-v1\n")
    for name in sorted(tensors, key=lambda n: n.encode("utf-8")):
        t = tensors[name].contiguous()
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        dtype = TORCH_TO_ST[t.dtype].encode()
        enc = name.encode("utf-8")
        h.update(struct.pack("<I", len(enc)) + enc + struct.pack("<B", len(dtype)) + dtype)
        h.update(struct.pack("<I", t.dim()) + struct.pack(f"<{t.dim()}Q", *t.shape) + blake3(raw).digest())
    return h.hexdigest().upper()


@pytest.fixture
def state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(8, 6, generator=g)
    return {
        "unet.down.lora_down.weight": torch.randn(4, 32, generator=g),
        "unet.down.lora_up.weight": torch.randn(32, 4, generator=g).half(),
        "te.proj.weight": torch.randn(5, 3, generator=g).bfloat16(),
        "steps": torch.arange(7, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "column_view": base[:, 2],  # a strided view into a larger storage in the torch file
        "transposed": base.t(),
        "scalar": torch.tensor(0.5),
    }


def test_safetensors_and_torch_containers_agree(tmp_path: Path, state_dict):
    expected = reference_content_hash(state_dict)
    st = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(st), metadata={"ss_output_name": "x"})
    zip_pt = tmp_path / "m.ckpt"
    torch.save(state_dict, zip_pt)
    legacy = tmp_path / "legacy.pt"
    torch.save(state_dict, legacy, _use_new_zipfile_serialization=False)
    wrapped = tmp_path / "wrapped.ckpt"
    torch.save({"state_dict": dict(reversed(list(state_dict.items()))), "global_step": 1200}, wrapped)
    renamed = tmp_path / "LORA.safetensors"
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(renamed), metadata={"format": "pt"})

    results = {p.name: identify(p) for p in (st, zip_pt, legacy, wrapped, renamed)}
    for name, ident in results.items():
        assert ident.problem is None, (name, ident.problem)
        assert ident.content_hash == expected, name
    # The byte hashes differ between the two safetensors files; AutoV3 does not (metadata only).
    assert results["m.safetensors"].hashes.sha256 != results["LORA.safetensors"].hashes.sha256
    assert results["m.safetensors"].hashes.autov3 == results["LORA.safetensors"].hashes.autov3


@pytest.mark.parametrize(
    "change",
    [
        lambda sd: sd.__setitem__("steps", sd["steps"].clone().index_fill_(0, torch.tensor([3]), 99)),
        lambda sd: sd.__setitem__("unet.down.lora_up.weight", sd["unet.down.lora_up.weight"].float()),
        lambda sd: sd.__setitem__("renamed.weight", sd.pop("te.proj.weight")),
        lambda sd: sd.__setitem__("unet.down.lora_down.weight", sd["unet.down.lora_down.weight"].reshape(8, 16)),
        lambda sd: sd.pop("mask"),
    ],
    ids=["value", "dtype", "name", "shape", "dropped"],
)
def test_any_change_to_names_dtypes_shapes_values_changes_it(tmp_path: Path, state_dict, change):
    original = tmp_path / "a.safetensors"
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(original))
    changed_sd = dict(state_dict)
    change(changed_sd)
    changed = tmp_path / "b.pt"
    torch.save(changed_sd, changed)
    a, b = identify(original), identify(changed)
    assert b.content_hash == reference_content_hash(changed_sd)
    assert a.content_hash != b.content_hash


def test_diffusers_folder_content_hash_covers_all_components(tmp_path: Path, state_dict):
    folder = tmp_path / "pipe"
    (folder / "unet").mkdir(parents=True)
    (folder / "vae").mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}')
    unet = {k: v.contiguous() for k, v in state_dict.items() if k.startswith("unet")}
    vae = {"decoder.w": torch.ones(3, 3)}
    save_file(unet, str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    save_file(vae, str(folder / "vae" / "diffusion_pytorch_model.safetensors"))
    ident = identify(folder)
    assert ident.problem is None
    prefixed = {f"unet/{k}": v for k, v in unet.items()} | {f"vae/{k}": v for k, v in vae.items()}
    assert ident.content_hash == reference_content_hash(prefixed)
