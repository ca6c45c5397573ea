"""Small output helpers shared by the commands."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from consentry.errors import ConsentryError


class OneLineErrors(click.Group):
    """Turns library errors into one stderr line and their exit status, for every command below
    it (``CONSENTRY_DEBUG=1`` shows tracebacks instead)."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except ConsentryError as exc:
            if os.environ.get("CONSENTRY_DEBUG"):
                raise
            click.echo(f"consentry: error: {exc}", err=True)
            ctx.exit(exc.exit_code)


def emit_json(obj: Any) -> None:
    """One JSON object per line (JSON Lines), so output streams and pipes into jq."""
    click.echo(json.dumps(obj, sort_keys=False, default=str))


def report_problem(path: str, verdict: str, problem: str) -> None:
    """The one line a bad file gets on stderr: file, verdict, problem."""
    click.echo(f"consentry: {path}: {verdict}: {problem}", err=True)


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
