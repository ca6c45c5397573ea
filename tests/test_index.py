"""`consentry index` and `find`: incremental, resumable, carries on past bad files."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import save_file

from consentry.cli import cli
from helpers import deny_reading, reference_hashes


def run(db: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args], catch_exceptions=False)


def write_lora(path: Path, seed: int, size: int = 64, metadata: dict | None = None) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"a.lora_down.weight": rng.standard_normal((4, size)).astype(np.float32),
               "a.lora_up.weight": rng.standard_normal((size, 4)).astype(np.float32)},
              str(path), metadata=metadata)  # fmt: skip
    return path


def rows(db: Path) -> dict[str, dict]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    cols = "path, size, format, verdict, problem, sha256, autov1, autov3, crc32, blake3, content_hash"
    out = {r["path"]: dict(r) for r in conn.execute(f"SELECT {cols} FROM files")}
    conn.close()
    return out


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_lora(root / "a" / "one.safetensors", 1)
    write_lora(root / "a" / "two.bin", 2)  # safetensors bytes under a .bin name: found by magic
    write_lora(root / "b" / "c" / "three.weights", 3)  # unknown extension, still found
    (root / "b" / "notes.txt").write_text("hello")
    (root / "b" / "fake.ckpt").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)  # a PNG renamed .ckpt
    return root


def test_index_records_models_by_magic_and_bad_files_with_reason(tmp_path: Path, tree: Path):
    db = tmp_path / "db.sqlite"
    result = run(db, "index", "--no-progress", str(tree))
    assert result.exit_code == 2  # the renamed PNG was flagged
    assert "fake.ckpt" in result.stderr and "rejected" in result.stderr
    stored = rows(db)
    names = sorted(Path(p).name for p in stored)
    assert names == ["fake.ckpt", "one.safetensors", "three.weights", "two.bin"]
    for path, row in stored.items():
        if row["verdict"] == "clean":
            ref = reference_hashes(Path(path))
            assert (row["sha256"], row["autov3"], row["crc32"], row["blake3"]) == (ref["sha256"], ref["autov3"], ref["crc32"], ref["blake3"])
    fake = next(r for p, r in stored.items() if p.endswith("fake.ckpt"))
    assert fake["verdict"] == "rejected" and "not a model file" in fake["problem"]


def test_index_is_incremental(tmp_path: Path, tree: Path):
    db = tmp_path / "db.sqlite"
    run(db, "index", "--no-progress", str(tree))
    again = run(db, "index", "--no-progress", str(tree))
    assert again.exit_code == 0
    assert "indexed 0 file(s), 4 unchanged" in again.stdout
    changed = write_lora(tree / "a" / "one.safetensors", 42)
    third = run(db, "index", "--no-progress", str(tree))
    assert "indexed 1 file(s), 3 unchanged" in third.stdout
    assert rows(db)[str(changed.resolve())]["sha256"] == reference_hashes(changed)["sha256"]


def test_bad_files_never_damage_existing_records(tmp_path: Path, tree: Path, canary: Path):
    db = tmp_path / "db.sqlite"
    run(db, "index", "--no-progress", str(tree))
    before = rows(db)
    payload = f"touch {canary}".encode()
    (tree / "evil.pt").write_bytes(b"\x80\x02cos\nsystem\nX" + len(payload).to_bytes(4, "little") + payload + b"\x85R.")
    (tree / "trunc.safetensors").write_bytes((tree / "a" / "one.safetensors").read_bytes()[:100])
    result = run(db, "index", "--no-progress", str(tree))
    assert result.exit_code == 2
    after = rows(db)
    for path, row in before.items():
        assert after[path] == row
    evil = after[str((tree / "evil.pt").resolve())]
    assert evil["verdict"] == "quarantine" and "os.system" in evil["problem"]
    assert after[str((tree / "trunc.safetensors").resolve())]["verdict"] == "rejected"


def test_unreadable_file_is_recorded_and_the_rest_indexed(tmp_path: Path, tree: Path, monkeypatch: pytest.MonkeyPatch):
    """Permission denied on one file: recorded as rejected with the reason, the others indexed,
    exit 2; once readable again it is indexed properly."""
    db = tmp_path / "db.sqlite"
    locked = write_lora(tree / "a" / "locked.safetensors", 9)
    with monkeypatch.context() as m:
        deny_reading(m, locked)
        result = run(db, "index", "--no-progress", str(tree))
    assert result.exit_code == 2
    assert f"consentry: {locked.resolve()}: rejected: cannot read: Permission denied" in result.stderr.splitlines()
    assert "indexed 5 file(s)" in result.stdout
    stored = rows(db)
    row = stored[str(locked.resolve())]
    assert row["verdict"] == "rejected" and row["problem"] == "cannot read: Permission denied"
    for name in ("one.safetensors", "two.bin", "three.weights"):
        (good,) = [r for p, r in stored.items() if p.endswith(name)]
        assert good["verdict"] == "clean" and good["sha256"] == reference_hashes(Path(good["path"]))["sha256"]
    again = run(db, "index", "--no-progress", str(tree))  # readable now: tried again, not "unchanged"
    assert again.exit_code == 0 and "indexed 1 file(s), 4 unchanged" in again.stdout, again.stdout
    row = rows(db)[str(locked.resolve())]
    assert row["verdict"] == "clean" and row["sha256"] == reference_hashes(locked)["sha256"]


def test_replaced_inode_with_same_size_and_mtime_is_reindexed(tmp_path: Path, tree: Path):
    """A file swapped for another (a new inode, e.g. by rename-over) with the same size and
    mtime is not 'unchanged': the inode is part of the key."""
    db = tmp_path / "db.sqlite"
    run(db, "index", "--no-progress", str(tree))
    target = tree / "a" / "one.safetensors"
    old = target.stat()
    replacement = write_lora(tmp_path / "elsewhere" / "new.safetensors", 77)  # same shapes: same size
    assert replacement.stat().st_size == old.st_size
    assert replacement.read_bytes() != target.read_bytes()
    os.utime(replacement, ns=(old.st_atime_ns, old.st_mtime_ns))
    os.replace(replacement, target)
    new = target.stat()
    assert (new.st_size, new.st_mtime_ns) == (old.st_size, old.st_mtime_ns) and new.st_ino != old.st_ino
    result = run(db, "index", "--no-progress", str(tree))
    assert "indexed 1 file(s), 3 unchanged" in result.stdout, result.stdout
    data = target.read_bytes()
    row = rows(db)[str(target.resolve())]
    assert row["sha256"] == hashlib.sha256(data).hexdigest().upper()


def test_find_every_hash_form(tmp_path: Path):
    db = tmp_path / "db.sqlite"
    big = write_lora(tmp_path / "m" / "big.safetensors", 5, size=70_000)  # > 2 MiB: AutoV1 defined
    run(db, "index", "--no-progress", str(tmp_path / "m"))
    ref = reference_hashes(big)
    content = json.loads(run(db, "hash", "--json", str(big)).stdout)["content_hash"]
    queries = {
        "sha256": ref["sha256"].lower(),
        "autov2": ref["autov2"],
        "autov1": ref["autov1"].lower(),
        "autov3_short": ref["autov3_short"].lower(),
        "autov3": "0x" + ref["autov3"],
        "crc32": ref["crc32"],
        "crc32_conventional": ref["crc32_conventional"].lower(),
        "blake3": ref["blake3"][:20],
        "content_hash": content,
    }
    for kind, query in queries.items():
        result = run(db, "find", "--json", query)
        assert result.exit_code == 0, (kind, result.output)
        hits = [json.loads(line) for line in result.stdout.splitlines()]
        assert [h["path"] for h in hits] == [str(big.resolve())], kind
        assert kind in hits[0]["matched"] or (kind == "blake3" and "blake3" in hits[0]["matched"]), (kind, hits[0]["matched"])
    assert run(db, "find", "00000000DEADBEEF").exit_code == 1


def test_killed_index_resumes_to_the_same_store(tmp_path: Path):
    root = tmp_path / "many"
    for i in range(120):
        write_lora(root / f"d{i % 7}" / f"m{i:03}.safetensors", i, size=20_000)
    full_db, killed_db = tmp_path / "full.sqlite", tmp_path / "killed.sqlite"
    cmd = [sys.executable, "-m", "consentry", "--db"]
    subprocess.run([*cmd, str(full_db), "index", "--no-progress", str(root)], check=True, capture_output=True)

    proc = subprocess.Popen([*cmd, str(killed_db), "index", "--no-progress", str(root)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if killed_db.exists():
            try:
                with sqlite3.connect(killed_db, timeout=1) as conn:
                    if conn.execute("SELECT count(*) FROM files").fetchone()[0] >= 10:
                        break
            except sqlite3.OperationalError:
                pass
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = rows(killed_db)
    assert 10 <= len(partial) < 120, len(partial)

    subprocess.run([*cmd, str(killed_db), "index", "--no-progress", str(root)], check=True, capture_output=True)
    assert rows(killed_db) == rows(full_db)


def test_demo_runs_end_to_end(tmp_path: Path):
    result = run(tmp_path / "db.sqlite", "demo", "files", "--dir", str(tmp_path / "world"))
    assert result.exit_code == 0, result.output
    assert "mirror/LORA.safetensors" in result.stdout  # found by AutoV3 and content_hash
    assert "quarantine" in result.stdout and "posix.system" in result.stdout


def test_diffusers_folder_indexed_as_one_model_too(tmp_path: Path):
    root = tmp_path / "models"
    pipe = root / "pipe"
    write_lora(pipe / "unet" / "diffusion_pytorch_model.safetensors", 1)
    write_lora(pipe / "vae" / "diffusion_pytorch_model.safetensors", 2)
    (pipe / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}')
    write_lora(root / "solo.safetensors", 3)
    db = tmp_path / "db.sqlite"
    first = run(db, "index", "--no-progress", str(root))
    assert first.exit_code == 0, first.output
    stored = rows(db)
    folder = stored[str(pipe.resolve())]
    assert folder["format"] == "diffusers" and folder["verdict"] == "clean" and folder["content_hash"]
    assert folder["sha256"] is None  # a folder has no byte hashes, only content_hash
    assert len(stored) == 4  # the folder, its two weight files, solo
    assert "indexed 0 file(s), 4 unchanged" in run(db, "index", "--no-progress", str(root)).stdout
    hashed = json.loads(run(db, "hash", "--json", str(pipe)).stdout)
    assert hashed["content_hash"] == folder["content_hash"]


def test_progress_bar_shows_bytes_per_second(tmp_path: Path, tree: Path, monkeypatch: pytest.MonkeyPatch):
    import rich.console

    real_console = rich.console.Console
    consoles = []

    def recording_console(*args, **kwargs):
        consoles.append(real_console(*args, **{**kwargs, "force_terminal": True, "width": 120, "record": True}))
        return consoles[-1]

    monkeypatch.setattr(rich.console, "Console", recording_console)
    result = run(tmp_path / "db.sqlite", "index", "--progress", str(tree))
    assert result.exit_code == 2  # the renamed PNG in the tree
    text = consoles[0].export_text()
    assert "/s" in text and "files" in text, text
