"""``consentry demo``: the quick start's main job on a generated world of fake hubs, and
``consentry demo files``: the same story told with local files only."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("demo", invoke_without_command=True)
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the demo world (default: a new temporary folder).")  # fmt: skip
@click.option("--models", type=click.IntRange(100), default=3000, show_default=True, help="Models on the fake Civitai.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.pass_context
def demo_cmd(ctx: click.Context, folder: Path | None, models: int, seed: int) -> None:
    """The main job on a seeded world of fake hubs served on 127.0.0.1: crawl Civitai, a deletion
    wave removes likeness LoRAs of fictional people, import the list of deleted models as a bank,
    crawl Hugging Face, and find every re-upload (exact, metadata stripped, converted, resized,
    merged) with the evidence for each. The store is DIR/consentry.db unless --db is given.
    """
    if ctx.invoked_subcommand is not None:
        return
    from consentry.cli.mirrors import print_table
    from consentry.demo.hub_demo import BANK, run_hub_demo
    import tempfile

    from consentry.demo.hub_world import build_demo_world
    from consentry.store import Store

    root = folder or Path(tempfile.mkdtemp(prefix="consentry-demo-"))
    db = ctx.obj.get("db") or root / "consentry.db"
    click.echo(f"building the demo world in {root} (seed {seed}; everyone named in it is fictional)")
    world = build_demo_world(root, seed=seed, models=models)
    with Store.open(db) as store:
        result = run_hub_demo(store, world, say=click.echo, show=print_table)
        where = store.path
    click.echo("\nwhat was planted, and how it was found:")
    for planted, signal in result.found:
        mark = f"found by {signal}" if signal else "NOT FOUND"
        click.echo(f"  {planted.person:<16} {planted.how:<74} {mark}")
    hits = sum(1 for _p, s in result.found if s)
    click.echo(f"\n{hits} of {len(result.found)} planted copies found. Explore: consentry --db {where} mirrors {BANK} --all"
               f" --format csv")  # fmt: skip


@demo_cmd.command("files")
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the demo files (default: a new temporary folder).")  # fmt: skip
@click.pass_context
def demo_files_cmd(ctx: click.Context, folder: Path | None) -> None:
    """Write a small world of model files, index it, and trace a banned LoRA's re-upload.

    Shows: byte hashes that change when a re-upload strips metadata, AutoV3 and content_hash
    that do not, training metadata that names the person, and hostile files refused safely.
    """
    import tempfile

    from consentry.banks.entries import add_model_file
    from consentry.banks.matching import scan_paths
    from consentry.demo.sample_models import FICTIONAL_PERSON, write_demo_folder
    from consentry.identity.identify import identify
    from consentry.indexing import index_tree
    from consentry.inspection.report import inspect_model
    from consentry.store import Store

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
