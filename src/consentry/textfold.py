"""Text as names are compared and searched in: ASCII (anyascii transliterates: "Катя" → "Katia"),
lower case, every run of other characters one space. The likeness matcher compares in it, and
the store keeps each crawled record's text in it, so one SQL ``LIKE`` finds a name in any script."""

from __future__ import annotations

import re
from typing import Any

from anyascii import anyascii

from consentry import jsonio

_SEPARATORS = re.compile(r"[^a-z0-9]+")


def fold(text: str) -> str:
    return _SEPARATORS.sub(" ", anyascii(text).lower()).strip()


def fold_values(*values: Any) -> str:
    """One folded text of strings, lists and JSON objects (their keys too: kohya keeps training
    folder names as keys)."""
    parts = []
    for value in values:
        if value is None:
            continue
        parts.append(value if isinstance(value, str) else jsonio.dumps(value))
    return fold(" ".join(parts))
