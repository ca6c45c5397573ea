"""``consentry likeness MODEL`` and ``consentry person find PERSON``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from consentry.cli._output import emit_json
from consentry.cli.people import _actor, _actor_option, person_group


def _registered_people(target: str | None, actor: str, purpose: str) -> tuple[list[Any], str]:
    """Everyone registered (one audited read) and a line saying where from. ``target`` given
    (--registry or $CONSENTRY_REGISTRY): the user asked for registry matching, so a registry that
    is missing or cannot be read is an error (one line, exit 2). Not given: the default location,
    and no registry there yet only means nobody is matched (said on stderr)."""
    from consentry.errors import StoreError
    from consentry.likeness import registered_people
    from consentry.registry import Registry, RegistryError
    from consentry.registry.registry import default_registry_target
    from consentry.store.database import mask_url

    location = target or default_registry_target()
    if target is None and isinstance(location, Path) and not location.exists():
        click.echo(f"consentry: no registry at {location}: registered people are not matched "
                   "(--registry PATH_OR_URL names one; --no-registry says not to)", err=True)  # fmt: skip
        return [], "registry: none (no registered people matched)"
    try:
        with Registry.open(location, create=False) as registry:
            people = registered_people(registry, actor=actor, purpose=purpose)
            where = registry.location
    except (RegistryError, StoreError, OSError) as exc:  # their messages never hold person data
        shown = mask_url(location) if isinstance(location, str) else location
        problem = str(exc) if str(exc).startswith(str(shown)) else f"{shown}: {exc}"
        click.echo(f"consentry: error: the registry cannot be read: {problem}", err=True)
        raise SystemExit(2) from None
    return people, f"registry: {len(people)} registered people from {where}"


@click.command("likeness")
@click.argument("model", required=False)
@click.option("--all", "all_models", is_flag=True, help="Every model crawled into the store and every local file indexed.")
@click.option("--image", "images", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A preview image of a local MODEL file (repeatable).")  # fmt: skip
@click.option("--previews/--no-previews", default=True, show_default=True,
              help="Fetch and analyse a crawled model's preview images (faces, NSFW), once.")
@click.option("--image-base-url", envvar="CONSENTRY_IMAGE_BASE_URL",
              help="Fetch hub images from this host instead of the one in their URL (a mirror, a proxy, the fake hub).")
@click.option("--registry", "registry_target", envvar="CONSENTRY_REGISTRY", metavar="PATH_OR_URL", default=None,
              help="The registry to match against (an audited read): an SQLite file or a postgresql:// URL. Given "
                   "(or $CONSENTRY_REGISTRY), it must exist and open (exit 2 otherwise); default "
                   "~/.local/share/consentry/registry.db, used when there.")  # fmt: skip
@click.option("--no-registry", "no_registry", is_flag=True, help="Do not match against registered people (no registry read).")
@_actor_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per model, every signal in it.")
@click.pass_context
def likeness_cmd(ctx: click.Context, model: str | None, all_models: bool, images: tuple[Path, ...], previews: bool,
                 image_base_url: str | None, registry_target: str | None, no_registry: bool, actor: str | None,
                 as_json: bool) -> None:  # fmt: skip
    """How likely MODEL reproduces a real person, and which registered one, with every signal:
    names in its text and inside the file (training folders, output name, tags), faces in its
    previews (one identity dominating, matches to registered people), NSFW scores.

    MODEL is a local file, or a crawled model as HUB:ID (e.g. civitai:2808125); --all assesses
    every crawled model and every local file `consentry index` stored.

    \b
    Examples:
      consentry likeness LORA.safetensors --image preview1.jpg --image preview2.jpg
      consentry likeness civitai:2808125 --json
    """
    from consentry.likeness import assess_all, assess_file
    from consentry.store import Store

    if not model and not all_models:
        raise click.UsageError("give MODEL (a file or HUB:ID) or --all")
    if no_registry and registry_target and ctx.get_parameter_source("registry_target") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("give --registry PATH_OR_URL or --no-registry, not both")
    if no_registry:
        people, registry_note = [], "registry: not used (--no-registry)"
    else:
        people, registry_note = _registered_people(registry_target, _actor(actor), "likeness")
    with Store.open(ctx.obj.get("db")) as store:
        if model and Path(model).exists():
            reports = [assess_file(store, model, images=list(images), people=people)]
        else:
            targets = None
            if model:
                hub, sep, remote_id = model.partition(":")
                if not sep or not remote_id:
                    raise click.BadParameter(f"{model!r} is neither a file nor HUB:ID", param_hint="MODEL")
                if store.hubs.get("hub_models", hub, remote_id) is None:
                    raise click.BadParameter(f"no crawled model {model!r} in {store.path}", param_hint="MODEL")
                targets = [(hub, remote_id)]
            reports = assess_all(store, targets, people=people, previews=previews, image_base=image_base_url)
        flagged = 0
        for report in reports:
            flagged += report.score >= 0.5
            report.notes.append(registry_note)
            emit_json(report.as_dict()) if as_json else _print(report)
    if model and not as_json:
        return
    if not as_json:
        click.echo(f"\n{flagged} model(s) likely reproduce a real person")


def _print(report) -> None:
    click.echo(f"{report.ref}  ({report.title})")
    click.echo(f"  {report.verdict}  score {report.score:.2f}  (thresholds: person {report.thresholds['person']}, "
               f"likely {report.thresholds['likely']}, possible {report.thresholds['possible']})")  # fmt: skip
    for person in report.people:
        click.echo(f"  registered {person.display_name} [{person.person_id[:8]}]  score {person.score:.2f}")
        for s in person.signals:
            click.echo(f"    {s['kind']:<22} {s['field']:<16} {s['detail']}" + (f": {s['text']!r}" if s.get("text") else ""))
    for s in report.signals:
        click.echo(f"  {s['kind']:<24} {s['field']:<16} {s['detail']}" + (f": {s['text']!r}" if s.get("text") else ""))
    from consentry.hubs.civitai import decode_nsfw_level

    if report.faces:
        f = report.faces
        share = f", one identity in {f.dominant_images} of {f.with_faces}" if f.with_faces else ""
        click.echo(f"  previews: {f.previews} analysed, {f.with_faces} with faces ({f.faces} faces){share}")
        for n in f.nsfw:
            level = n.get("hub_nsfw_level")
            hub = f", hub nsfwLevel {level} ({', '.join(decode_nsfw_level(level)) or 'unrated'})" if level is not None else ""
            click.echo(f"    {n['ref']}: NSFW {n['nsfw']:.3f}{hub}")
        for u in f.unreadable:
            click.echo(f"    {u['ref']}: {u['problem']}")
    if report.hub_nsfw_level is not None:
        click.echo(f"  hub nsfwLevel {report.hub_nsfw_level} ({', '.join(decode_nsfw_level(report.hub_nsfw_level)) or 'unrated'})")
    for note in report.notes:
        click.echo(f"  note: {note}")


@person_group.command("find")
@click.argument("person")
@click.option("--top", type=click.IntRange(1), default=50, show_default=True,
              help="Show the N strongest findings (a note says how many there were).")
@click.option("--record/--no-record", default=True, show_default=True,
              help="Record what was found as the person's matches in the registry (erased on withdrawal).")
@_actor_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def person_find_cmd(ctx: click.Context, person: str, top: int, record: bool, actor: str | None, as_json: bool) -> None:
    """Everything in the store that reproduces PERSON (id or exact display name), ranked, with
    the evidence: crawled models naming them in their text or inside their files, indexed local
    files naming them in their name or training metadata, crawled images naming them in their
    prompt, analysed images showing their face (through the face index) or copying an intake
    photo (PDQ)."""
    from consentry.cli.people import _open
    from consentry.likeness import RegisteredPerson, find_person
    from consentry.store import Store

    who = _actor(actor)
    with _open(ctx) as registry:
        record_of = registry.resolve(person, actor=who, purpose="person find")
        target = RegisteredPerson(record_of.id, record_of.display_name, record_of.names(), tuple(record_of.handles),
                                  tuple(record_of.embeddings), tuple(record_of.pdq))  # fmt: skip
        notes: list[str] = []
        with Store.open((ctx.find_root().obj or {}).get("db")) as store:
            found = find_person(store, target, top=top, notes=notes)
        if record:
            for finding in found:
                registry.record_match(target.person_id, kind="person-find", target=finding.ref,
                                      evidence={"score": finding.score, "signals": finding.signals}, actor=who)  # fmt: skip
    if as_json:
        emit_json({"person_id": target.person_id, "found": [f.as_dict() for f in found], "notes": notes})
        return
    click.echo(f"{len(found)} finding(s) for person {target.person_id[:8]}")
    for f in found:
        click.echo(f"  {f.score:.2f}  {f.ref}  {f.title or ''}  {f.url or ''}")
        for s in f.signals:
            images = f" ({len(s['images'])} image(s))" if s.get("images") and s["kind"] != "registered-face" else ""
            click.echo(f"        {s['kind']:<22} {s['field']:<16} {s['detail']}{images}")
    for note in notes:
        click.echo(f"  note: {note}")
