"""The hash / inspect commands end to end, checked against independent computations."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import save_file

from consentry.cli import cli
from helpers import deny_reading, reference_hashes

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
    [
        (b"", "rejected: empty file"),
        # N = 16 but only 5 header bytes follow: the file ends inside the header.
        (b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":",
         "rejected: safetensors header length 16 exceeds the file (13 bytes): only 5 bytes follow the length field"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00{", "rejected: safetensors header length 16 exceeds the file (9 bytes)"),
        (struct.pack("<Q", 1 << 40) + b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' + b"\0" * 4,
         f"rejected: safetensors header length {1 << 40} exceeds the limit of 100000000 bytes"),
        (struct.pack("<q", -2) + b"{}",
         f"rejected: safetensors header length {2**64 - 2} exceeds the limit of 100000000 bytes; "
         "read as a signed 64-bit integer it is negative (-2)"),
    ],
    ids=["empty", "truncated-in-header", "truncated-after-brace", "huge-length", "negative-length"],
)
def test_hash_empty_and_truncated(tmp_path: Path, content: bytes, needle: str):
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    result = run("hash", str(path))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"consentry: {path}: ")
    assert needle in result.stderr, result.stderr
    assert "no known magic bytes" not in result.stderr


def test_unreadable_and_missing_paths(tmp_path: Path):
    missing = tmp_path / "nope.safetensors"
    result = run("hash", str(missing))
    assert result.exit_code == 2 and str(missing) in result.stderr and "cannot read" in result.stderr
    assert run("hash", str(tmp_path)).exit_code == 2


def test_permission_denied_is_one_line_and_exit_2(lora: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    locked = tmp_path / "locked.safetensors"
    locked.write_bytes(lora.read_bytes())
    deny_reading(monkeypatch, locked)
    for command in (["hash"], ["hash", "--json"], ["inspect"]):
        result = run(*command, str(locked), str(lora)) if command[0] == "hash" else run(*command, str(locked))
        assert result.exit_code == 2, (command, result.output)
        lines = result.stderr.strip().splitlines()
        assert lines == [f"consentry: {locked}: rejected: cannot read: Permission denied"], (command, lines)
    row = [json.loads(line) for line in run("hash", "--json", str(locked), str(lora)).stdout.splitlines()]
    assert row[0]["verdict"] == "rejected" and row[0]["sha256"] is None
    assert row[1]["verdict"] == "clean" and row[1]["sha256"] == reference_hashes(lora)["sha256"]  # carried on


def test_max_header_mb_option(tmp_path: Path):
    """--max-header-mb caps the safetensors header (default 100 MB), on hash, inspect and index."""
    path = tmp_path / "meta.safetensors"
    save_file({"w": np.ones(4, np.float32)}, str(path), metadata={"note": "x" * 3000})
    n = int.from_bytes(path.read_bytes()[:8], "little")
    assert 3000 < n < 4000
    assert run("hash", str(path)).exit_code == 0
    assert run("hash", "--max-header-mb", "0.004", str(path)).exit_code == 0  # 4000 bytes: fits
    for command in (["hash"], ["inspect"]):
        result = run(*command, "--max-header-mb", "0.003", str(path))
        assert result.exit_code == 2, command
        assert f"rejected: safetensors header length {n} exceeds the limit of 3000 bytes" in result.stderr, command
    row = json.loads(run("hash", "--json", "--max-header-mb", "0.003", str(path)).stdout)
    assert row["autov3"] == hashlib.sha256(path.read_bytes()[8 + n :]).hexdigest().upper()  # still found by AutoV3
    db = tmp_path / "db.sqlite"
    indexed = run("index", "--no-progress", "--max-header-mb", "0.003", str(path), db=db)
    assert indexed.exit_code == 2 and "exceeds the limit of 3000 bytes" in indexed.stderr
    assert run("hash", "--max-header-mb", "0", str(path)).exit_code == 2  # below the option's minimum: usage error


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


# ---- AutoV3 of a rejected safetensors file --------------------------------------------------


def _independent_autov3(data: bytes) -> str:
    """hub-interfaces.md §2.4 on the raw bytes: SHA-256 of everything after the 8 + N header."""
    n = int.from_bytes(data[:8], "little")
    return hashlib.sha256(data[8 + n :]).hexdigest().upper()


def test_rejected_polyglot_lora_keeps_its_autov3(lora: Path, tmp_path: Path):
    """A known LoRA with a trailing polyglot is rejected, but a hub finds it by AutoV3, which it
    derives from the length field alone: so consentry reports that AutoV3 too."""
    original = lora.read_bytes()
    polyglot = tmp_path / "polyglot.safetensors"
    polyglot.write_bytes(original + b"PK\x05\x06" + b"\0" * 18)  # an empty zip appended
    result = run("hash", "--json", str(polyglot))
    assert result.exit_code == 2
    row = json.loads(result.stdout)
    assert row["verdict"] == "rejected" and "22 trailing bytes after the tensor data" in row["problem"]
    data = polyglot.read_bytes()
    assert row["autov3"] == _independent_autov3(data)
    assert row["autov3_short"] == _independent_autov3(data)[:12]
    assert row["sha256"] == hashlib.sha256(data).hexdigest().upper()
    assert row["content_hash"] is None  # the tensors were not accepted


def test_rejected_safetensors_autov3_only_when_the_length_fits(tmp_path: Path):
    header = b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    bad_dtype = header.replace(b"F32", b"F99")
    cases = {
        "bad_dtype.safetensors": struct.pack("<Q", len(bad_dtype)) + bad_dtype + b"\1" * 8,  # 8 + N fits
        "at_eof.safetensors": struct.pack("<Q", len(header)) + header,  # 8 + N == size: AutoV3 of b""
        "beyond.safetensors": struct.pack("<Q", 4096) + header + b"\1" * 8,  # 8 + N > size: none
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        row = json.loads(run("hash", "--json", str(path)).stdout)
        assert row["verdict"] == "rejected", name
        if name == "beyond.safetensors":
            assert row["autov3"] is None and "exceeds the file" in row["problem"]
        else:
            assert row["autov3"] == _independent_autov3(data), name
    assert json.loads(run("hash", "--json", str(tmp_path / "at_eof.safetensors")).stdout)["autov3"] == (
        hashlib.sha256(b"").hexdigest().upper()
    )


def test_non_safetensors_rejects_get_no_autov3(tmp_path: Path):
    png = tmp_path / "x.safetensors"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)  # a PNG named .safetensors: not safetensors bytes
    row = json.loads(run("hash", "--json", str(png)).stdout)
    assert row["verdict"] == "rejected" and row["autov3"] is None and row["sha256"]


# ---- what the CLI loads: `consentry hash` stays small --------------------------------------

HEAVY_MODULES = {"numpy", "usearch", "fastapi", "starlette", "pydantic", "uvicorn", "psycopg", "rich", "httpx",
                 "huggingface_hub", "safetensors", "torch", "cryptography", "dlib", "onnxruntime", "PIL", "rapidfuzz",
                 "anyascii"}  # fmt: skip


def test_cli_import_and_hash_load_no_heavy_modules(lora: Path):
    """The commands import the library lazily: importing the CLI (what `--help` does) and
    running `hash` load none of numpy, usearch, fastapi, psycopg and the like."""
    code = (
        "import sys\n"
        "from consentry.cli import cli\n"
        "loaded = lambda: sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[2].split(',')))\n"
        "print(','.join(loaded()))\n"
        "try:\n"
        "    cli(['hash', sys.argv[1]], prog_name='consentry')\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "print(','.join(loaded()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(lora), ",".join(sorted(HEAVY_MODULES))],
                         capture_output=True, text=True, check=True)  # fmt: skip
    after_import, after_hash = out.stdout.splitlines()[0], out.stdout.splitlines()[-1]
    assert after_import == "" and after_hash == "", out.stdout


_MAXRSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def test_hash_cli_peak_rss_under_64_mb(tmp_path: Path):
    """The issue's memory goal through the real console command: peak RSS under 64 MB on a file
    larger than the 32 MiB hashing ring (a small wrapper interpreter reports its child's
    ru_maxrss, so pytest's own memory does not count)."""
    path = tmp_path / "big.safetensors"
    n = 48 << 20
    header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        block = bytes(range(256)) * 4096
        for _ in range(n // len(block)):
            fh.write(block)
    command = [sys.executable, "-m", "consentry", "hash", str(path)]
    out = subprocess.run([sys.executable, "-c", _MAXRSS_WRAPPER, *command], capture_output=True, text=True, check=True)
    peak_kib = int(out.stdout.strip())
    assert peak_kib * 1024 < 64_000_000, f"peak RSS {peak_kib / 1024:.1f} MiB"


def test_index_progress_flag_shows_the_bar_even_into_a_pipe(tmp_path: Path) -> None:
    """--progress asked for explicitly draws the bar where stderr is not a terminal (a log)."""
    import re

    models = tmp_path / "models"
    models.mkdir()
    for i in range(3):
        save_file({"w": np.full((4, 4), i, np.float32)}, str(models / f"m{i}.safetensors"))
    size = sum(p.stat().st_size for p in models.glob("*.safetensors"))
    shown = CliRunner().invoke(cli, ["--db", str(tmp_path / "s.db"), "index", str(models), "--progress"])
    hidden = CliRunner().invoke(cli, ["--db", str(tmp_path / "t.db"), "index", str(models)])
    assert shown.exit_code == 0 and hidden.exit_code == 0, shown.output
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.stderr)
    assert f"{size}/{size} bytes" in plain and "3 files" in plain
    assert "bytes" not in hidden.stderr  # not a terminal, not asked: no bar


def test_a_bug_is_one_line_exit_70_and_never_its_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception (a bug) must not exit 1, which `scan` uses for "matched", nor
    print its message, which could hold a protected person's name."""
    import consentry.identity.identify as identify_module

    def broken(*args, **kwargs):
        raise RuntimeError("Jane Example, aliases ...")

    save_file({"w": np.zeros((2, 2), np.float32)}, str(tmp_path / "m.safetensors"))
    monkeypatch.setattr(identify_module, "identify", broken)
    monkeypatch.delenv("CONSENTRY_DEBUG", raising=False)
    result = CliRunner().invoke(cli, ["hash", str(tmp_path / "m.safetensors")])
    assert result.exit_code == 70
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("consentry: internal error") and "RuntimeError" in line and "Jane" not in result.output
    monkeypatch.setenv("CONSENTRY_DEBUG", "1")
    debug = CliRunner().invoke(cli, ["hash", str(tmp_path / "m.safetensors")])
    assert isinstance(debug.exception, RuntimeError)  # the traceback, when asked for
