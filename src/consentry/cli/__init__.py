"""The ``consentry`` command: a thin click layer over the library.

Every command calls one library function and turns :class:`~consentry.errors.ConsentryError`
into one line on stderr and an exit status (2 for bad input). ``CONSENTRY_DEBUG=1`` shows
tracebacks instead.
"""

from __future__ import annotations

import click

from consentry import __version__
from consentry.cli.files import find_cmd, hash_cmd, index_cmd, inspect_cmd
from consentry.cli.banks import bank_group
from consentry.cli.crawl import crawl_group
from consentry.cli.mirrors import mirrors_cmd
from consentry.cli.remote import remote_cmd
from consentry.cli.people import person_group, registry_group
from consentry.cli.likeness import likeness_cmd  # also adds `person find`
from consentry.cli import bank_io  # noqa: F401  (adds `bank import` / `bank export` to bank_group)
from consentry.cli.demo import demo_cmd
from consentry.cli.fingerprints import base_group, compare_cmd, fingerprint_cmd, similar_cmd
from consentry.cli.scan import scan_cmd
from consentry.cli.serve import apikey_group, review_group, serve_cmd
from consentry.cli._output import OneLineErrors


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="consentry")
@click.option(
    "--db",
    envvar="CONSENTRY_DB",
    help="SQLite file or postgresql:// URL (default: $CONSENTRY_DB or ~/.local/share/consentry/consentry.db).",
)
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:
    """Find, trace and help take down AI models that reproduce real people without consent."""
    ctx.ensure_object(dict)
    ctx.obj["db"] = db


for command in (hash_cmd, inspect_cmd, index_cmd, find_cmd, bank_group, scan_cmd, demo_cmd, fingerprint_cmd, compare_cmd,
                similar_cmd, base_group, serve_cmd, apikey_group,
                review_group, crawl_group, mirrors_cmd, remote_cmd, likeness_cmd, person_group,
                registry_group):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="consentry")
