"""Weight fingerprints: recognise a copy or derivative of a known model after key-format
conversion, dtype casts, re-factorisation, rank resizing or merging (issue 3).

A fingerprint is a fixed random-projection sketch of every module's weight delta, named
canonically (:mod:`.naming`), computed without materialising LoRA products (:mod:`.sketch`).
"""

from consentry.fingerprints.build import fingerprint_file, fingerprint_manifest
from consentry.fingerprints.compare import (
    COULD_NOT, CONTAINS, DEFAULT_THRESHOLDS, DERIVED, SAME, UNRELATED, Comparison, Thresholds, compare,
)  # fmt: skip
from consentry.fingerprints.errors import FingerprintError
from consentry.fingerprints.model import Fingerprint, join_fingerprints

__all__ = [
    "COULD_NOT", "CONTAINS", "DEFAULT_THRESHOLDS", "DERIVED", "SAME", "UNRELATED", "Comparison", "Fingerprint",
    "FingerprintError", "Thresholds", "compare", "compare_files", "fingerprint_file", "fingerprint_manifest",
    "join_fingerprints",
]  # fmt: skip


def compare_files(a: str, b: str, *, base: str | None = None, base_name: str | None = None) -> Comparison:
    """Fingerprint two files and compare them; a file that cannot be fingerprinted gives
    ``could not compare`` naming the file and the reason (never an exception, never "unrelated")."""
    from consentry.errors import ConsentryError
    from consentry.fingerprints.compare import could_not_compare

    prints = []
    for label, path in (("A", a), ("B", b)):
        try:
            prints.append(fingerprint_file(path, base=base, base_name=base_name))
        except ConsentryError as exc:
            return could_not_compare(f"{label} ({path}): {exc}")
    return compare(prints[0], prints[1])
