"""JSON in and out, fast and exact: orjson (several times faster than the standard library) and
the standard library where orjson is not exact — orjson refuses to write integers beyond 64 bits
and reads them as floats, and Civitai's seeds reach that far. Output is compact, UTF-8, with
sorted keys: the same value always gives the same text."""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS).decode()
    except TypeError:  # an integer beyond 64 bits, or another value orjson refuses
        return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False, separators=(",", ":"))


# A number of 20 digits or more may not fit 64 bits (2**64 has 20 digits). To find one cheaply,
# blanks are dropped, digits map to "0", the characters that can come before a number (``:``,
# ``,``, ``[``) to ":", "-" stays and the rest becomes "x"; then twenty "0"s right after ":"
# mark a long number (a hash in a string starts with a quote, so it does not match; a false
# alarm only costs the exact, slower parse). Both steps run in C at memory speed.
def _class(c: int) -> int:
    ch = chr(c)
    if "0" <= ch <= "9":
        return ord("0")
    if ch in ":,[":
        return ord(":")
    return c if ch == "-" else ord("x")


_NUMBER_CLASSES = bytes(_class(c) for c in range(256))
_BLANKS = b" \t\r\n"
_LONG_NUMBER = (b":" + b"0" * 20, b":-" + b"0" * 20)


def _has_long_number(raw: bytes) -> bool:
    classes = raw.translate(_NUMBER_CLASSES, _BLANKS)
    return any(pattern in classes for pattern in _LONG_NUMBER)


def loads(data: str | bytes | bytearray) -> Any:
    """Parse JSON exactly; raises ValueError (``json.JSONDecodeError``) on bad or truncated input."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if _has_long_number(raw):
        return json.loads(raw)  # exact for any size of integer
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)  # the same verdict, with the standard library's message
