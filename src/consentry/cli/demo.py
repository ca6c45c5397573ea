"""``consentry demo``: the quick start's main job on a small generated world."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from consentry.banks.entries import add_model_file
from consentry.banks.matching import scan_paths
from consentry.demo.sample_models import FICTIONAL_PERSON, write_demo_folder
from consentry.identity.identify import identify
from consentry.indexing import index_tree
from consentry.inspection.report import inspect_model
from consentry.store import Store


@click.command("demo")
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the demo files (default: a new temporary folder).")  # fmt: skip
@click.pass_context
def demo_cmd(ctx: click.Context, folder: Path | None) -> None:
    """Write a small world of model files, index it, and trace a banned LoRA's re-upload.

    Shows: byte hashes that change when a re-upload strips metadata, AutoV3 and content_hash
    that do not, training metadata that names the person, and hostile files refused safely.
    """
    root = folder or Path(tempfile.mkdtemp(prefix="consentry-demo-"))
    paths = write_demo_folder(root)
    click.echo(f"demo files written to {root}")
    with Store.open(ctx.obj.get("db")) as store:
        result = index_tree(store, root)
        click.echo(f"indexed {result.indexed} model file(s) into {store.path}; {result.flagged} flagged:")
        for path, verdict, problem in result.flagged_files:
            click.echo(f"  {verdict:<10} {Path(path).relative_to(root)}: {problem}")

        banned = identify(paths["original"])
        report = inspect_model(paths["original"])
        folders = ", ".join(f"{f.folder!r}" for f in report.metadata.training_folders) if report.metadata else "-"
        click.echo(f"\nbanned model: {paths['original'].relative_to(root)}  ({report.architecture.label()})")
        click.echo(f"  training folders inside the file: {folders}  (the fictional person: {FICTIONAL_PERSON})")
        click.echo(f"  SHA256 {banned.hashes.sha256}")
        click.echo(f"  AutoV3 {banned.hashes.autov3_short}   content_hash {banned.content_hash[:16]}…")
        for label, value in (("SHA256", banned.hashes.sha256), ("AutoV3", banned.hashes.autov3_short),
                             ("content_hash", banned.content_hash)):  # fmt: skip
            matches = [s for s, _kinds in store.find_hash(value) if s.path != str(paths["original"].resolve())]
            found = ", ".join(str(Path(s.path).relative_to(root.resolve())) for s in matches) or "no other copy"
            click.echo(f"  copies by {label:<13} {found}")

        bank_name = "demo-deleted-likeness"
        if bank_name not in {b.name for b in store.banks.list(with_counts=False)}:
            store.banks.create(bank_name, labels=["real-person-likeness"], source="consentry demo")
        add_model_file(store, bank_name, paths["original"], url="https://civitai.com/models/000000 (deleted)", actor="demo")
        click.echo(f"\nbanked it in {bank_name!r}; scanning the uploads and the mirror against every enabled bank:")
        for scanned in scan_paths(store, [root / "mirror", root / "uploads"], queue=False):
            via = "; ".join(f"{m.bank} via {'+'.join(t for t, _v, _b in m.signals)}" for m in scanned.matches)
            click.echo(f"  {scanned.status:<10} {Path(scanned.path).relative_to(root)}" + (f"  ({via})" if via else ""))
    click.echo("\nnext: consentry inspect <file>, consentry find <hash>, consentry index <folder>, consentry scan <folder>")
