"""The folded text names are matched and searched in, against its plain definition: anyascii,
lower case, every run of characters other than a-z and 0-9 one space, no space at either end."""

from __future__ import annotations

import re

from anyascii import anyascii
from hypothesis import given, strategies as st

from consentry.textfold import fold, fold_values


def by_definition(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", anyascii(text).lower()).strip()


@given(st.text(max_size=200))
def test_fold_is_its_definition(text: str) -> None:
    assert fold(text) == by_definition(text)


def test_fold_examples() -> None:
    assert fold("Катя  Marchetti_v2!!") == "katya marchetti v2"
    assert fold("  ") == "" and fold("<lora:Mira-Castellan:0.8>") == "lora mira castellan 0 8"
    assert fold_values("A", None, ["B c"], {"10_Mira": 3}) == "a b c 10 mira 3"
