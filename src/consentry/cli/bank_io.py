"""`consentry bank import` and `consentry bank export`: lists in, exchange files out.

Registered on the ``bank`` group by importing this module (``consentry.cli`` does).
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from consentry.cli._output import emit_json
from consentry.cli.banks import bank_group
from consentry.store import Store

if TYPE_CHECKING:
    from consentry.banks.importing import ImportReport

SHOWN_DUPLICATES = 20  # duplicates listed in the text report (all rejected rows are listed)


def _print_report(report: ImportReport) -> None:
    state = "imported" if report.committed else "NOT imported (strict mode: nothing was written)"
    created = ", bank created" if report.created_bank else ""
    click.echo(f"{report.source or 'input'} -> bank {report.bank!r}: {state}{created}")
    click.echo(f"  rows {report.rows_total:,}: {report.added:,} added, {report.duplicates:,} duplicates,"
               f" {report.rejected:,} rejected")  # fmt: skip
    for note in report.notes:
        click.echo(f"  note: {note}")
    for problem in report.rejected_rows:
        click.echo(f"  row {problem.row}: rejected: {problem.reason}")
    for problem in report.duplicate_rows[:SHOWN_DUPLICATES]:
        click.echo(f"  row {problem.row}: duplicate: {problem.reason}")
    if report.duplicates > SHOWN_DUPLICATES:
        click.echo(f"  ... {report.duplicates - SHOWN_DUPLICATES:,} more duplicates (--json lists them)")
    if report.rejected > len(report.rejected_rows):
        click.echo(f"  ... {report.rejected - len(report.rejected_rows):,} more rejected rows not listed")


@bank_group.command("import")
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "jsonl"]), default=None,
              help="Input format (default: from the file name, else its content). Exchange files are recognised.")
@click.option("--create", is_flag=True, help="Create the bank if it does not exist (exchange files always may).")
@click.option("--actor", default=None, help="Who is importing (recorded in each entry's provenance).")
@click.option("--strict", is_flag=True, help="Import nothing if any row is rejected.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--progress/--no-progress", default=None, help="Rows-read lines on stderr (default: on a terminal).")
@click.pass_context
def import_cmd(ctx: click.Context, name: str, file: str, fmt: str | None, create: bool, actor: str | None,
               strict: bool, as_json: bool, progress: bool | None) -> None:  # fmt: skip
    """Import a CSV / JSON / JSON Lines list of models, or a consentry exchange file, into a bank.

    One transaction: the bank gets the whole import or none of it. Rejected rows are reported
    with their row number and reason and the rest is imported (exit status 2), unless --strict.
    Rows whose hash is already in the bank, or earlier in the file, are counted as duplicates.

    \b
    Columns, any case and spelling: Name/Model Name/title, URL/old URL/civitai_url/link,
    SHA256, AutoV1, AutoV2, AutoV3, CRC32, BLAKE3, content_hash, hash (+ hash type), labels, note.
    Example:
      consentry bank import civitai-deleted deleted_models.csv --create --actor alice
    """
    from consentry.banks.importing import ImportAborted, import_rows

    show = sys.stderr.isatty() if progress is None else progress

    def tick(rows: int) -> None:
        click.echo(f"consentry: bank import: {rows:,} rows read", err=True)

    source = sys.stdin.buffer if file == "-" else Path(file)
    with Store.open(ctx.obj.get("db")) as store:
        try:
            report = import_rows(store, name, source, fmt=fmt, actor=actor, create=create, strict=strict,
                                 progress=tick if show else None, source_name="stdin" if file == "-" else None)  # fmt: skip
        except ImportAborted as exc:
            report = exc.report
    if as_json:
        emit_json(report.as_dict())
    else:
        _print_report(report)
    ctx.exit(2 if report.rejected else 0)


@bank_group.command("export")
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to FILE (default: standard output). Written to FILE.partial, then renamed.")
@click.pass_context
def export_cmd(ctx: click.Context, name: str, output: Path | None) -> None:
    """Export a bank in consentry's exchange format (JSON Lines), which `bank import` reads back.

    \b
    Example:
      consentry bank export civitai-deleted -o civitai-deleted.consentry.jsonl
    """
    from consentry.banks.exchange import export_bank

    with Store.open(ctx.obj.get("db")) as store:
        if output is None:
            stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n")
            try:
                export_bank(store, name, stdout)
            finally:
                stdout.flush()
                stdout.detach()  # leave stdout open for click
            return
        partial = output.with_name(output.name + ".partial")  # a killed export never looks complete
        try:
            with open(partial, "w", encoding="utf-8", newline="\n") as out:
                count = export_bank(store, name, out)
            os.replace(partial, output)
        finally:
            partial.unlink(missing_ok=True)
    click.echo(f"exported {count:,} entries of bank {name!r} to {output}", err=True)
