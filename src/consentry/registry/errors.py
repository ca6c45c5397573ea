"""The registry's errors. None of them ever carries person data: they name a person by the random
id, a photo by its file name, and a registry by its path (or URL with the password masked)."""

from __future__ import annotations

from consentry.errors import ConsentryError


class RegistryError(ConsentryError):
    """The registry cannot do what was asked (missing, of a newer schema, busy, tampered...)."""


class RegistryKeyError(RegistryError):
    """The operator's key is missing, malformed, wrong, or given to an unencrypted registry."""

    exit_code = 2


class PersonNotFound(RegistryError, KeyError):
    """No such person. Names the id when the caller gave one, never a name it was given."""

    def __init__(self, person_id: str | None = None) -> None:
        if person_id is not None and is_person_id(person_id):
            message = f"no person {person_id} in the registry"
        else:
            message = "no person with that id or display name in the registry"
        super().__init__(message)
        self.person_id = person_id if person_id is not None and is_person_id(person_id) else None

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class PersonInputError(RegistryError, ValueError):
    """A field given on intake is unusable. The message says which field and why, not its value."""

    exit_code = 2


class PhotoError(RegistryError):
    """A reference photo that cannot be reduced to exactly one face. Nothing was stored."""

    exit_code = 2

    def __init__(self, photo: str, problem: str) -> None:
        self.photo = photo
        self.problem = problem
        super().__init__(f"{photo}: {problem}; nothing was stored")


class AuditTampered(RegistryError):
    """The audit log's hash chain does not verify."""


def is_person_id(value: str) -> bool:
    """A person id is a uuid4 as 32 lower-case hex digits."""
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)
