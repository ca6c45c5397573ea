"""`consentry serve`, `consentry apikey ...` and `consentry review ...`: the HTTP service, its keys,
and the review queue's decisions from a terminal (the same library calls the service makes)."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from consentry.cli._output import emit_json
from consentry.store import Store, default_db_path
from consentry.store.api_keys import ROLES

if TYPE_CHECKING:
    from consentry.store.reviews import ReviewItem


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-upload-mb", default=4096, show_default=True, type=click.IntRange(1), help="Largest model upload to /v1/scan.")
@click.option("--max-import-mb", default=1024, show_default=True, type=click.IntRange(1), help="Largest bank file to import.")
@click.option("--keep-uploads", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep scanned uploads here, named by SHA-256 (default: delete each once scanned).")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.pass_context
def serve_cmd(ctx: click.Context, host: str, port: int, max_upload_mb: int, max_import_mb: int, keep_uploads: Path | None,
              log_level: str) -> None:  # fmt: skip
    """Run the HTTP service (OpenAPI description at /openapi.json).

    Every route except /health needs an API key: create one with `consentry apikey create`.

    \b
    Example:
      consentry apikey create moderation-bot --role scanner
      consentry serve --port 8000 --max-upload-mb 2048
    """
    import uvicorn

    from consentry.api import create_app

    app = create_app(ctx.obj.get("db") or default_db_path(), max_upload_bytes=max_upload_mb * 1024 * 1024,
                     max_import_bytes=max_import_mb * 1024 * 1024, keep_uploads_dir=keep_uploads)  # fmt: skip
    uvicorn.run(app, host=host, port=port, workers=1, log_level=log_level)


# --- API keys ------------------------------------------------------------------------------------


@click.group("apikey")
def apikey_group() -> None:
    """API keys for the HTTP service. Roles: scanner (read-only) < reviewer < admin."""


@apikey_group.command("create")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES), help="scanner: scan/lookup/read; reviewer: + decisions; admin: everything.")
@click.pass_context
def apikey_create_cmd(ctx: click.Context, name: str, role: str) -> None:
    """Create a key and print its secret — shown this once, never stored."""
    with Store.open(ctx.obj.get("db")) as store:
        secret = store.api_keys.create(name, role)
    click.echo(secret)
    click.echo(f"created {role} key {name!r}: the secret above is shown only now", err=True)


@apikey_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def apikey_list_cmd(ctx: click.Context, as_json: bool) -> None:
    """List keys (never their secrets)."""
    with Store.open(ctx.obj.get("db")) as store:
        keys = store.api_keys.list()
    for key in keys:
        if as_json:
            emit_json(key.as_dict())
        else:
            state = f"revoked {key.revoked_at}" if key.revoked_at else "active"
            click.echo(f"{key.name:<28} {key.role:<9} created {key.created_at}  {state}")


@apikey_group.command("revoke")
@click.argument("name")
@click.pass_context
def apikey_revoke_cmd(ctx: click.Context, name: str) -> None:
    """Revoke a key at once (it stays listed, with when)."""
    with Store.open(ctx.obj.get("db")) as store:
        store.api_keys.revoke(name)
    click.echo(f"revoked API key {name!r}")


# --- review queue --------------------------------------------------------------------------------


@click.group("review")
def review_group() -> None:
    """The review queue: each match a person confirms or dismisses; an appeal reopens it."""


@review_group.command("list")
@click.option("--status", type=click.Choice(["open", "confirmed", "dismissed", "all"]), default="open", show_default=True)
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def review_list_cmd(ctx: click.Context, status: str, limit: int, as_json: bool) -> None:
    """List review items, oldest first."""
    with Store.open(ctx.obj.get("db")) as store:
        items = store.reviews.list(None if status == "all" else status, limit=limit)
    for item in items:
        if as_json:
            emit_json(item.as_dict())
        else:
            click.echo(f"#{item.id:<6} {item.status:<10} {item.file_name or '-':<32} bank {item.bank_name} via "
                       f"{item.signal_type} {item.signal_value[:16]}  ({item.source or '-'}, {item.created_at})")  # fmt: skip


@review_group.command("show")
@click.argument("item_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def review_show_cmd(ctx: click.Context, item_id: int, as_json: bool) -> None:
    """Show one item with its decision history."""
    from consentry.banks.review import ReviewItemNotFound

    with Store.open(ctx.obj.get("db")) as store:
        item = store.reviews.get(item_id)
    if item is None:
        raise ReviewItemNotFound(item_id)
    if as_json:
        emit_json(item.as_dict())
        return
    _print_item(item)


def _decision_command(action: str, help_text: str, with_negative_bank: bool = False) -> click.Command:
    """confirm / dismiss / appeal share everything but the action (and dismiss's bank)."""

    @click.argument("item_id", type=int)
    @click.option("--reason", required=True, help="Why: kept with the decision.")
    @click.option("--actor", default=None, help="Who decides (default: your login name).")
    @click.pass_context
    def command(ctx: click.Context, item_id: int, reason: str, actor: str | None, negative_bank: str | None = None) -> None:
        from consentry.banks.review import decide  # the matcher, fingerprints, numpy

        with Store.open(ctx.obj.get("db")) as store:
            item = decide(store, item_id, action, actor=actor or _login_name(), reason=reason, negative_bank=negative_bank)
        click.echo(f"#{item.id} is now {item.status}" + (f"; added to negative bank {negative_bank!r}" if negative_bank else ""))

    command.__doc__ = help_text
    if with_negative_bank:
        command = click.option("--negative-bank", default=None, help="Also add the file to this negative (known-good) bank.")(command)
    return click.command(action)(command)


for _cmd in (
    _decision_command("confirm", "Confirm a match: the file is the banked model."),
    _decision_command("dismiss", "Dismiss a match as wrong, optionally vouching for the file in a negative bank.", True),
    _decision_command("appeal", "Reopen a confirmed or dismissed item."),
):
    review_group.add_command(_cmd)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return "cli"


def _print_item(item: ReviewItem) -> None:
    for key in ("id", "status", "file_name", "file_sha256", "file_size", "bank_name", "entry_id", "signal_type",
                "signal_value", "score", "threshold", "source", "created_at", "updated_at"):  # fmt: skip
        click.echo(f"{key:<13} {getattr(item, key)}")
    for d in item.decisions:
        bank = f" (into negative bank {d['negative_bank']})" if d["negative_bank"] else ""
        click.echo(f"  {d['decided_at']}  {d['action']}{bank} by {d['actor']}: {json.dumps(d['reason'])}")
