"""Small output helpers shared by the commands."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from consentry.errors import ConsentryError


INTERNAL_ERROR = 70  # sysexits' EX_SOFTWARE: never 1 (scan: "matched") or 2 (bad input)


class OneLineErrors(click.Group):
    """Turns library errors into one stderr line and their exit status, for every command below
    it (``CONSENTRY_DEBUG=1`` shows tracebacks instead). Anything else is a bug: one line
    naming the exception type and where it was raised, never its message (which could hold a
    protected person's name), and exit 70, so a script cannot read a crash as a verdict."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except ConsentryError as exc:
            if os.environ.get("CONSENTRY_DEBUG"):
                raise
            click.echo(f"consentry: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            if os.environ.get("CONSENTRY_DEBUG"):
                raise
            click.echo(f"consentry: internal error (a bug, please report it): {type(exc).__name__} at {_raised_at(exc)};"
                       " CONSENTRY_DEBUG=1 shows the traceback", err=True)  # fmt: skip
            ctx.exit(INTERNAL_ERROR)


def _raised_at(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    path = tb.tb_frame.f_code.co_filename
    return f"{path.rsplit('site-packages/', 1)[-1].rsplit('src/', 1)[-1]}:{tb.tb_lineno}"


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
