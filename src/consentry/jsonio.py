"""JSON in and out, fast and exact: orjson (several times faster than the standard library) and
the standard library where orjson is not exact — orjson refuses to write integers beyond 64 bits
and reads them as floats, and Civitai's seeds reach that far. Output is compact, UTF-8, with
sorted keys: the same value always gives the same text."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS).decode()
    except TypeError:  # an integer beyond 64 bits, or another value orjson refuses
        return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False, separators=(",", ":"))


# orjson reads integers exactly from -2**63 to 2**64 - 1 and anything beyond as a float. Only a
# number of 20 digits (or a negative one of 19) can lie beyond. To find one cheaply, a translation
# (C, at memory speed, keeping positions) maps digits to "0", what can come before a number
# (``:``, ``,``, ``[`` and blanks) to ":", keeps "-" and turns the rest into "x"; a long enough run
# of "0"s right after ":" marks a candidate (a hash in a string starts with a quote, so it does not
# match). Each candidate is then read exactly: Civitai's seeds fill 64 bits, so most pages hold
# one, and only a value orjson would really get wrong takes the slow parse.
def _class(c: int) -> int:
    ch = chr(c)
    if "0" <= ch <= "9":
        return ord("0")
    if ch in ":,[ \t\r\n":
        return ord(":")
    return c if ch == "-" else ord("x")


_NUMBER_CLASSES = bytes(_class(c) for c in range(256))
_CANDIDATES = (b":" + b"0" * 20, b":-" + b"0" * 19)
_DIGIT_RUN = re.compile(rb"-?0+")
_EXACT = range(-(2**63), 2**64)


def _has_long_number(raw: bytes) -> bool:
    """Whether ``raw`` holds an integer literal outside what orjson reads exactly."""
    classes = raw.translate(_NUMBER_CLASSES)
    for pattern in _CANDIDATES:
        at = classes.find(pattern)
        while at != -1:
            end = _DIGIT_RUN.match(classes, at + 1).end()  # type: ignore[union-attr]
            if raw[end : end + 1] not in (b".", b"e", b"E") and int(raw[at + 1 : end]) not in _EXACT:
                return True
            at = classes.find(pattern, end)
    return False


def loads(data: str | bytes | bytearray) -> Any:
    """Parse JSON exactly; raises ValueError (``json.JSONDecodeError``) on bad or truncated input."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if _has_long_number(raw):
        return json.loads(raw)  # exact for any size of integer
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)  # the same verdict, with the standard library's message
