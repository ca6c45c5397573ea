"""Model files that ship inside PyPI packages are used only when their SHA-256 is the pinned one:
a changed or swapped file is a clear error, never a silently different detector."""

from __future__ import annotations

import hashlib
import os

from consentry.errors import ConsentryError


def verified(path: str, expected_sha256: str, what: str, error: type[ConsentryError]) -> str:
    """``path`` if its bytes hash to ``expected_sha256``; else ``error`` naming ``what`` and why."""
    name = os.path.basename(path)
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise error(f"{what} {name} cannot be read: {exc.strerror or exc}") from None
    if digest.hexdigest() != expected_sha256:
        raise error(f"{what} {name} has SHA-256 {digest.hexdigest()}, expected {expected_sha256}")
    return path
