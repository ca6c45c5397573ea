"""Small helpers shared by the store's repositories."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from consentry import jsonio


def utc_now() -> str:
    """Timestamps are ISO 8601 UTC strings: portable across SQLite and PostgreSQL, sortable."""
    return _dt.datetime.now(tz=_dt.timezone.utc).isoformat(timespec="microseconds")


def to_json(value: Any) -> str:
    return jsonio.dumps(value)


def from_json(text: str | None, default: Any) -> Any:
    if text is None or text == "":
        return default
    return jsonio.loads(text)


def signed64(n: int | None) -> int | None:
    """Fold an unsigned 64-bit number (an inode) into the signed range both databases store."""
    if n is None:
        return None
    return n - (1 << 64) if n >= (1 << 63) else n
