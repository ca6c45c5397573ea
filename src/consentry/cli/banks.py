"""`consentry bank ...`: create, list, show, change, delete banks and add models to them."""

from __future__ import annotations

import json
from pathlib import Path

import click

from consentry.cli._output import emit_json
from consentry.store import Store  # light: the database driver for PostgreSQL is imported on use


def parse_thresholds(values: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for item in values:
        signal, sep, number = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[signal.strip()] = float(number)
        except ValueError:
            raise click.BadParameter(f"{item!r}: expected SIGNAL=NUMBER, e.g. fingerprint=0.9") from None
    return out


@click.group("bank")
def bank_group() -> None:
    """Banks of known models: positive (to flag) and negative (known-good, never flag)."""


@bank_group.command("create")
@click.argument("name")
@click.option("--label", "labels", multiple=True, help="A label for what the bank holds (repeatable), e.g. real-person-likeness.")
@click.option("--description", default=None)
@click.option("--source", default=None, help="Where the bank's contents come from (a hub, a partner, a list).")
@click.option("--negative", is_flag=True, help="A negative bank: known-good models that must never be flagged.")
@click.option("--disabled", is_flag=True, help="Create disabled (scans ignore it until enabled).")
@click.option("--threshold", "thresholds", multiple=True, help="Per-signal threshold for similarity signals, SIGNAL=NUMBER.")
@click.pass_context
def create_cmd(ctx: click.Context, name: str, labels: tuple[str, ...], description: str | None, source: str | None,
               negative: bool, disabled: bool, thresholds: tuple[str, ...]) -> None:  # fmt: skip
    """Create a bank.

    \b
    Example:
      consentry bank create civitai-deleted --label real-person-likeness --source "Civitai deletion list, May 2025"
    """
    with Store.open(ctx.obj.get("db")) as store:
        bank = store.banks.create(name, kind="negative" if negative else "positive", labels=labels, description=description,
                                  source=source, enabled=not disabled, thresholds=parse_thresholds(thresholds))  # fmt: skip
    click.echo(f"created {bank.kind} bank {bank.name!r}")


@bank_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """List banks with their entry counts."""
    with Store.open(ctx.obj.get("db")) as store:
        banks = store.banks.list()
    for bank in banks:
        if as_json:
            emit_json(bank.as_dict())
        else:
            state = "enabled" if bank.enabled else "disabled"
            labels = ",".join(bank.labels) or "-"
            click.echo(f"{bank.name:<28} {bank.kind:<9} {state:<9} {bank.entry_count:>9,} entries  labels {labels}")


@bank_group.command("show")
@click.argument("name")
@click.option("--entries", "show_entries", type=int, default=10, show_default=True, help="How many entries to print.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show_cmd(ctx: click.Context, name: str, show_entries: int, as_json: bool) -> None:
    """Show a bank's settings and its first entries."""
    with Store.open(ctx.obj.get("db")) as store:
        bank = store.banks.get(name)
        bank.entry_count = next(b.entry_count for b in store.banks.list() if b.name == name)
        entries = store.banks.entries(bank, limit=show_entries)
    if as_json:
        emit_json({**bank.as_dict(), "entries": [e.as_dict() for e in entries]})
        return
    for key, value in bank.as_dict().items():
        click.echo(f"{key:<12} {json.dumps(value) if isinstance(value, (list, dict)) else value}")
    for entry in entries:
        signals = " ".join(f"{t}={v}" for t, v in entry.signals.items())
        click.echo(f"  - {entry.name or '-'}  {entry.url or ''}  {signals}")


@bank_group.command("update")
@click.argument("name")
@click.option("--label", "labels", multiple=True, help="Replace the labels (repeatable).")
@click.option("--description", default=None)
@click.option("--source", default=None)
@click.option("--enable/--disable", "enabled", default=None)
@click.option("--threshold", "thresholds", multiple=True, help="Replace thresholds, SIGNAL=NUMBER.")
@click.pass_context
def update_cmd(ctx: click.Context, name: str, labels: tuple[str, ...], description: str | None, source: str | None,
               enabled: bool | None, thresholds: tuple[str, ...]) -> None:  # fmt: skip
    """Change a bank's labels, description, source, thresholds, or enable/disable it."""
    changes = {"description": description, "source": source, "enabled": enabled}
    changes = {k: v for k, v in changes.items() if v is not None}
    if labels:
        changes["labels"] = list(labels)
    if thresholds:
        changes["thresholds"] = parse_thresholds(thresholds)
    with Store.open(ctx.obj.get("db")) as store:
        bank = store.banks.update(name, **changes)
    click.echo(f"updated bank {bank.name!r}")


@bank_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def delete_cmd(ctx: click.Context, name: str, yes: bool) -> None:
    """Delete a bank and all its entries."""
    if not yes:
        click.confirm(f"delete bank {name!r} and all its entries?", abort=True)
    with Store.open(ctx.obj.get("db")) as store:
        store.banks.delete(name)
    click.echo(f"deleted bank {name!r}")


@bank_group.command("add")
@click.argument("name")
@click.argument("model_files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--entry-name", default=None, help="Name for the entry (default: the file name).")
@click.option("--url", default=None, help="Where the model was found.")
@click.option("--note", default=None)
@click.option("--label", "labels", multiple=True)
@click.option("--actor", default=None, help="Who is adding it (recorded in the entry's provenance).")
@click.pass_context
def add_cmd(ctx: click.Context, name: str, model_files: tuple[Path, ...], entry_name: str | None, url: str | None,
            note: str | None, labels: tuple[str, ...], actor: str | None) -> None:  # fmt: skip
    """Add model files or images to a bank with all their hashes (and content_hash; an image's PDQ).

    \b
    Example:
      consentry bank add civitai-deleted ./downloads/jane_doe_v2.safetensors --url https://civitai.com/models/123
      consentry bank add reported-images ./report/photo.jpg
    """
    from consentry.banks.entries import add_model_file  # fingerprints, numpy: only when adding
    from consentry.banks.signals import signal_registry

    similarity = [s.name for s in signal_registry().similarity()]
    with Store.open(ctx.obj.get("db")) as store:
        for path in model_files:
            entry_id, entry = add_model_file(store, name, path, name=entry_name, url=url, note=note,
                                             labels=list(labels), actor=actor)  # fmt: skip
            state = "added" if entry_id is not None else "already in the bank"
            kept = "".join(f"; {s} {entry.provenance[s]}" for s in similarity if entry.provenance.get(s))
            click.echo(f"{path}: {state} ({', '.join(entry.signals)})" + kept)
