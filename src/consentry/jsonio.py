"""JSON for the store: written by orjson (several times faster than the standard library, which
takes over for what orjson refuses, such as integers beyond 64 bits); read by the standard
library, because orjson turns an integer beyond 64 bits into a float and Civitai's seeds must
stay exact. Output is compact, UTF-8, with sorted keys: the same value always gives the same text."""

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


def loads(data: str | bytes | bytearray) -> Any:
    """Parse JSON exactly; raises ValueError (``json.JSONDecodeError``) on bad or truncated input."""
    return json.loads(data)
