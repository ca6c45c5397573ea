"""Text as names are compared and searched in: ASCII (anyascii transliterates: "Катя" → "Katia"),
lower case, every run of other characters one space. The likeness matcher compares in it, and
the store keeps each crawled record's text in it, so one SQL ``LIKE`` finds a name in any script."""

from __future__ import annotations

from typing import Any

from anyascii import anyascii

from consentry import jsonio

# every byte but a-z and 0-9 becomes a space (bytes.translate: four times a regex's speed, which
# counts when each crawled image's prompt is folded on the way into the store)
_KEEP_ALNUM = bytes(c if 48 <= c <= 57 or 97 <= c <= 122 else 32 for c in range(256))


def fold(text: str) -> str:
    return " ".join(anyascii(text).lower().encode("ascii").translate(_KEEP_ALNUM).decode("ascii").split())


def fold_values(*values: Any) -> str:
    """One folded text of strings, lists and JSON objects (their keys too: kohya keeps training
    folder names as keys)."""
    parts = []
    for value in values:
        if value is None:
            continue
        parts.append(value if isinstance(value, str) else jsonio.dumps(value))
    return fold(" ".join(parts))
