"""``consentry remote URL``: what can be known of a model file on a hub without downloading it."""

from __future__ import annotations

import click

from consentry.cli._output import emit_json, human_size


@click.command("remote")
@click.argument("url")
@click.option("--full-read", is_flag=True, help="Fetch the whole data part: AutoV3 and the content hash.")
@click.option("--fingerprint/--no-fingerprint", default=True, show_default=True,
              help="Weight fingerprint from the tensors it needs (a LoRA whole, a checkpoint by a sample).")
@click.option("--token", envvar="HF_TOKEN", help="Bearer token for gated or private files (default: $HF_TOKEN).")
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
@click.pass_context
def remote_cmd(ctx: click.Context, url: str, full_read: bool, fingerprint: bool, token: str | None, as_json: bool) -> None:
    """Read a remote safetensors file by HTTP range requests: its strictly validated header and
    training metadata, the AutoV3 its header claims, the SHA-256 the host vouches for (a Hugging
    Face LFS ETag), AutoV3 and the content hash with --full-read, and its weight fingerprint,
    with the bytes fetched against the file size. Checkpoints are fingerprinted against the
    registered base of their family (`consentry base add`).

    \b
    Example:
      consentry remote https://huggingface.co/someuser/Test-model/resolve/main/LORA.safetensors
    """
    from consentry.hubs.remote import RemoteSafetensors, read_remote_file, registered_bases
    from consentry.store import Store

    with Store.open(ctx.obj.get("db")) as store:
        bases = registered_bases(store) if fingerprint else {}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with RemoteSafetensors(url, headers=headers) as remote:
        found = read_remote_file(remote, full_read=full_read, fingerprints=fingerprint, bases=bases)
        sha256 = remote.lfs_sha256()
        size = remote.size
    fp = found.pop("_fingerprint", None)
    out = {
        "url": url, "size": size, "bytes_fetched": found.get("bytes_fetched", 0),
        "fraction_fetched": round(found.get("bytes_fetched", 0) / size, 6) if size else None,
        "sha256": sha256, "autov3": found.get("autov3"), "autov3_claimed": found.get("autov3_claimed"),
        "content_hash": found.get("content_hash"), "fingerprint": fp.summary() if fp is not None else None,
        "metadata": (found.get("metadata_json") or {}).get("decoded"), "tensors": len((found.get("header_json") or {}).get("tensors", [])),
        "notes": found["raw"],
    }  # fmt: skip
    if as_json:
        emit_json(out)
    else:
        _print(out)
    problem = found["raw"].get("problem")
    if problem:  # the reader's messages name the URL already
        click.echo(f"consentry: {problem}" if url in problem else f"consentry: {url}: {problem}", err=True)
        ctx.exit(2)


def _print(out: dict) -> None:
    share = f" ({out['fraction_fetched']:.2%})" if out["fraction_fetched"] is not None else ""
    click.echo(f"{out['url']}")
    click.echo(f"  size {human_size(out['size'])}, fetched {human_size(out['bytes_fetched'])}{share}, {out['tensors']} tensors")
    click.echo(f"  SHA256   {out['sha256'] or '- (the host gives no LFS ETag; needs a full download)'}")
    click.echo(f"  AutoV3   {out['autov3'] or '- (needs the whole data part: --full-read)'}")
    if out["autov3_claimed"]:
        click.echo(f"  claimed  {out['autov3_claimed']}  (sshs_model_hash in the header, unverified)")
    click.echo(f"  content  {out['content_hash'] or '- (needs every tensor: --full-read)'}")
    if out["fingerprint"]:
        fp = out["fingerprint"]
        click.echo(f"  fingerprint  {fp.get('kind')} of {fp.get('family')}, {fp.get('module_count')} modules")
    kohya = (out["metadata"] or {}).get("kohya") or {}
    folders = (out["metadata"] or {}).get("training_folders") or []
    if kohya.get("output_name") or folders:
        names = ", ".join(str(f.get("folder", f)) if isinstance(f, dict) else str(f) for f in folders)
        click.echo(f"  training  output name {kohya.get('output_name') or '-'}; folders {names or '-'}")
    for key, note in out["notes"].items():
        click.echo(f"  note: {key}: {note}")
