"""Every exception consentry raises, in one place.

Model-file errors carry the path, the problem in one line, and the verdict the file earns:
``rejected`` (malformed: no loader should accept it, nothing could run) or ``quarantine``
(could not be proven safe: it may carry code, or a lenient loader might read it differently).
A file that raises is never ``clean``.
"""

from __future__ import annotations

from pathlib import Path


class ConsentryError(Exception):
    """Base class: the CLI turns any of these into one line on stderr and a non-zero exit."""

    exit_code = 1


class ModelFileError(ConsentryError):
    """A model file that cannot be read as a clean model."""

    exit_code = 2
    verdict = "rejected"

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)

    def with_path(self, path: str | Path) -> "ModelFileError":
        """Return a copy naming ``path`` (parsers that only see bytes raise without one)."""
        err = type(self)(path, self.problem)
        err.__cause__ = self.__cause__
        return err


class MalformedModelError(ModelFileError):
    """Breaks the rules of its format (truncated, bad offsets, bad header...)."""

    verdict = "rejected"


class UnsupportedFormatError(ModelFileError):
    """Not a model format consentry recognises (sniffed by bytes, not by name)."""

    verdict = "rejected"


class UnsafeModelError(ModelFileError):
    """Could not be proven safe: refused pickle global/opcode, suspicious archive, unparseable pickle."""

    verdict = "quarantine"


class ModelFileUnreadable(ModelFileError):
    """The operating system would not let us read it (permissions, vanished, a directory...)."""

    verdict = "rejected"


class HashFormatError(ConsentryError, ValueError):
    """A hash string given by a user that is not any hash form consentry knows."""

    exit_code = 2


class StoreError(ConsentryError):
    """The embedded database is missing, locked, corrupt or of a newer schema."""


class StoreBusy(StoreError):
    """Another connection held the store's write lock for longer than the wait allows (a long
    import, say): nothing was changed; trying again later is the remedy (HTTP: 503 with Retry-After)."""
