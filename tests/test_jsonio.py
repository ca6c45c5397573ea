"""consentry.jsonio: orjson's speed without its inexact corners (integers beyond 64 bits).

The expected value is always the standard library's parse of the same bytes: exact for any size of
integer, so any difference is jsonio's error."""

from __future__ import annotations

import json

import pytest

from consentry import jsonio

EDGES = [
    2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**64 + 1, 10**19, 10**20, 10**30,
    -(2**63), -(2**63) - 1, -(2**64), -(10**19), -(10**25),
]  # fmt: skip


@pytest.mark.parametrize("number", EDGES)
@pytest.mark.parametrize("shape", ['{{"seed":{}}}', '{{"seed": {} }}', "[1,{}]", "[\n  {}\n]", '{{"a":[{},2]}}'])
def test_integers_at_and_beyond_64_bits_are_exact(number: int, shape: str) -> None:
    raw = shape.format(number).encode()
    parsed = jsonio.loads(raw)
    assert parsed == json.loads(raw)
    assert number in _integers(parsed)  # an int equal to it, not a float that compares close


def _integers(value: object) -> list[int]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _integers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _integers(v)]
    return [value] if type(value) is int else []


def test_a_page_of_64_bit_seeds_keeps_every_seed_an_exact_integer() -> None:
    """Civitai's images feed: most pages hold seeds above 2**63 (still within 64 bits)."""
    items = [{"id": i, "meta": {"seed": 2**64 - 1 - i * 7919, "cfgScale": 7.5}} for i in range(200)]
    raw = json.dumps({"items": items, "metadata": {"nextCursor": 201}}).encode()
    parsed = jsonio.loads(raw)
    assert parsed == json.loads(raw)
    assert all(type(item["meta"]["seed"]) is int for item in parsed["items"])


def test_long_digit_runs_inside_strings_and_float_literals_parse_the_same() -> None:
    raw = b'{"hash":"123456789012345678901234","t":"x:123456789012345678901234","f":1234567890123456789012.5,"e":12345678901234567890123e2}'
    assert jsonio.loads(raw) == json.loads(raw)


def test_dumps_round_trips_integers_beyond_64_bits() -> None:
    value = {"seed": 2**70, "small": 1, "neg": -(2**65)}
    text = jsonio.dumps(value)
    assert json.loads(text) == value
    assert text == json.dumps(value, sort_keys=True, separators=(",", ":"))


@pytest.mark.parametrize("bad", [b'{"a":', b'{"seed":123456789012345678901234', b"[1,2,]", b""])
def test_bad_or_truncated_json_raises_value_error(bad: bytes) -> None:
    with pytest.raises(ValueError):
        jsonio.loads(bad)
