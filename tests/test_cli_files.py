"""The hash / inspect commands end to end, checked against independent computations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import save_file

from consentry.cli import cli
from helpers import reference_hashes

HASH_JSON_KEYS = {"path", "size", "format", "sha256", "autov1", "autov2", "autov3", "autov3_short",
                  "crc32", "crc32_conventional", "blake3", "content_hash"}  # fmt: skip


@pytest.fixture
def lora(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    tensors = {
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": rng.standard_normal((4, 768)).astype(np.float32),
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": rng.standard_normal((320, 4)).astype(np.float32),
        # > 2 MiB in total so AutoV1 is defined
        "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": rng.standard_normal((256, 768)).astype(np.float32),
        "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": rng.standard_normal((3072, 256)).astype(np.float32),
    }
    path = tmp_path / "jane.safetensors"
    meta = {"ss_output_name": "jane_v1", "ss_tag_frequency": json.dumps({"10_jane doe": {"jane doe": 5}})}
    save_file(tensors, str(path), metadata=meta)
    return path


def run(*args: str, db: Path | None = None):
    runner = CliRunner()
    base = ["--db", str(db)] if db else []
    return runner.invoke(cli, [*base, *args], catch_exceptions=False)


def test_hash_json_matches_independent_hashes(lora: Path):
    result = run("hash", "--json", str(lora))
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert HASH_JSON_KEYS <= set(row)
    expected = reference_hashes(lora)
    for key, value in expected.items():
        assert row[key] == value, key
    assert row["autov1"] is not None  # file is > 2 MiB
    assert row["size"] == lora.stat().st_size and row["format"] == "safetensors"
    assert len(row["content_hash"]) == 64 and row["content_hash"] == row["content_hash"].upper()


def test_hash_human_output_shows_every_form(lora: Path):
    result = run("hash", str(lora))
    expected = reference_hashes(lora)
    assert result.exit_code == 0
    for key in ("sha256", "autov1", "autov2", "autov3", "autov3_short", "crc32", "crc32_conventional", "blake3"):
        assert expected[key] in result.stdout, key


def test_hash_bad_file_one_line_and_exit_2(tmp_path: Path, canary: Path):
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(b"\x80\x02cposix\nsystem\nq\x00X" + len(f"touch {canary}").to_bytes(4, "little")
                     + f"touch {canary}".encode() + b"q\x01\x85q\x02Rq\x03.")  # fmt: skip
    result = run("hash", "--json", str(evil))
    assert result.exit_code == 2
    err_lines = result.stderr.strip().splitlines()
    assert len(err_lines) == 1 and str(evil) in err_lines[0] and "quarantine" in err_lines[0]
    assert "posix.system" in err_lines[0]
    row = json.loads(result.stdout)
    assert row["sha256"] == reference_hashes(evil, safetensors=False)["sha256"]  # still identified
    assert row["content_hash"] is None and row["verdict"] == "quarantine"


@pytest.mark.parametrize(
    "content,needle",
    [(b"", "empty"), (b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":", "")],
    ids=["empty", "truncated"],
)
def test_hash_empty_and_truncated(tmp_path: Path, content: bytes, needle: str):
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    result = run("hash", str(path))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and str(path) in result.stderr and needle in result.stderr


def test_unreadable_and_missing_paths(tmp_path: Path):
    missing = tmp_path / "nope.safetensors"
    result = run("hash", str(missing))
    assert result.exit_code == 2 and str(missing) in result.stderr and "cannot read" in result.stderr
    assert run("hash", str(tmp_path)).exit_code == 2


def test_inspect_decodes_training_metadata(lora: Path):
    result = run("inspect", "--json", str(lora))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["tensor_count"] == 4
    assert report["parameter_count"] == 4 * 768 + 320 * 4 + 256 * 768 + 3072 * 256
    assert report["dtypes"] == {"F32": 4}
    assert report["architecture"]["kind"] == "lora" and report["architecture"]["family"] == "sd1"
    assert report["metadata"]["training_folders"][0]["name"] == "jane doe"
    human = run("inspect", str(lora)).stdout
    assert "jane doe" in human and "best effort" in human


def test_console_script_runs_in_a_subprocess(lora: Path):
    out = subprocess.run([sys.executable, "-m", "consentry", "hash", "--json", str(lora)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["sha256"] == reference_hashes(lora)["sha256"]


def test_find_rejects_malformed_hash_with_exit_2(tmp_path: Path):
    result = run("find", "XYZ", db=tmp_path / "db.sqlite")
    assert result.exit_code == 2 and "not a hexadecimal hash" in result.stderr
    result = run("find", "abc", db=tmp_path / "db.sqlite")
    assert result.exit_code == 2 and "too short" in result.stderr
