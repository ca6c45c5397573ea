"""``consentry mirrors BANK``: where the copies of every banked model live now."""

from __future__ import annotations

import csv
import json
import sys

from typing import TYPE_CHECKING

import click

from consentry.cli._output import emit_json

if TYPE_CHECKING:  # the finder pulls in numpy and the fingerprint index: imported when the command runs
    from consentry.mirrors import MirrorReport

CSV_COLUMNS = ("bank", "entry_id", "entry_name", "entry_url", "mirror_url", "hub", "matched_by", "signals",
               "hub_seen", "first_seen", "new", "evidence")  # fmt: skip


@click.command("mirrors")
@click.argument("bank")
@click.option("--archive/--no-archive", default=False, show_default=True,
              help="Also ask the archive site (CivArchive) for the mirrors it lists of each SHA-256.")
@click.option("--archive-url", envvar="CONSENTRY_CIVARCHIVE_URL",
              help="Archive API base (default https://civarchive.com/api; env CONSENTRY_CIVARCHIVE_URL).")
@click.option("--fingerprints/--no-fingerprints", default=True, show_default=True,
              help="Match converted and merged copies by weight fingerprint (hub files crawled with --fingerprints).")
@click.option("--all", "show_all", is_flag=True, help="List every mirror on record, not only those new in this run.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.pass_context
def mirrors_cmd(ctx: click.Context, bank: str, archive: bool, archive_url: str | None, fingerprints: bool,
                show_all: bool, fmt: str) -> None:  # fmt: skip
    """For every model in BANK, find its copies on the crawled hubs: the same file (SHA256), the
    same tensors with a rewritten header (AutoV3), a converted or merged copy (fingerprint), and
    the archive site's mirror list. Mirrors are recorded: a later run reports only what is new
    (--all for everything). Crawl the hubs first (`consentry crawl ...`).

    \b
    Examples:
      consentry mirrors deleted-likeness
      consentry mirrors deleted-likeness --archive --format csv > mirrors.csv
    """
    from consentry.hubs.civarchive import CivArchiveClient
    from consentry.mirrors import find_mirrors
    from consentry.store import Store

    client = CivArchiveClient(archive_url) if archive else None
    try:
        with Store.open(ctx.obj.get("db")) as store:
            report = find_mirrors(store, bank, archive=client, fingerprints=fingerprints)
    finally:
        if client is not None:
            client.close()
    if fmt == "json":
        emit_json((report if show_all else report.only_new()).as_dict())
    elif fmt == "csv":
        write_csv(report if show_all else report.only_new(), sys.stdout)
    else:
        print_table(report, show_all)
    if report.failed_source:  # the report above stands; the exit status says it is incomplete
        click.echo(f"consentry: error: {report.failed_source}", err=True)
        ctx.exit(1)


def write_csv(report: "MirrorReport", out) -> None:
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for item in report.entries:
        for m in item.mirrors:
            writer.writerow([report.bank, item.entry.id, item.entry.name or "", item.entry.url or "", m.url, m.hub,
                             m.matched_by, "+".join(dict.fromkeys(e["signal"] for e in m.evidence)), m.hub_seen or "",
                             m.first_seen or "", "yes" if m.new else "no", json.dumps(m.evidence, default=str)])  # fmt: skip


def _how(m) -> str:
    parts = []
    for e in m.evidence:
        if e["signal"] == "fingerprint":
            parts.append(f"fingerprint {e['verdict']} {e['score']:.3f} >= {e['threshold']:g} (via {e['via']})")
        elif e["signal"] == "archive":
            parts.append("archive" + (f" (gone {e['deleted_at']})" if e.get("deleted_at") else ""))
        else:
            parts.append(f"{e['signal']} {str(e['value'])[:12]}")
    return "; ".join(dict.fromkeys(parts))


def print_table(report: "MirrorReport", show_all: bool = False) -> None:
    """Per banked model, each mirror (only the new ones unless ``show_all``) with its evidence."""
    click.echo(f"bank {report.bank}: {len(report.entries)} model(s), {report.hub_files_scanned} hub file(s) scanned"
               + (f", {report.archive_lookups} archive lookup(s)" if report.archive_lookups else "")
               + f"; {report.mirror_count} mirror(s), {report.new_count} new"
               + ("" if show_all or report.new_count == report.mirror_count else " (listed below; --all for every one)"))  # fmt: skip
    for item in (report if show_all else report.only_new()).entries:
        if not item.mirrors:
            continue
        e = item.entry
        click.echo(f"\n{e.name or '(no name)'}  [entry {e.id}]" + (f"  was {e.url}" if e.url else ""))
        for m in item.mirrors:
            seen = f"seen {m.hub_seen[:19]}Z" if m.hub_seen else "not crawled"
            click.echo(f"  {m.matched_by:<17} {m.hub:<12} {m.url}")
            click.echo(f"  {'':<17} {'':<12} {_how(m)}; {seen}; first reported {(m.first_seen or '')[:19]}Z"
                       + ("  NEW" if m.new else ""))  # fmt: skip
    for note in report.notes:
        click.echo(f"note: {note}")
