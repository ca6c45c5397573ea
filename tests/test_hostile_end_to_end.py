"""Every kind of bad input through the real CLI: one line, exit 2, recorded, nothing lost.

The library-level tests (test_pickle_vm, test_zip_attacks, test_safetensors_reader) cover
each attack in depth; this file checks the promise the CLI makes for all of them together.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.numpy import save_file

import hostile_pickles as hp
import hostile_zips as hz
from consentry.cli import cli


def build_corpus(folder: Path, canary: Path) -> dict[str, tuple[str, str]]:
    """Write hostile files; returns file name -> (expected verdict, text the problem must contain)."""
    folder.mkdir(parents=True)
    cmd = f"touch {canary}"
    expected: dict[str, tuple[str, str]] = {}

    def put(name: str, data: bytes, verdict: str, problem: str) -> None:
        (folder / name).write_bytes(data)
        expected[name] = (verdict, problem)

    for protocol in (0, 2, 4, 5):
        put(f"os_system_p{protocol}.ckpt", hp.os_system(cmd, protocol), "quarantine", "refused global 'os.system'")
    put("eval_p2.pt", hp.builtins_call("eval", hp.touch_code(canary), 2), "quarantine", "refused global '__builtin__.eval'")
    put("inst.pt", hp.inst_payload("os", "system", cmd), "quarantine", "refused opcode INST")
    put("obj_pop.pt", hp.obj_then_pop("os", "system", cmd), "quarantine", "refused global 'os.system'")
    put("memo_mixed.pt", hp.memo_mixed("os", "system", cmd), "quarantine", "refused global 'os.system'")
    put("memo_dangling.pt", hp.memo_dangling(), "quarantine", "BINGET of unset memo key")
    put("introspection.pt", hp.dotted_introspection(), "quarantine",
        "refused global 'builtins.print.__class__.__base__.__subclasses__'")
    put("itemgetter.pt", hp.itemgetter_stack_global(cmd), "quarantine", "refused global 'operator.itemgetter'")
    put("importlib.pt", hp.importlib_getattr_join(cmd), "quarantine", "refused global 'builtins.getattr'")
    put("broken_prefix.pt", hp.os_system(cmd, 2)[:-1] + b"\xff\xfe garbage", "quarantine", "refused global 'os.system'")

    # A real torch archive whose data.pkl is replaced by a payload, and one with zip tricks.
    good = folder.parent / "good_source.pt"
    torch.save({"w": torch.ones(2, 2)}, good)
    members = hz.members_of(good)
    evil_members = [hz.Member(m.name, hz.payload_pickle(canary) if m.name.endswith("data.pkl") else m.data) for m in members]
    put("torch_payload.ckpt", hz.build(hz.Archive(members=evil_members)), "quarantine", "data.pkl: refused global 'posix.system'")
    flagged = [hz.Member(m.name, m.data, flags=0x809) for m in members]
    put("zip_encrypted_flag.ckpt", hz.build(hz.Archive(members=flagged)), "quarantine", "flag bit 0x1 (encrypted)")
    slip = members + [hz.Member("../../etc/cron.d/x", b"* * * * * root " + cmd.encode())]
    put("zip_slip.pt", hz.build(hz.Archive(members=slip)), "quarantine", "zip member name '../../etc/cron.d/x'")
    put("polyglot.pt", hz.build(hz.Archive(members=members, prefix=b"GIF89a" + b"\0" * 58)), "rejected", "no known magic bytes")
    put("archive.7z.pt", b"7z\xbc\xaf\x27\x1c" + b"\0" * 64, "quarantine", "7z archive: archives are not unpacked")

    header = b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    st = struct.pack("<Q", len(header)) + header + b"\0" * 8
    put("trailing.safetensors", st + b"polyglot", "rejected", "8 trailing bytes after the tensor data")
    put("truncated.safetensors", st[:-3], "rejected", "tensor 'a' ends at byte 70, beyond the end of the file (67 bytes)")
    put("truncated_in_header.safetensors", st[:30], "rejected",
        f"safetensors header length {len(header)} exceeds the file (30 bytes): only 22 bytes follow the length field")
    put("length_beyond_file.safetensors", struct.pack("<Q", 4096) + st[8:], "rejected",
        f"safetensors header length 4096 exceeds the file ({len(st)} bytes)")
    put("negative_length.safetensors", struct.pack("<q", -1) + st[8:], "rejected",
        "exceeds the limit of 100000000 bytes; read as a signed 64-bit integer it is negative (-1)")
    dup = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    put("duplicate_keys.safetensors", struct.pack("<Q", len(dup)) + dup + b"\0" * 4, "rejected", "duplicate tensor name 'a' in header")
    put("huge_header.safetensors", struct.pack("<Q", 2**63) + b"{}", "rejected",
        f"safetensors header length {2**63} exceeds the limit of 100000000 bytes")
    put("pickle_named.safetensors", hp.os_system(cmd, 2), "quarantine", "refused global 'os.system'")
    put("empty.ckpt", b"", "rejected", "empty file")
    put("png_named.pt", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "rejected", "no known magic bytes")
    return expected


@pytest.fixture
def corpus(tmp_path: Path, canary: Path) -> tuple[Path, dict[str, tuple[str, str]]]:
    folder = tmp_path / "hostile"
    return folder, build_corpus(folder, canary)


def test_hash_gives_one_line_and_exit_2_for_each(corpus):
    folder, expected = corpus
    runner = CliRunner()
    for name, (verdict, problem) in expected.items():
        result = runner.invoke(cli, ["hash", str(folder / name)], catch_exceptions=False)
        assert result.exit_code == 2, name
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (name, lines)
        assert lines[0].startswith(f"consentry: {folder / name}: {verdict}: "), (name, lines[0])
        assert problem in lines[0], (name, lines[0])


def test_index_records_each_and_keeps_what_was_stored(tmp_path: Path, corpus):
    folder, expected = corpus
    good_dir = tmp_path / "good"
    good_dir.mkdir()
    save_file({"x": np.arange(6, dtype=np.float32)}, str(good_dir / "fine.safetensors"))
    db = tmp_path / "db.sqlite"
    runner = CliRunner()
    assert runner.invoke(cli, ["--db", str(db), "index", "--no-progress", str(good_dir)]).exit_code == 0
    with sqlite3.connect(db) as conn:
        before = conn.execute("SELECT * FROM files").fetchall()

    result = runner.invoke(cli, ["--db", str(db), "index", "--no-progress", str(folder)], catch_exceptions=False)
    assert result.exit_code == 2
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        stored = {Path(r["path"]).name: r for r in conn.execute("SELECT * FROM files")}
        after_good = conn.execute("SELECT * FROM files WHERE path LIKE ?", (f"{good_dir.resolve()}%",)).fetchall()
    assert [tuple(r) for r in after_good] == before  # nothing already stored was touched
    for name, (verdict, problem) in expected.items():
        assert name in stored, name
        assert stored[name]["verdict"] == verdict, (name, stored[name]["problem"])
        assert problem in stored[name]["problem"], (name, stored[name]["problem"])
        if stored[name]["size"]:
            assert stored[name]["sha256"], name  # bad files still get an identity
    assert len(result.stderr.strip().splitlines()) == len(expected)


def test_non_regular_paths_do_not_block(tmp_path: Path):
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    dangling = tmp_path / "gone.ckpt"
    dangling.symlink_to(tmp_path / "nowhere")
    runner = CliRunner()
    for path in (fifo, dangling):
        result = runner.invoke(cli, ["hash", str(path)], catch_exceptions=False)
        assert result.exit_code == 2 and str(path) in result.stderr
