"""Hash strings as people paste them: any case, ``0x``/``sha256:`` prefixes, short hub forms."""

from __future__ import annotations

import re

from consentry.errors import HashFormatError

_HEX = re.compile(r"^[0-9A-F]+$")
_PREFIX = re.compile(r"^(0x|sha256:|autov[123]:|blake3:|crc32:)", re.IGNORECASE)

# Lengths the hubs show: AutoV1 and CRC32 8, AutoV2 10, AutoV3 short 12, full 64.
MIN_LOOKUP_HEX = 8


def normalise_hash(text: str) -> str:
    """Return upper-case hex, or raise HashFormatError saying what is wrong with ``text``."""
    value = _PREFIX.sub("", text.strip()).upper()
    if not value:
        raise HashFormatError("empty hash")
    if not _HEX.match(value):
        raise HashFormatError(f"not a hexadecimal hash: {text.strip()[:80]!r}")
    if len(value) < MIN_LOOKUP_HEX:
        raise HashFormatError(f"hash {value!r} is too short: give at least {MIN_LOOKUP_HEX} hex digits (AutoV1/CRC32 length)")
    if len(value) > 64:
        raise HashFormatError(f"hash is {len(value)} hex digits; the longest form (SHA256, BLAKE3, AutoV3) has 64")
    return value
