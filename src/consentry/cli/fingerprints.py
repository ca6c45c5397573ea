"""`consentry fingerprint`, `compare`, `similar` and `base add|list`: weight fingerprints (issue 3)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from consentry.cli._output import emit_json
from consentry.errors import ConsentryError
from consentry.store import Store

# consentry.fingerprints (numpy) and its index (usearch) are imported inside the commands, so the
# other commands do not load them.
if TYPE_CHECKING:
    from consentry.fingerprints import Comparison, Fingerprint

_path = click.Path(exists=True, path_type=Path)
_base_option = click.option("--base", "base_name", metavar="NAME", help="Registered base model (`consentry base add`) for full checkpoints.")


@click.command("fingerprint")
@click.argument("file", type=_path)
@_base_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--store/--no-store", "keep", default=True, show_default=True, help="Record it for `similar`.")
@click.pass_context
def fingerprint_cmd(ctx: click.Context, file: Path, base_name: str | None, as_json: bool, keep: bool) -> None:
    """Compute (and store) the weight fingerprint of a LoRA, or of a checkpoint minus its base.

    \b
    Example:
      consentry fingerprint mira_castellan_v2.safetensors --json
    """
    from consentry.fingerprints.stored import compute_fingerprint as compute, save_fingerprint as save

    with Store.open(ctx.obj.get("db")) as store:
        fp = compute(store, file, base_name)
        summary = {"path": str(file), **fp.summary()}
        if keep:
            summary["id"] = save(store, fp, file)
    if as_json:
        emit_json(summary)
        return
    click.echo(f"{file}  ({fp.kind}, {fp.family or 'family unknown'}, {fp.key_format} keys)")
    click.echo(f"  modules      {fp.module_count}" + (f"  (rank {summary['rank']})" if summary["rank"] else ""))
    if fp.base:
        click.echo(f"  base         {fp.base}")
    click.echo(f"  fingerprint  {summary['fingerprint']}")
    for note in fp.notes:
        click.echo(f"  note: {note}")


@click.command("compare")
@click.argument("a", type=_path)
@click.argument("b", type=_path)
@_base_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def compare_cmd(ctx: click.Context, a: Path, b: Path, base_name: str | None, as_json: bool) -> None:
    """Is B a copy of A (same), derived from it, or does B contain A (merged in)?

    Exit status 0 with a verdict, 2 when the two could not be compared (the reason says why).

    \b
    Example:
      consentry compare banned_lora.safetensors suspect_checkpoint.safetensors --base sd15
    """
    from consentry.fingerprints import COULD_NOT, compare
    from consentry.fingerprints.compare import could_not_compare
    from consentry.fingerprints.stored import compute_fingerprint as compute

    with Store.open(ctx.obj.get("db")) as store:
        prints: list[Fingerprint] = []
        result: Comparison | None = None
        for label, path in (("A", a), ("B", b)):
            try:
                prints.append(compute(store, path, base_name))
            except ConsentryError as exc:
                result = could_not_compare(f"{label} ({path}): {exc}")
                break
        if result is None:
            result = compare(prints[0], prints[1])
    if as_json:
        emit_json({"a": str(a), "b": str(b), **result.as_json()})
    else:
        _print_comparison(result)
    if result.verdict == COULD_NOT:
        sys.exit(2)


def _print_comparison(r: Comparison) -> None:
    from consentry.fingerprints import COULD_NOT

    click.echo(f"{r.verdict}: {r.reason}")
    if r.verdict == COULD_NOT:
        for note in r.notes:
            click.echo(f"  note: {note}")
        return
    t = r.thresholds
    click.echo(f"  identity     {r.identity:.4f}   (same >= {t['same']}, derived >= {t['derived']}, any verdict >= {t['detect']})")
    click.echo(f"  containment  {r.containment:.4f}   (contains >= {t['contains']})")
    first, second = ("B", "A") if r.swapped else ("A", "B")  # swapped: the scores are of B (the LoRA) within A
    click.echo(f"  coefficient  {r.coefficient:.4f}   (norm ratio {second}/{first} {r.norm_ratio:.4f})")
    click.echo(f"  coverage     {r.coverage:.1%} of {first}'s modules in {second} ({r.common_modules}/{r.a_modules}), "
               f"{r.energy_coverage:.1%} of its delta  (same needs >= {t['full_coverage']:.0%})")  # fmt: skip
    for title, rows in (("agree most", r.agree_most), ("agree least", r.agree_least)):
        click.echo(f"  {title}:")
        for row in rows:
            click.echo(f"    {row['cosine']:+.3f}  {row['module']}  ({row['share_of_a']:.1%} of {first})")
    for note in r.notes:
        click.echo(f"  note: {note}")


@click.command("similar")
@click.argument("file", type=_path)
@_base_option
@click.option("--top", "top", default=10, show_default=True, type=click.IntRange(1, 1000), help="How many to list.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per match.")
@click.pass_context
def similar_cmd(ctx: click.Context, file: Path, base_name: str | None, top: int, as_json: bool) -> None:
    """List the stored fingerprints nearest to FILE, each with its verdict.

    A nearest-neighbour index shortlists candidates; each is then compared from its stored sketches.
    """
    from consentry.fingerprints.index import nearest
    from consentry.fingerprints.stored import compute_fingerprint as compute

    with Store.open(ctx.obj.get("db")) as store:
        query = compute(store, file, base_name)
        rows = nearest(store, query, top)
    for row in rows:
        if as_json:
            emit_json(row)
        else:
            ident = f"{row['identity']:.3f}" if row["identity"] is not None else "-"
            click.echo(f"{row['verdict']:<18} identity {ident:>6}  {row['path']}")
    if not rows and not as_json:
        click.echo("no stored fingerprints yet (run `consentry fingerprint FILE`)")


@click.group("base")
def base_group() -> None:
    """Base models that full checkpoints are fingerprinted against (their difference from it)."""


@base_group.command("add")
@click.argument("name")
@click.argument("checkpoint", type=_path)
@click.option("--replace", is_flag=True, help="Repoint NAME when it is already registered as another file.")
@click.pass_context
def base_add_cmd(ctx: click.Context, name: str, checkpoint: Path, replace: bool) -> None:
    """Register CHECKPOINT as base model NAME. Register it in the precision it is distributed in."""
    from consentry.fingerprints.stored import register_base

    with Store.open(ctx.obj.get("db")) as store:
        arch = register_base(store, name, checkpoint, replace=replace)
    click.echo(f"base {name}: {checkpoint} ({arch.label()})")


@base_group.command("list")
@click.pass_context
def base_list_cmd(ctx: click.Context) -> None:
    """List registered base models."""
    with Store.open(ctx.obj.get("db")) as store:
        for base in store.fingerprints.list_bases():
            click.echo(f"{base.name:<20} {base.family or '?':<6} {base.path}")
