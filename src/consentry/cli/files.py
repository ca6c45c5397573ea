"""Commands about model files: hash, inspect, index, find."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from consentry.cli._output import emit_json, human_size, report_problem
from consentry.formats.limits import ReadLimits

# The library is imported inside each command, so `consentry --help` and `consentry hash` do not
# pay for what they do not use (numpy, the store, the fingerprint index): see README "Performance".
if TYPE_CHECKING:
    from consentry.identity.identify import ModelIdentity
    from consentry.inspection.report import InspectReport
    from consentry.store import Store

_HASH_ROWS = (
    ("SHA256", "sha256"),
    ("AutoV1", "autov1"),
    ("AutoV2", "autov2"),
    ("AutoV3", "autov3"),
    ("CRC32", "crc32"),
    ("BLAKE3", "blake3"),
    ("content", "content_hash"),
)

max_header_option = click.option(
    "--max-header-mb",
    type=click.FloatRange(min=0.001),
    default=100.0,
    show_default=True,
    help="Largest safetensors header accepted, in MB.",
)
workers_option = click.option("--workers", type=click.IntRange(min=1), default=None, help="Hashing threads (default: CPU count).")


def _limits(max_header_mb: float) -> ReadLimits:
    return ReadLimits(max_header_bytes=int(max_header_mb * 1_000_000))


@click.command("hash")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
@max_header_option
@workers_option
def hash_cmd(files: tuple[Path, ...], as_json: bool, max_header_mb: float, workers: int | None) -> None:
    """Print every hash the hubs use (SHA256, AutoV1/V2/V3, CRC32, BLAKE3) and content_hash.

    Upper-case hex, as Civitai lists them. A file that is not a clean model still gets its
    byte hashes; its problem is printed on stderr and the exit status is 2.

    \b
    Example:
      consentry hash lora.safetensors model.ckpt --json
    """
    from consentry.formats.sniff import sniff_path
    from consentry.formats.tensors import Format
    from consentry.identity.identify import identify

    limits = _limits(max_header_mb)
    failed = False
    for path in files:
        if path.is_dir() and sniff_path(path) not in (Format.DIFFUSERS, Format.SHARDED):
            report_problem(str(path), "rejected", "is a directory, not a diffusers folder or shard set (use 'consentry index')")
            failed = True
            continue
        ident = identify(path, limits=limits, workers=workers)
        if as_json:
            emit_json(ident.as_json())
        else:
            _print_identity(ident)
        if ident.problem:
            report_problem(ident.path, str(ident.verdict), ident.problem)
            failed = True
    sys.exit(2 if failed else 0)


def _print_identity(ident: ModelIdentity) -> None:
    click.echo(f"{ident.path}  ({ident.format}, {ident.size if ident.size is not None else '?'} bytes, {ident.verdict})")
    if ident.hashes is None:
        return
    values = ident.as_json()
    for label, key in _HASH_ROWS:
        value = values.get(key)
        if key == "autov3" and value:
            value = f"{value}  (short {values['autov3_short']})"
        elif key == "crc32" and value:
            value = f"{value}  (conventional {values['crc32_conventional']})"
        click.echo(f"  {label:<8} {value if value else '-'}")


@click.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@max_header_option
@workers_option
def inspect_cmd(path: Path, as_json: bool, max_header_mb: float, workers: int | None) -> None:
    """Show what a model is: format, tensors, dtypes, architecture (best effort), and its
    training metadata decoded (kohya ss_*, modelspec.*, embedded hashes checked).

    \b
    Example:
      consentry inspect lora.safetensors
    """
    from consentry.inspection.report import inspect_model

    report = inspect_model(path, limits=_limits(max_header_mb), workers=workers)
    if as_json:
        emit_json(report.as_json())
    else:
        _print_report(report)
    if report.identity.problem:
        report_problem(report.identity.path, str(report.identity.verdict), report.identity.problem)
        sys.exit(2)


def _print_report(report: InspectReport) -> None:
    data = report.as_json()
    click.echo(f"{data['path']}")
    click.echo(f"  format       {data['format']}   verdict {data['verdict']}   size {human_size(data['size'])}")
    if "tensor_count" in data:
        dtypes = ", ".join(f"{k}×{v}" for k, v in data["dtypes"].items()) or "-"
        click.echo(f"  tensors      {data['tensor_count']:,}   parameters {data['parameter_count']:,}   dtypes {dtypes}")
    arch = data.get("architecture")
    if arch:
        extra = f"   rank {arch['rank']}, {arch['module_count']} modules" if arch.get("rank") else ""
        click.echo(f"  architecture {report.architecture.label()}{extra}   (best effort)")
        for line in arch["evidence"]:
            click.echo(f"               - {line}")
    for note in data.get("notes") or []:
        click.echo(f"  note         {note}")
    if data["hashes"].get("sha256") or data["hashes"].get("content_hash"):
        click.echo(f"  sha256       {data['hashes']['sha256'] or '-'}")
        click.echo(f"  autov3       {data['hashes']['autov3'] or '-'}")
        click.echo(f"  content      {data['hashes']['content_hash'] or '-'}")
    meta = data.get("metadata")
    if not meta:
        return
    for key, value in meta["kohya"].items():
        click.echo(f"  kohya.{key:<20} {value}")
    for folder in meta["training_folders"]:
        images = f", {folder['images']} images" if folder["images"] is not None else ""
        repeats = f"{folder['repeats']} repeats" if folder["repeats"] is not None else "repeats ?"
        click.echo(f"  training folder {folder['folder']!r}: name {folder['name']!r}, {repeats}{images}")
    if meta["top_tags"]:
        click.echo("  top tags     " + ", ".join(f"{tag} ({count})" for tag, count in meta["top_tags"][:10]))
    for key, value in meta["modelspec"].items():
        click.echo(f"  modelspec.{key:<16} {value}")
    for key, check in meta["embedded_hashes"].items():
        click.echo(f"  {key:<26} {check['claimed']}  [{check['status']}]")
    for problem in meta["problems"]:
        click.echo(f"  metadata problem: {problem}")


@click.command("index")
@click.argument("root", type=click.Path(exists=True, path_type=Path))
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@max_header_option
@workers_option
@click.pass_context
def index_cmd(ctx: click.Context, root: Path, progress: bool | None, max_header_mb: float, workers: int | None) -> None:
    """Walk ROOT, identify every model file (found by magic bytes) and record it in the store.

    Incremental: files whose size, mtime and inode are unchanged are skipped. Resumable: each
    file is committed on its own. Bad files are recorded as rejected/quarantine with the reason;
    the exit status is 2 if this run flagged any.

    \b
    Example:
      consentry index ~/Downloads/models
    """
    from consentry.indexing import index_tree
    from consentry.store import Store

    show = sys.stderr.isatty() if progress is None else progress
    with Store.open(ctx.obj.get("db")) as store:
        if show:
            result = _index_with_progress(store, root, _limits(max_header_mb), workers)
        else:
            result = index_tree(store, root, limits=_limits(max_header_mb), workers=workers)
        click.echo(
            f"indexed {result.indexed} file(s), {result.unchanged} unchanged, {result.flagged} flagged, "
            f"{human_size(result.bytes_hashed)} hashed -> {store.path}"
        )
    for path, verdict, problem in result.flagged_files:
        report_problem(path, verdict, problem)
    sys.exit(2 if result.flagged else 0)


def _index_with_progress(store: Store, root: Path, limits: ReadLimits, workers: int | None):
    from consentry.indexing import index_tree
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (
        TextColumn("[bold]index[/]"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[files]} files"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True, force_terminal=True), transient=True) as bar:
        task = bar.add_task("index", total=None, files=0)

        def on_start(files: int, total_bytes: int) -> None:
            bar.update(task, total=total_bytes)

        def on_file(candidate, status: str) -> None:
            bar.update(task, advance=candidate.size, files=bar.tasks[task].fields["files"] + 1)

        return index_tree(store, root, limits=limits, workers=workers, on_start=on_start, on_file=on_file)


@click.command("find")
@click.argument("hashes", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per match.")
@click.pass_context
def find_cmd(ctx: click.Context, hashes: tuple[str, ...], as_json: bool) -> None:
    """Look up indexed files by any hash form: SHA256, AutoV1/V2/V3 (full or the 12-char
    short form), CRC32 (either byte order), BLAKE3, content_hash — any case, full or prefix
    (at least 8 hex digits). Exit status 1 when nothing matches, like grep.

    \b
    Example:
      consentry find 83EFF4A462AB
    """
    from consentry.identity.forms import normalise_hash
    from consentry.store import Store

    values = [normalise_hash(h) for h in hashes]
    found_any = False
    with Store.open(ctx.obj.get("db")) as store:
        for value in values:
            matches = store.find_hash(value)
            found_any = found_any or bool(matches)
            for stored, kinds in matches:
                if as_json:
                    emit_json({"query": value, "matched": kinds, "path": stored.path, "format": stored.format,
                               "verdict": stored.verdict, "problem": stored.problem, "size": stored.size,
                               "architecture": stored.architecture, **stored.hashes})  # fmt: skip
                else:
                    click.echo(f"{value}  {'+'.join(kinds):<14} {stored.verdict:<10} {stored.path}")
            if not matches and not as_json:
                click.echo(f"{value}  no match", err=True)
    sys.exit(0 if found_any else 1)
