"""The consented protected-person registry (a database of its own, apart from the store).

Library first; the ``consentry person`` and ``consentry registry`` commands are thin wrappers.
Importing this package loads numpy, never cryptography (only an encrypted registry needs it)
nor consentry.images (only photo intake does).
"""

from consentry.registry.audit import AuditCheck, AuditEntry
from consentry.registry.errors import (
    AuditTampered,
    PersonInputError,
    PersonNotFound,
    PhotoError,
    RegistryError,
    RegistryKeyError,
)
from consentry.registry.records import (
    Consent,
    MatchRecord,
    PersonRecord,
    RegistryStatus,
    Withdrawal,
)
from consentry.registry.registry import (
    KEY_ENV,
    REGISTRY_ENV,
    Registry,
    default_registry_target,
)

__all__ = [
    "KEY_ENV",
    "REGISTRY_ENV",
    "AuditCheck",
    "AuditEntry",
    "AuditTampered",
    "Consent",
    "MatchRecord",
    "PersonInputError",
    "PersonNotFound",
    "PersonRecord",
    "PhotoError",
    "Registry",
    "RegistryError",
    "RegistryKeyError",
    "RegistryStatus",
    "Withdrawal",
    "default_registry_target",
]  # fmt: skip
