"""Which image format a file is, from its first bytes (never its name). Pure Python: the CLI
and the model-file scanner call it without loading Pillow."""

from __future__ import annotations

import os

# Pillow format names, the only ones consentry lets Pillow open: other plugins (EPS runs
# Ghostscript, and a long tail of rarely used decoders) never see untrusted bytes.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")

HEAD_BYTES = 32

# BMP's magic is only "BM": the DIB header size at offset 14 must also be one of the known ones.
_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


def image_format(head: bytes) -> str | None:
    """The Pillow format name of an image whose file starts with ``head`` (at least 18 bytes
    for BMP, 12 for WebP), or None if it is none of :data:`IMAGE_FORMATS`."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # classic TIFF and BigTIFF
        return "TIFF"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
        return "BMP"
    return None


def image_format_of(path: str | os.PathLike[str]) -> str | None:
    """:func:`image_format` of a file's first bytes (None for anything unreadable or a folder)."""
    try:
        with open(path, "rb") as fh:
            return image_format(fh.read(HEAD_BYTES))
    except OSError:
        return None
