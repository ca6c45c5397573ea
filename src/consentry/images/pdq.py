"""PDQ, Meta's perceptual image hash (pdqhash: MIT bindings over ThreatExchange's BSD C++).

Bit-exact with Meta's reference ``pdq-photo-hasher`` (checked in the tests against hashes that
the reference CLI, compiled from the C++ in the pdqhash sdist, printed for the same pixels):

* the reference resizes any image with a side over 512 to **512x512** (CImg's default
  nearest-neighbour ``resize``, aspect ratio not kept) before hashing, because its two-pass
  Jarosz filter is slow on large images; :func:`prepare` does the same, source row
  ``floor(i * height / 512)`` and column ``floor(j * width / 512)``, as CImg picks them;
* luma is ``0.299 R + 0.587 G + 0.114 B``; a greyscale image is hashed from its RGB expansion
  (same luma);
* the hex form is the 256 bits most significant first, 64 lower-case hex digits, as
  ThreatExchange and StopNCII write it (``Hash256::format``: words 15 to 0).

The quality (0-100) says how much detail the hash rests on; ThreatExchange does not match on
hashes of quality below 50 (:data:`MIN_QUALITY`). The 8 dihedral hashes are those of the image
rotated by 0/90/180/270 degrees and mirrored four ways, computed from one DCT
(:data:`DIHEDRAL_NAMES`, in pdqhash's order); matching a query's 8 against a bank's hashes finds
rotated and mirrored copies. Hamming distance <= 31 is ThreatExchange's match threshold
(:data:`MATCH_THRESHOLD`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

REFERENCE_SIDE = 512
MIN_QUALITY = 50
MATCH_THRESHOLD = 31

# What each of pdqhash's 8 dihedral hashes is the hash of, in its order (PDQ's names: original,
# rotate90, rotate180, rotate270, flipX, flipY, flipPlus1, flipMinus1). Checked in the tests
# against the hash of the image actually turned with numpy.
DIHEDRAL_NAMES = (
    "original",
    "rotated 90 degrees counter-clockwise",
    "rotated 180 degrees",
    "rotated 90 degrees clockwise",
    "mirrored top to bottom",
    "mirrored left to right",
    "transposed (mirrored along the main diagonal)",
    "mirrored along the anti-diagonal",
)


def prepare(rgb: np.ndarray) -> np.ndarray:
    """The pixels PDQ hashes: ``rgb`` as a C-contiguous ``uint8`` HxWx3 array, resized to 512x512
    by nearest neighbour like the reference hasher when a side is over 512."""
    import numpy as np

    a = np.asarray(rgb)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"PDQ needs RGB uint8 pixels (height, width, 3), got {a.dtype} {a.shape}")
    height, width = a.shape[:2]
    if height > REFERENCE_SIDE or width > REFERENCE_SIDE:
        rows = (np.arange(REFERENCE_SIDE) * height) // REFERENCE_SIDE
        cols = (np.arange(REFERENCE_SIDE) * width) // REFERENCE_SIDE
        a = a[rows][:, cols]
    return np.ascontiguousarray(a)


def bits_to_hex(bits: np.ndarray) -> str:
    """pdqhash's 256-element bit vector (most significant bit first) as 64 lower-case hex."""
    import numpy as np

    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def pdq_hash(rgb: np.ndarray) -> tuple[str, int]:
    """(64 lower-case hex digits, quality 0-100) of an RGB image."""
    import pdqhash

    bits, quality = pdqhash.compute(prepare(rgb))
    return bits_to_hex(bits), int(quality)


def pdq_dihedral_with_quality(rgb: np.ndarray) -> tuple[list[str], int]:
    """The 8 dihedral hashes (:data:`DIHEDRAL_NAMES` order, the first is :func:`pdq_hash`'s) and the quality."""
    import pdqhash

    vectors, quality = pdqhash.compute_dihedral(prepare(rgb))
    return [bits_to_hex(v) for v in vectors], int(quality)


def pdq_dihedral(rgb: np.ndarray) -> list[str]:
    """The 8 dihedral hashes of an RGB image (:data:`DIHEDRAL_NAMES` order)."""
    return pdq_dihedral_with_quality(rgb)[0]


def hamming(a_hex: str, b_hex: str) -> int:
    """Bits that differ between two PDQ hashes (0-256)."""
    if len(a_hex) != 64 or len(b_hex) != 64:
        raise ValueError("a PDQ hash is 64 hex digits")
    return (int(a_hex, 16) ^ int(b_hex, 16)).bit_count()
