"""`consentry scan`: check model files against every enabled bank."""

from __future__ import annotations

import sys
from pathlib import Path

from typing import TYPE_CHECKING

import click

from consentry.cli._output import emit_json
from consentry.errors import ConsentryError
from consentry.store import Store

if TYPE_CHECKING:
    from consentry.banks.matching import ScanResult

EXIT_NO_MATCH, EXIT_MATCH, EXIT_QUARANTINE, EXIT_FAILED = 0, 1, 2, 3


@click.command("scan")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
@click.option("--queue/--no-queue", default=True, show_default=True, help="Put each match in the review queue.")
@click.pass_context
def scan_cmd(ctx: click.Context, paths: tuple[Path, ...], as_json: bool, queue: bool) -> None:
    """Check model files and images (folders are walked) against every enabled bank.

    Prints per file `match`, `no match` or `quarantine`, and for each match the bank, the
    signal that matched and the entry's provenance; an image (JPEG, PNG, WebP, GIF, BMP, TIFF,
    by its bytes) also matches by PDQ hash, rotated and mirrored copies included, with the
    distance and the bank's threshold. Exit status: 0 nothing matched, 1 something
    matched, 2 nothing matched but a file could not be fully checked (quarantine), 3 the scan
    itself failed (the store unreachable or busy), 70 a bug.

    \b
    Example:
      consentry scan ./uploads --json
    """
    from consentry.banks.matching import STATUS_MATCH, STATUS_QUARANTINE, scan_paths  # fingerprints, numpy

    worst = EXIT_NO_MATCH
    try:
        with Store.open(ctx.obj.get("db")) as store:
            for result in scan_paths(store, paths, queue=queue, source="cli"):
                if as_json:
                    emit_json(result.as_json())
                else:
                    _print_result(result)
                if result.status == STATUS_MATCH:
                    worst = EXIT_MATCH
                elif result.status == STATUS_QUARANTINE and worst == EXIT_NO_MATCH:
                    worst = EXIT_QUARANTINE
    except ConsentryError as exc:
        if exc.exit_code != EXIT_MATCH:
            raise
        # a store or other failure that would exit 1 must not read as "matched"
        click.echo(f"consentry: error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    sys.exit(worst)


def _print_result(result: ScanResult) -> None:
    click.echo(f"{result.status:<10} {result.path}")
    for m in result.matches + result.negative:
        entry = m.entry
        where = f"{entry.name or '-'}" + (f" <{entry.url}>" if entry and entry.url else "") if entry else "-"
        signals = ", ".join(f"{t} {v}" for t, v, _bits in m.signals)
        if m.score is not None and m.measure == "distance":
            signals += f" (distance {m.score:g} <= threshold {m.threshold:g})"
        elif m.score is not None:
            signals += f" (score {m.score:.3f}, threshold {m.threshold:.3f})"
        suppressed = f"  [suppressed by negative bank {m.suppressed_by}]" if m.suppressed_by else ""
        if m.dismissed_in:
            suppressed += f"  [dismissed in review item #{m.dismissed_in}]"
        weak = "  [weak]" if m.weak else ""
        click.echo(f"    {m.bank_kind} bank {m.bank}: {where}  via {signals}{weak}{suppressed}")
        if m.reason and m.measure == "distance":
            click.echo(f"      {m.reason}")
        if entry and entry.provenance:
            provenance = ", ".join(f"{k}={v}" for k, v in entry.provenance.items() if v is not None)
            click.echo(f"      provenance: {provenance}")
        if m.review_item:
            click.echo(f"      review item #{m.review_item}")
    for note in result.notes:
        click.echo(f"    note: {note}")
