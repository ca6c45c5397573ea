"""Signal types: the kinds of value a bank can hold and a scan can compare.

Two kinds, both returned by the same plug-in hook:

* **exact** signals (:class:`SignalType`): a value a person can type or import, normalised,
  stored in ``bank_signals`` and matched by equality. Built-ins: the six hub hashes and
  ``content_hash``.
* **similarity** signals (:class:`SimilaritySignalType`, ``kind = "similarity"``): compared by
  a score against a per-bank threshold (``bank.thresholds[name]``), never by equality, so they
  have no typed value: the signal keeps what it needs when a model file is banked
  (``remember``) and finds the related bank entries for a scanned file itself (``find``).
  Built-ins: the weight ``fingerprint`` (:mod:`consentry.banks.fingerprint_matching`) and the
  ``pdq`` image hash (:mod:`consentry.banks.pdq_matching`), whose values can also be typed and
  imported (a similarity signal with ``normalise`` is *typed*: ``get`` and ``names`` include it).

More come from plug-ins: a package that exposes an object with a ``consentry_signal_types``
hook implementation under the entry-point group ``consentry`` is picked up by
:func:`signal_registry` — the matcher never changes, for either kind.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, runtime_checkable

import pluggy

from consentry.errors import ConsentryError, HashFormatError
from consentry.identity.identify import ModelIdentity

PROJECT = "consentry"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

EXACT = "exact"
SIMILARITY = "similarity"

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


@dataclass(frozen=True)
class SimilarityHit:
    """A bank entry a similarity signal relates to a scanned file, at or above the bank's threshold."""

    entry_id: int
    verdict: str  # what was found, in the signal's words (the fingerprint: same, derived, contains)
    score: float
    threshold: float
    reason: str = ""
    measure: str = "score"  # "score": a match is score >= threshold; "distance" (pdq): distance <= threshold


@runtime_checkable
class SimilaritySignalType(Protocol):
    """A signal compared by similarity (built-in: the weight fingerprint; plug-ins may add more)."""

    name: str  # also the key of its threshold in a bank's thresholds
    description: str
    kind: str  # "similarity"
    # optional: ``threshold_range = (low, high)``, the values a bank's threshold may take

    def remember(self, store: Any, entry_id: int, path: Path, identity: ModelIdentity) -> str | None:
        """Keep what this signal needs of a model file just added to a bank as ``entry_id``.
        Returns what to report under the signal's name (``"stored"``, ``"not stored: why"``),
        or None when the file has nothing for this signal."""

    def find(self, store: Any, identity: ModelIdentity) -> tuple[list[SimilarityHit], list[str]]:
        """The bank entries related to a scanned file, each scoring at or above its bank's
        threshold, and notes for the scan report (e.g. why no comparison was possible)."""


class HookSpecs:
    @hookspec
    def consentry_signal_types(self) -> list[SignalType | SimilaritySignalType]:  # type: ignore[empty-body]
        """Return the signal types this plug-in provides (exact or similarity)."""


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


class FingerprintSignal:
    """The weight fingerprint as a similarity signal. The work is in
    :mod:`consentry.banks.fingerprint_matching`, imported on first use: it needs numpy and the
    fingerprint index, which a bank import or a hash lookup should not load."""

    name = "fingerprint"
    kind = SIMILARITY
    threshold_range = (0.0, 1.0)  # a score: identity or containment
    description = "weight fingerprint of a LoRA or fine-tune: same, derived or contains, with a score"

    def remember(self, store: Any, entry_id: int, path: Path, identity: ModelIdentity) -> str | None:
        if identity.manifest is None or identity.problem:
            return None  # nothing to fingerprint: no tensors were read
        from consentry.banks.fingerprint_matching import fingerprint_entry

        why_not = fingerprint_entry(store, entry_id, path, identity)
        return "stored" if why_not is None else f"not stored: {why_not}"

    def find(self, store: Any, identity: ModelIdentity) -> tuple[list[SimilarityHit], list[str]]:
        from consentry.banks.fingerprint_matching import fingerprint_candidates

        found, notes = fingerprint_candidates(store, identity)
        return [SimilarityHit(entry_id, verdict, score, threshold, reason)
                for entry_id, verdict, score, threshold, reason in found], notes  # fmt: skip


_PDQ_HEX = re.compile(r"^[0-9a-f]{64}$")


class PdqSignal:
    """Meta's PDQ image hash as a similarity signal: image banks work like StopNCII's.

    Its values are typed too (``normalise``): a PDQ hash list imports like any hash list, and
    an image added with ``bank add`` stores its PDQ as one of the entry's signals
    (``values_for``). Matching is by Hamming distance against the scanned image's 8 dihedral
    hashes (:mod:`consentry.banks.pdq_matching`, imported on first use: it needs numpy)."""

    name = "pdq"
    kind = SIMILARITY
    measure = "distance"
    threshold_range = (0.0, 256.0)  # a Hamming distance in bits
    description = "PDQ image hash (64 hex; ThreatExchange, StopNCII): Hamming distance <= threshold (default 31), rotations and mirrors too"
    bits = 256

    def normalise(self, text: str) -> str:
        value = re.sub(r"^(0x|pdq:)", "", str(text).strip(), flags=re.IGNORECASE).lower()
        if not _PDQ_HEX.match(value):
            if re.match(r"^[0-9a-f]+$", value):
                raise HashFormatError(f"pdq: {len(value)} hex digits, expected 64")
            raise HashFormatError(f"pdq: not a hexadecimal hash: {str(text).strip()[:80]!r}")
        if value == "0" * 64:
            raise HashFormatError("pdq: the all-zero hash is what an image without detail hashes to; it cannot be matched")
        return value

    def strength(self, value: str) -> int:
        return self.bits

    def values_for(self, identity: ModelIdentity) -> list[str]:
        """The PDQ hash to bank for an identified image (none below quality 50)."""
        if not identity.extra:
            return []
        from consentry.banks.pdq_matching import banked_value

        value, _why = banked_value(identity)
        return [value] if value else []

    def remember(self, store: Any, entry_id: int, path: Path, identity: ModelIdentity) -> str | None:
        if not identity.extra:
            return None  # not an image
        from consentry.banks.pdq_matching import banked_value

        return banked_value(identity)[1]

    def find(self, store: Any, identity: ModelIdentity) -> tuple[list[SimilarityHit], list[str]]:
        if not identity.extra:
            return [], []
        from consentry.banks.pdq_matching import pdq_candidates

        found, notes = pdq_candidates(store, identity)
        return [SimilarityHit(entry_id, verdict, distance, threshold, reason, self.measure)
                for entry_id, verdict, distance, threshold, reason in found], notes  # fmt: skip


BUILTIN_SIMILARITY_SIGNALS: tuple[SimilaritySignalType, ...] = (FingerprintSignal(), PdqSignal())


class _Builtins:
    @hookimpl
    def consentry_signal_types(self) -> list[SignalType | SimilaritySignalType]:
        return [*BUILTIN_SIGNALS, *BUILTIN_SIMILARITY_SIGNALS]


def is_similarity(signal_type: object) -> bool:
    return getattr(signal_type, "kind", EXACT) == SIMILARITY


def is_typed(signal_type: object) -> bool:
    """A similarity signal whose values can also be typed or imported (it has ``normalise``)."""
    return callable(getattr(signal_type, "normalise", None))


class SignalRegistry:
    """The signal types in force, by name. Iterating, ``names()``, ``get()`` and ``in`` see the
    exact types (what a list can hold and a bank row stores); ``similarity()`` the others."""

    def __init__(self, types: Iterable[SignalType | SimilaritySignalType]) -> None:
        self._types: dict[str, SignalType] = {}
        self._similarity: dict[str, SimilaritySignalType] = {}
        for signal_type in types:
            if signal_type.name in self._types or signal_type.name in self._similarity:
                raise ValueError(f"two signal types are named {signal_type.name!r}")
            if is_similarity(signal_type):
                self._similarity[signal_type.name] = signal_type  # type: ignore[assignment]
            else:
                self._types[signal_type.name] = signal_type  # type: ignore[assignment]

    def __contains__(self, name: str) -> bool:
        return name in self._types or name in self._typed_similarity()

    def __iter__(self):
        return iter(self._types.values())

    def names(self) -> list[str]:
        """Every signal a value can be typed or imported for: the exact ones, then the typed
        similarity ones (pdq)."""
        return [*self._types, *self._typed_similarity()]

    def _typed_similarity(self) -> dict[str, SimilaritySignalType]:
        return {name: t for name, t in self._similarity.items() if is_typed(t)}

    def similarity(self) -> list[SimilaritySignalType]:
        return list(self._similarity.values())

    def get(self, name: str) -> SignalType:
        """The signal type a typed or imported value of ``name`` is (exact, or typed similarity)."""
        key = name.strip().lower()
        if key in self._similarity:
            if is_typed(self._similarity[key]):
                return self._similarity[key]  # type: ignore[return-value]
            raise HashFormatError(f"{key} is a similarity signal: it is computed from a model file (bank add), not typed or imported")
        if key not in self._types:
            raise HashFormatError(f"unknown signal type {name!r} (known: {', '.join(self.names())})")
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


class BankSettingsError(ConsentryError, ValueError):
    """A bank setting that cannot work (a threshold for no signal, or out of its range)."""

    exit_code = 2


def check_thresholds(thresholds: Mapping[str, Any], registry: SignalRegistry | None = None) -> dict[str, float]:
    """A bank's thresholds, each for a similarity signal and within its range (finite)."""
    registry = registry or signal_registry()
    known = {t.name: t for t in registry.similarity()}
    out: dict[str, float] = {}
    for name, value in thresholds.items():
        signal = known.get(str(name).strip().lower())
        if signal is None:
            raise BankSettingsError(f"threshold for {name!r}: no similarity signal of that name "
                                    f"(thresholds apply to: {', '.join(sorted(known)) or 'none'})")  # fmt: skip
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise BankSettingsError(f"threshold for {signal.name}: {value!r} is not a number") from None
        low, high = getattr(signal, "threshold_range", (-math.inf, math.inf))
        if not math.isfinite(number):
            raise BankSettingsError(f"threshold for {signal.name}: {value!r} is not a finite number")
        if not low <= number <= high:
            raise BankSettingsError(f"threshold for {signal.name}: {value!r} is outside {low:g}..{high:g}")
        out[signal.name] = number
    return out
