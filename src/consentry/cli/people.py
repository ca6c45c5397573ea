"""`consentry person ...` and `consentry registry ...`: the consented protected-person registry.

Thin wrappers over :mod:`consentry.registry`, imported only when a command runs (so `--help`
loads neither numpy nor cryptography). The registry is ``--registry PATH_OR_URL`` (on either
group), else ``$CONSENTRY_REGISTRY``, else ``~/.local/share/consentry/registry.db``; its key is
``$CONSENTRY_REGISTRY_KEY`` only (a key on the command line would land in shell history and in
``ps``). The actor recorded in the audit log is ``--actor``, else ``$USER``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from consentry.cli._output import OneLineErrors, emit_json


NEW_KEY_ENV = "CONSENTRY_REGISTRY_NEW_KEY"


def _registry_option(function: Any) -> Any:
    return click.option(
        "--registry",
        "registry_target",
        envvar="CONSENTRY_REGISTRY",
        metavar="PATH_OR_URL",
        default=None,
        help="The registry: an SQLite file or a postgresql:// URL, apart from the store "
        "(default: $CONSENTRY_REGISTRY or ~/.local/share/consentry/registry.db). Key: $CONSENTRY_REGISTRY_KEY.",
    )(function)


def _actor_option(function: Any) -> Any:
    return click.option("--actor", default=None, help="Who is acting, for the audit log (default: $USER).")(function)


def _purpose_option(default: str) -> Any:
    return click.option("--purpose", default=default, show_default=True,
                        help="Why, for the audit log: a short code, never a name.")  # fmt: skip


def _set_registry(ctx: click.Context, registry_target: str | None) -> None:
    ctx.ensure_object(dict)
    if registry_target:
        ctx.obj["registry"] = registry_target


def _open(ctx: click.Context, *, create: bool = False) -> Any:
    from consentry.registry import Registry

    return Registry.open((ctx.obj or {}).get("registry"), create=create)


def _actor(actor: str | None) -> str:
    who = actor or os.environ.get("USER") or os.environ.get("LOGNAME")
    if not who:
        raise click.UsageError("who is acting? give --actor NAME or set $USER (the audit log records it)")
    return who


# --- consentry person ... -----------------------------------------------------------------------


@click.group("person", cls=OneLineErrors)
@_registry_option
@click.pass_context
def person_group(ctx: click.Context, registry_target: str | None) -> None:
    """Protected people, registered with their consent (every read is audited)."""
    _set_registry(ctx, registry_target)


@person_group.command("add")
@click.argument("name", required=False)
@click.option("--intake", "intake", type=click.File("rb"), default=None, metavar="FILE",
              help="Read the record from a JSON file ('-': standard input) instead of the command line, so the "
                   "person's names never reach shell history or the process list. Keys: name, aliases, handles, "
                   "photos, consent_by, consent_scope, consent_at, entered_by.")  # fmt: skip
@click.option("--alias", "aliases", multiple=True, help="Another name, spelling or script (repeatable).")
@click.option("--handle", "handles", multiple=True, help="A social media handle, e.g. @name or platform:name (repeatable).")
@click.option("--photo", "photos", multiple=True, type=click.Path(path_type=Path),  # checked as "photo N", never by name
              help="A reference photo showing exactly the person's face (repeatable): reduced to a face embedding and a "
                   "PDQ hash, never stored.")  # fmt: skip
@click.option("--consent-by", default=None, help="Who gave consent (the person, or who acts for them). Required.")
@click.option("--consent-scope", default=None, help="What the consent covers, e.g. 'search hubs and request takedowns'. Required.")
@click.option("--consent-at", default=None, help="When consent was given, ISO 8601 (default: now).")
@click.option("--entered-by", default=None, help="Who entered this record (default: the actor).")
@_actor_option
@click.option("--json", "as_json", is_flag=True, help="Print the new record's id and counts as JSON.")
@click.pass_context
def person_add_cmd(ctx: click.Context, name: str | None, intake: Any, aliases: tuple[str, ...], handles: tuple[str, ...],
                   photos: tuple[Path, ...], consent_by: str | None, consent_scope: str | None, consent_at: str | None,
                   entered_by: str | None, actor: str | None, as_json: bool) -> None:  # fmt: skip
    """Register a person with their consent.

    \b
    Examples:
      consentry person add "Subject A" --alias "Subj. A" --handle @subject_a --photo a1.jpg --photo a2.jpg \\
          --consent-by "Subject A" --consent-scope "search hubs and request takedowns"
      consentry person add --intake subject-a.json      # names stay out of shell history and `ps`
    """
    given = {"name": name, "aliases": list(aliases), "handles": list(handles), "photos": [str(p) for p in photos],
             "consent_by": consent_by, "consent_scope": consent_scope, "consent_at": consent_at, "entered_by": entered_by}  # fmt: skip
    if intake is not None:
        given = _merge_intake(given, _read_intake(intake))
    for field, option in (("name", "NAME"), ("consent_by", "--consent-by"), ("consent_scope", "--consent-scope")):
        if not given[field]:
            raise click.UsageError(f"missing {option} (or {field!r} in the --intake file)")
    photo_paths = [Path(p) for p in given["photos"]]
    who = given["entered_by"] or _actor(actor)
    with _open(ctx, create=True) as registry:
        if registry.created:
            _note_created(registry)
        person = registry.add_person(given["name"], aliases=given["aliases"], handles=given["handles"], photos=photo_paths,
                                     consent_by=given["consent_by"], consent_scope=given["consent_scope"],
                                     consent_at=given["consent_at"], entered_by=who)  # fmt: skip
    if as_json:
        emit_json({"id": person.id, "face_embeddings": len(person.embeddings), "pdq": len(person.pdq), "photos": len(photo_paths)})
        return
    dropped = len(photo_paths) - sum(1 for _ in person.pdq) if photo_paths else 0
    extra = f" ({dropped} photo(s) too featureless for a PDQ hash)" if photo_paths and dropped > 0 else ""
    click.echo(f"added person {person.id}: {len(person.embeddings)} face embedding(s), {len(person.pdq)} PDQ hash(es) from "
               f"{len(photo_paths)} photo(s){extra}; the photos were not stored")  # fmt: skip


_INTAKE_LISTS = ("aliases", "handles", "photos")
_INTAKE_TEXTS = ("name", "consent_by", "consent_scope", "consent_at", "entered_by")
_MAX_INTAKE_BYTES = 1 << 20


def _read_intake(stream: Any) -> dict[str, Any]:
    """The --intake JSON object, checked key by key. Errors name the file and the key, never a
    value: the file holds a person's names."""
    label = "standard input" if getattr(stream, "name", "-") in ("-", "<stdin>") else click.format_filename(stream.name)
    raw = stream.read(_MAX_INTAKE_BYTES + 1)
    if len(raw) > _MAX_INTAKE_BYTES:
        raise click.UsageError(f"--intake {label}: larger than {_MAX_INTAKE_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        where = f" (line {exc.lineno})" if hasattr(exc, "lineno") else ""
        raise click.UsageError(f"--intake {label}: not a UTF-8 JSON object{where}") from None
    if not isinstance(data, dict):
        raise click.UsageError(f"--intake {label}: not a JSON object")
    unknown = sorted(set(data) - set(_INTAKE_LISTS) - set(_INTAKE_TEXTS))
    if unknown:
        raise click.UsageError(f"--intake {label}: unknown key(s) {', '.join(map(repr, unknown[:5]))}; "
                               f"known: {', '.join(_INTAKE_TEXTS + _INTAKE_LISTS)}")  # fmt: skip
    for key, value in data.items():
        ok = (isinstance(value, list) and all(isinstance(v, str) for v in value)) if key in _INTAKE_LISTS else (
            value is None or isinstance(value, str))  # fmt: skip
        if not ok:
            kind = "a list of strings" if key in _INTAKE_LISTS else "a string"
            raise click.UsageError(f"--intake {label}: {key!r} must be {kind}")
    for photo in data.get("photos") or []:
        if not Path(photo).is_file():
            raise click.UsageError(f"--intake {label}: a path under 'photos' is not a readable file")
    return data


def _merge_intake(given: dict[str, Any], intake: dict[str, Any]) -> dict[str, Any]:
    """Lists add up; a single value may come from the file or the command line, not both."""
    out = dict(given)
    for key, value in intake.items():
        if key in _INTAKE_LISTS:
            out[key] = list(value) + given[key]
        elif value is not None:
            if given[key] is not None:
                raise click.UsageError(f"{key!r} is given both in the --intake file and on the command line")
            out[key] = value
    return out


def _note_created(registry: Any) -> None:
    if registry.encrypted:
        click.echo(f"consentry: created an encrypted registry at {registry.location}: keep the key, without it the "
                   "registry cannot be read", err=True)  # fmt: skip
    else:
        click.echo(f"consentry: created a registry at {registry.location} WITHOUT encryption: person data is stored in clear "
                   "(set CONSENTRY_REGISTRY_KEY before creating a registry to encrypt it)", err=True)  # fmt: skip


@person_group.command("list")
@_actor_option
@_purpose_option("person list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per person.")
@click.pass_context
def person_list_cmd(ctx: click.Context, actor: str | None, purpose: str, as_json: bool) -> None:
    """List registered people (one audit entry)."""
    who = _actor(actor)
    with _open(ctx) as registry:
        people = registry.people(who, purpose)
    for person in people:
        if as_json:
            emit_json(person.as_dict())
        else:
            click.echo(f"{person.id}  {person.display_name}  aliases {len(person.aliases)}  handles {len(person.handles)}  "
                       f"faces {len(person.embeddings)}  consent {person.consent.at[:10]} ({person.consent.scope})")  # fmt: skip
    if not people and not as_json:
        click.echo("no people registered")


@person_group.command("show")
@click.argument("person")
@_actor_option
@_purpose_option("person show")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def person_show_cmd(ctx: click.Context, person: str, actor: str | None, purpose: str, as_json: bool) -> None:
    """Show a person (PERSON: the id, or the exact display name) and the matches recorded for them."""
    who = _actor(actor)
    with _open(ctx) as registry:
        record = registry.resolve(person, who, purpose)
        found = registry.matches(record.id, who, purpose)
    if as_json:
        emit_json({**record.as_dict(), "matches": [m.as_dict() for m in found]})
        return
    consent = record.consent
    click.echo(f"person        {record.id}")
    click.echo(f"display name  {record.display_name}")
    click.echo(f"aliases       {', '.join(record.aliases) or '-'}")
    click.echo(f"handles       {', '.join(record.handles) or '-'}")
    click.echo(f"consent       by {consent.by}, {consent.at}, scope: {consent.scope}; entered by {consent.entered_by}")
    click.echo(f"references    {len(record.embeddings)} face embedding(s), {len(record.pdq)} PDQ hash(es)")
    click.echo(f"registered    {record.created_at}")
    click.echo(f"matches       {len(found)}")
    for match in found:
        click.echo(f"  {match.recorded_at}  {match.kind:<8} {match.target}")


@person_group.command("withdraw")
@click.argument("person")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_actor_option
@click.pass_context
def person_withdraw_cmd(ctx: click.Context, person: str, yes: bool, actor: str | None) -> None:
    """Erase a person for good (PERSON: the id, or the exact display name).

    Names, aliases, handles, the consent record, face embeddings, PDQ hashes and matches are
    deleted and the database rebuilt so no copy survives in its files. One audit entry records
    that a person was withdrawn, without saying who.
    """
    from consentry.registry.errors import is_person_id

    who = _actor(actor)
    with _open(ctx) as registry:
        person_id = person.strip() if is_person_id(person.strip()) else registry.resolve(person, who, "withdraw").id
        if not yes:
            click.confirm(f"Erase person {person_id} for good (names, handles, consent record, face embeddings, hashes, "
                          "matches)? This cannot be undone", abort=True)  # fmt: skip
        receipt = registry.withdraw(person_id, who)
        location = registry.location
    click.echo(f"withdrawn: the person's data is erased from {location}; audit entry #{receipt.audit_seq} "
               f"({receipt.audit_hash[:16]}) records that a person was withdrawn, not who")  # fmt: skip


# --- consentry registry ... ---------------------------------------------------------------------


@click.group("registry", cls=OneLineErrors)
@_registry_option
@click.pass_context
def registry_group(ctx: click.Context, registry_target: str | None) -> None:
    """The protected-person registry itself: status, audit log, upkeep."""
    _set_registry(ctx, registry_target)


@registry_group.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def registry_status_cmd(ctx: click.Context, as_json: bool) -> None:
    """Where the registry is, whether it is encrypted, and what it holds (counts only)."""
    with _open(ctx) as registry:
        status = registry.status()
    if as_json:
        emit_json(status.as_dict())
        return
    if status.encrypted:
        how = "a passphrase, stretched with scrypt" if status.kdf == "scrypt" else "a raw 256-bit key"
        encryption = f"encrypted at rest (AES-256-GCM; the operator's key is {how})"
        key = "given: it opens the registry" if status.unlocked else "not given (CONSENTRY_REGISTRY_KEY): person data is locked"
    else:
        encryption = "NOT encrypted: person data is stored in clear"
        key = "-"
    click.echo(f"registry    {status.location} ({status.backend})")
    click.echo(f"encryption  {encryption}")
    click.echo(f"key         {key}")
    click.echo(f"people      {status.people} ({status.face_embeddings} face embeddings, {status.pdq_hashes} PDQ hashes, "
               f"{status.matches} matches)")  # fmt: skip
    click.echo(f"audit log   {status.audit_entries} entries")
    click.echo(f"schema      v{status.schema_version}, created {status.created_at}")


@registry_group.command("audit")
@click.option("--verify", is_flag=True, help="Check the hash chain instead of listing (exit 1 naming the first bad entry).")
@click.option("--anchor", default=None, metavar="HASH", help="With --verify: a head hash kept elsewhere that must still be in the chain.")
@click.option("--limit", type=int, default=None, help="List only the last N entries.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def registry_audit_cmd(ctx: click.Context, verify: bool, anchor: str | None, limit: int | None, as_json: bool) -> None:
    """The audit log: who read or changed what, when and why (person ids only, never names)."""
    with _open(ctx) as registry:
        if verify:
            check = registry.require_intact_audit(anchor)
            if as_json:
                emit_json(check.as_dict())
            else:
                click.echo(f"audit log intact: {check.entries} entries; head {check.head or '-'} (keep it to check against later)")
            return
        entries = registry.audit_entries(limit=limit)
    for entry in entries:
        if as_json:
            emit_json(entry.as_dict())
        else:
            ids = ",".join(entry.person_ids) if len(entry.person_ids) <= 3 else f"{len(entry.person_ids)} people"
            note = f"  ({entry.note})" if entry.note else ""
            click.echo(f"#{entry.seq:<6} {entry.at}  {entry.actor:<12} {entry.action:<20} {entry.purpose:<20} {ids or '-'}{note}")


@registry_group.command("compact")
@click.pass_context
def registry_compact_cmd(ctx: click.Context) -> None:
    """Rebuild the registry's files so nothing deleted survives in them (withdraw does this itself)."""
    with _open(ctx) as registry:
        registry.compact()
    click.echo("compacted")


@registry_group.command("rekey")
@_actor_option
@click.pass_context
def registry_rekey_cmd(ctx: click.Context, actor: str | None) -> None:
    """Re-encrypt the registry under a new key (or encrypt a clear one).

    The current key is $CONSENTRY_REGISTRY_KEY, the new one $CONSENTRY_REGISTRY_NEW_KEY (make one
    with `consentry registry new-key`); neither is ever taken from the command line. Afterwards
    only the new key opens the registry, and no page of its files keeps the old ciphertext.
    """
    new_key = os.environ.get(NEW_KEY_ENV)
    if not new_key:
        raise click.UsageError(f"set {NEW_KEY_ENV} to the new key (`consentry registry new-key` makes one)")
    if new_key == os.environ.get("CONSENTRY_REGISTRY_KEY"):
        raise click.UsageError(f"{NEW_KEY_ENV} is the current key: give a different one")
    who = _actor(actor)
    with _open(ctx) as registry:
        resealed = registry.rekey(new_key, who)
    click.echo(f"re-encrypted {resealed} value(s) under the new key: from now on set CONSENTRY_REGISTRY_KEY to it "
               "(the old key opens nothing)")  # fmt: skip


@registry_group.command("new-key")
def registry_new_key_cmd() -> None:
    """Print a fresh random 256-bit key, in base64, for CONSENTRY_REGISTRY_KEY (store it safely)."""
    from consentry.registry.crypto import new_key_text

    click.echo(new_key_text())
