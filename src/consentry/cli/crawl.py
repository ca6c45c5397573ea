"""``consentry crawl HUB``: copy a hub's catalogue (models, versions, files, images) into the store.

One subcommand per connector; each is resumable (a checkpoint per query) and shows a progress
bar with records/s on a terminal.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

import click

from consentry.cli._output import emit_json
from consentry.hubs.base import CrawlReport, Progress
from consentry.store.store import Store


@click.group("crawl")
def crawl_group() -> None:
    """Crawl a model hub's metadata into the store (resumable, incremental)."""


@contextmanager
def progress_bar(hub: str, show: bool) -> Iterator[Progress | None]:
    """A rich bar counting stored records with their rate; yields the callback (None when hidden)."""
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress as Bar, ProgressColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:  # type: ignore[no-untyped-def]
            return Text(f"{task.speed or 0:,.0f} records/s")

    columns = (SpinnerColumn(), TextColumn(f"[bold]crawl {hub}[/]"), TextColumn("{task.completed:,.0f} records"),
               RateColumn(), TimeElapsedColumn())  # fmt: skip
    with Bar(*columns, console=Console(stderr=True, force_terminal=True), transient=True) as bar:
        task = bar.add_task(hub, total=None)
        yield lambda n: bar.update(task, advance=n)


def run_crawl(ctx: click.Context, connector, options: dict, *, max_pages: int | None, progress: bool | None,
              as_json: bool) -> CrawlReport:  # fmt: skip
    """Open the store, crawl with a progress bar, print the report (text or JSON)."""
    show = sys.stderr.isatty() if progress is None else progress
    with Store.open(ctx.obj.get("db")) as store, progress_bar(connector.name, show) as on_records:
        report = connector.crawl(store, options, progress=on_records, max_pages=max_pages)
        where = store.path
    if as_json:
        emit_json(report.as_dict())
        return report
    state = "finished" if report.finished else "stopped (run again to resume)"
    resumed = f", resumed from {report.resumed_from}" if report.resumed_from else ""
    click.echo(
        f"crawl {report.hub}: {report.models} model(s), {report.versions} version(s), {report.files} file(s), "
        f"{report.images} image(s) in {report.pages} page(s){resumed}"
        f"{f', {report.failed} failed (see notes)' if report.failed else ''}; {state} -> {where}"
    )
    for note in report.notes:
        click.echo(f"  note: {note}")
    return report


def _common(fn):
    """Options every crawl takes."""
    fn = click.option("--json", "as_json", is_flag=True, help="Print the crawl report as JSON.")(fn)
    fn = click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")(fn)
    fn = click.option("--max-pages", type=click.IntRange(1), help="Stop after N pages (a later run resumes).")(fn)
    return fn


@crawl_group.command("civitai")
@click.option("--feed", type=click.Choice(["models", "images"]), default="models", show_default=True,
              help="models: models, versions, files, previews; images: the /images feed with generation metadata.")
@click.option("--query", help="Full-text search (Civitai's `query`).")
@click.option("--types", help="Comma-separated model types, e.g. LORA,Checkpoint.")
@click.option("--since", metavar="DATE", help="Only what was published on/after DATE (the crawl stops there).")
@click.option("--nsfw/--sfw-only", default=True, show_default=True, help="Every browsing level, or PG only.")
@click.option("--sort", default="Newest", show_default=True, help="Civitai sort (--since needs Newest).")
@click.option("--period", default="AllTime", show_default=True, type=click.Choice(["AllTime", "Year", "Month", "Week", "Day"]))
@click.option("--limit", type=click.IntRange(1, 200), help="Records per page (default 100 models or 200 images).")
@click.option("--images/--no-images", default=False, show_default=True,
              help="Models feed: also every version's gallery with generation metadata (one request per version).")
@click.option("--fingerprints", is_flag=True,
              help="Range-read each safetensors model file: header, AutoV3, content hash and weight fingerprint.")
@click.option("--base-url", envvar="CONSENTRY_CIVITAI_URL", help="API host (default https://civitai.com; env CONSENTRY_CIVITAI_URL).")
@click.option("--api-key", envvar="CIVITAI_API_KEY", help="Sent as Authorization: Bearer (env CIVITAI_API_KEY).")
@click.option("--restart", is_flag=True, help="Forget this query's checkpoint and start from the first page.")
@_common
@click.pass_context
def civitai_cmd(ctx: click.Context, base_url: str | None, api_key: str | None, max_pages: int | None,
                progress: bool | None, as_json: bool, **options: object) -> None:  # fmt: skip
    """Crawl Civitai's models, versions, files (all six hashes), tags, creators, nsfw levels,
    poi/minor flags, stats and images into the store. A killed crawl resumes where it stopped.

    \b
    Examples:
      consentry crawl civitai --types LORA --since 2026-08-01
      consentry crawl civitai --feed images --since 2026-08-01
    """
    from consentry.hubs.civitai import CivitaiConnector

    run_crawl(ctx, CivitaiConnector(base_url, api_key), options, max_pages=max_pages, progress=progress, as_json=as_json)


@crawl_group.command("huggingface")
@click.option("--search", help="Substring of the repo id (e.g. LORA, 'Test-model').")
@click.option("--filter", "filters", multiple=True, metavar="TAG", help="Tag every repo must carry (repeatable), e.g. lora.")
@click.option("--author", help="Only repos of this user or organisation.")
@click.option("--limit", type=click.IntRange(1), help="At most this many repos.")
@click.option("--full-read", is_flag=True, help="Stream each safetensors file's data part to compute AutoV3.")
@click.option("--fingerprints", is_flag=True,
              help="Fingerprint each safetensors LoRA (all its factors) and checkpoint (a sample, against a registered base).")
@click.option("--base-url", help="Hub endpoint (default: $HF_ENDPOINT, else https://huggingface.co).")
@click.option("--token", envvar="HF_TOKEN", help="Access token for gated repos (default: $HF_TOKEN).")
@_common
@click.pass_context
def huggingface_cmd(ctx: click.Context, search: str | None, filters: tuple[str, ...], author: str | None,
                    limit: int | None, full_read: bool, fingerprints: bool, base_url: str | None, token: str | None,
                    max_pages: int | None, progress: bool | None, as_json: bool) -> None:  # fmt: skip
    """Crawl Hugging Face model repos: files with their LFS SHA256 (no download), card data with
    base_model and its relation, and each safetensors header by range reads (training metadata,
    tensor list). A page is one repo; a killed crawl resumes after the last repo stored.

    \b
    Example:
      consentry crawl huggingface --filter lora --search LORA --limit 200
    """
    from consentry.hubs.huggingface import HuggingFaceConnector

    connector = HuggingFaceConnector(base_url, token, full_read=full_read, fingerprints=fingerprints)
    options = {"search": search, "filter": list(filters) or None, "author": author, "limit": limit}
    try:
        run_crawl(ctx, connector, options, max_pages=max_pages, progress=progress, as_json=as_json)
    finally:
        connector.close()
