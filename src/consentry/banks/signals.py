"""Signal types: the kinds of value a bank can hold and a scan can compare.

A signal type says how to normalise a value a person typed or imported, and which values to
look up for a scanned file. Built-ins are the six hub hashes and ``content_hash``; the weight
fingerprint will join as a similarity signal. More come from plug-ins: a package that exposes
an object with a ``consentry_signal_types`` hook implementation under the entry-point group
``consentry`` is picked up by :func:`signal_registry` — the matcher never changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable, Protocol, runtime_checkable

import pluggy

from consentry.errors import HashFormatError
from consentry.identity.identify import ModelIdentity

PROJECT = "consentry"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

_PREFIXES = re.compile(r"^(0x|sha256:|autov[123]:|blake3:|crc32:|content:)", re.IGNORECASE)
_HEX = re.compile(r"^[0-9A-F]+$")


@runtime_checkable
class SignalType(Protocol):
    """What every signal type provides (built-in or plug-in)."""

    name: str  # stable identifier stored in banks, e.g. "sha256"
    description: str

    def normalise(self, text: str) -> str:
        """Canonical form of a value, or raise HashFormatError saying why it is not one."""

    def values_for(self, identity: ModelIdentity) -> list[str]:
        """Values to look up in banks for a scanned file (empty if it has none). The first
        is the one stored when the file itself is added to a bank."""

    def strength(self, value: str) -> int:
        """Bits of evidence a match on this value carries."""


class HookSpecs:
    @hookspec
    def consentry_signal_types(self) -> list[SignalType]:  # type: ignore[empty-body]
        """Return the signal types this plug-in provides."""


@dataclass(frozen=True)
class HexHash:
    """A hex hash of one or more allowed lengths, compared exactly (upper-case)."""

    name: str
    description: str
    lengths: tuple[int, ...]
    extract: Callable[[ModelIdentity], list[str]]
    bits: int = 256  # how much a match on this signal alone says (collisions in a large bank)

    def normalise(self, text: str) -> str:
        value = _PREFIXES.sub("", str(text).strip()).upper()
        if not _HEX.match(value or "-"):
            raise HashFormatError(f"{self.name}: not a hexadecimal hash: {str(text).strip()[:80]!r}")
        if len(value) not in self.lengths:
            wanted = " or ".join(str(n) for n in self.lengths)
            raise HashFormatError(f"{self.name}: {len(value)} hex digits, expected {wanted}")
        return value

    def values_for(self, identity: ModelIdentity) -> list[str]:
        return [v for v in self.extract(identity) if v]

    def strength(self, value: str) -> int:
        """Bits of evidence a match on ``value`` carries (a 12-hex AutoV3 carries 48)."""
        return min(self.bits, 4 * len(value))


def _hashes(identity: ModelIdentity) -> dict:
    return identity.hashes.as_dict() if identity.hashes else {}


BUILTIN_SIGNALS: tuple[HexHash, ...] = (
    HexHash("sha256", "SHA-256 of the whole file (also Hugging Face's LFS oid)", (64,),
            lambda i: [_hashes(i).get("sha256")]),
    # 32 bits of 64 KiB of the file: collides by chance in a large bank, and between files that
    # share those bytes; a match on it alone is reported as weak.
    HexHash("autov1", "A1111's old model hash: SHA-256 of 64 KiB at 1 MiB, 8 hex", (8,),
            lambda i: [_hashes(i).get("autov1")], bits=32),
    HexHash("autov2", "SHA-256's first 10 hex (A1111 'Model hash', Civitai AutoV2)", (10,),
            lambda i: [_hashes(i).get("autov2")], bits=40),
    # AutoV3 is listed by Civitai as 12 hex and written by kohya as 64: a bank may hold either,
    # so a file is looked up under both forms.
    HexHash("autov3", "SHA-256 of a safetensors file's tensor data (kohya sshs_model_hash); 64 or 12 hex", (64, 12),
            lambda i: [_hashes(i).get("autov3"), _hashes(i).get("autov3_short")]),
    HexHash("crc32", "CRC-32 in Civitai's byte order (85114A0D for 'hello world')", (8,),
            lambda i: [_hashes(i).get("crc32")], bits=32),
    HexHash("blake3", "BLAKE3-256 of the whole file", (64,), lambda i: [_hashes(i).get("blake3")]),
    HexHash("content_hash", "consentry's container-independent hash of the tensors", (64,),
            lambda i: [i.content_hash]),
)  # fmt: skip


class _Builtins:
    @hookimpl
    def consentry_signal_types(self) -> list[SignalType]:
        return list(BUILTIN_SIGNALS)


class SignalRegistry:
    """The signal types in force, by name."""

    def __init__(self, types: Iterable[SignalType]) -> None:
        self._types: dict[str, SignalType] = {}
        for signal_type in types:
            if signal_type.name in self._types:
                raise ValueError(f"two signal types are named {signal_type.name!r}")
            self._types[signal_type.name] = signal_type

    def __contains__(self, name: str) -> bool:
        return name in self._types

    def __iter__(self):
        return iter(self._types.values())

    def names(self) -> list[str]:
        return list(self._types)

    def get(self, name: str) -> SignalType:
        key = name.strip().lower()
        if key not in self._types:
            raise HashFormatError(f"unknown signal type {name!r} (known: {', '.join(self._types)})")
        return self._types[key]

    def lookups_for(self, identity: ModelIdentity) -> list[tuple[str, str]]:
        """Every (signal type, value) pair a scanned file should be looked up under."""
        return [(t.name, v) for t in self._types.values() for v in t.values_for(identity)]


def build_registry(extra_plugins: Iterable[object] = (), *, load_entry_points: bool = True) -> SignalRegistry:
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(HookSpecs)
    manager.register(_Builtins(), name="builtins")
    for plugin in extra_plugins:
        manager.register(plugin)
    if load_entry_points:
        manager.load_setuptools_entrypoints(PROJECT)
    return SignalRegistry(t for types in manager.hook.consentry_signal_types() for t in types)


@lru_cache(maxsize=1)
def signal_registry() -> SignalRegistry:
    """The process-wide registry: built-ins plus installed plug-ins."""
    return build_registry()
