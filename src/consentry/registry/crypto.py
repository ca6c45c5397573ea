"""Encryption at rest for the registry, with a key only the operator holds.

Design (envelope encryption, AES-256-GCM from ``cryptography``):

- The operator's key (``CONSENTRY_REGISTRY_KEY``) is either a raw 32-byte key written in base64
  (standard or URL-safe alphabet: any value that decodes to exactly 32 bytes is taken as one),
  or a passphrase of at least 12 characters, stretched with scrypt (N=2^15, r=8, p=1, 16-byte
  random salt; the salt and parameters are stored in the registry). That gives the key-encryption
  key (KEK).
- A random 256-bit data key is made when the registry is created. It is stored only wrapped:
  ``nonce(12) || AES-GCM(KEK, nonce, data_key, aad=b"consentry-registry:key-wrap:v1:" + registry_id)``.
  A wrong key fails the GCM tag check on unwrapping: a clear error, never garbage.
- Every stored value (a person's names, aliases, handles and consent record; each face embedding
  and PDQ hash; each recorded match) is sealed as ``0x01 || nonce(12) || AES-GCM(data_key,
  nonce, value, aad)`` with a fresh random nonce, where ``aad`` names the registry, the column
  and the person (``consentry-registry:v1:<registry_id>:<column>:<person_id>``), so a sealed
  value moved to another row, column or registry fails authentication.
- Without a key the same columns hold ``0x00 || value`` in clear, and ``registry status`` says so.

``cryptography`` is imported only when an encrypted registry is created or opened.
"""

from __future__ import annotations

import base64
import binascii
import os
import unicodedata
from dataclasses import dataclass
from typing import Any

from consentry.registry.errors import RegistryError, RegistryKeyError

KEY_BYTES = 32
NONCE_BYTES = 12
SALT_BYTES = 16
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1  # 32 MiB, ~0.1 s: the work an attacker pays per guess
MIN_PASSPHRASE_CHARS = 12
CIPHER = "aes-256-gcm"
PLAIN_TAG, SEALED_TAG = b"\x00", b"\x01"


@dataclass(frozen=True, repr=False)
class OperatorKey:
    """The operator's key as given: ``kind`` is ``raw`` (32 bytes) or ``passphrase`` (UTF-8, NFC)."""

    kind: str
    material: bytes

    def __repr__(self) -> str:  # never print key material
        return f"OperatorKey(kind={self.kind!r}, material=<hidden>)"


def _decode_raw_key(text: str) -> bytes | None:
    """The 32 bytes ``text`` is the base64 of (standard or URL-safe alphabet, padding optional),
    or None. Only the canonical encoding counts, so a passphrase never passes for a key."""
    compact = text.strip()
    padded = compact + "=" * (-len(compact) % 4)
    for altchars in (None, b"-_"):
        try:
            raw = base64.b64decode(padded.encode("ascii"), altchars=altchars, validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            continue
        if len(raw) == KEY_BYTES and base64.b64encode(raw, altchars=altchars).decode("ascii").rstrip("=") == compact.rstrip("="):
            return raw
    return None


def parse_key(value: str | bytes) -> OperatorKey:
    """Read the operator's key: 32 raw bytes, their base64, or a passphrase."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) != KEY_BYTES:
            raise RegistryKeyError(f"a raw registry key must be {KEY_BYTES} bytes, not {len(value)}")
        return OperatorKey("raw", bytes(value))
    text = value.rstrip("\r\n")  # a key read from a file keeps its final newline
    if not text:
        raise RegistryKeyError("the registry key is empty")
    raw = _decode_raw_key(text)
    if raw is not None:
        return OperatorKey("raw", raw)
    if len(text) < MIN_PASSPHRASE_CHARS:
        raise RegistryKeyError(
            f"the registry key is neither a base64 {KEY_BYTES}-byte key nor a passphrase of at least "
            f"{MIN_PASSPHRASE_CHARS} characters (`consentry registry new-key` prints a random key)"
        )
    return OperatorKey("passphrase", unicodedata.normalize("NFC", text).encode("utf-8"))


def new_key_text() -> str:
    """A fresh random key, as base64, for ``CONSENTRY_REGISTRY_KEY``."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _kek(key: OperatorKey, meta: dict[str, str]) -> bytes:
    if key.kind == "raw":
        return key.material
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    kdf = Scrypt(salt=_unb64(meta["kdf_salt"]), length=KEY_BYTES, n=int(meta["kdf_n"]), r=int(meta["kdf_r"]), p=int(meta["kdf_p"]))
    return kdf.derive(key.material)


def _wrap_aad(registry_id: str) -> bytes:
    return b"consentry-registry:key-wrap:v1:" + registry_id.encode("ascii")


def new_encryption(key: OperatorKey, registry_id: str) -> tuple[dict[str, str], Sealer]:
    """The metadata rows of a new encrypted registry and the sealer for its data key."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    meta = {"encryption": CIPHER, "kdf": "raw" if key.kind == "raw" else "scrypt"}
    if key.kind == "passphrase":
        meta.update(kdf_salt=_b64(os.urandom(SALT_BYTES)), kdf_n=str(SCRYPT_N), kdf_r=str(SCRYPT_R), kdf_p=str(SCRYPT_P))
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    meta["wrapped_key"] = _b64(nonce + AESGCM(_kek(key, meta)).encrypt(nonce, data_key, _wrap_aad(registry_id)))
    return meta, AesSealer(data_key)


def unlock(meta: dict[str, str], key: OperatorKey, registry_id: str, label: str) -> Sealer:
    """The sealer of an encrypted registry, or RegistryKeyError for a key that does not open it."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if meta.get("encryption") != CIPHER:
        raise RegistryError(f"{label}: unknown registry encryption {meta.get('encryption')!r}")
    expected = "raw" if meta.get("kdf") == "raw" else "passphrase"
    if key.kind != expected:
        described = {"raw": "a base64 32-byte key", "passphrase": "a passphrase"}
        raise RegistryKeyError(
            f"{label}: this registry was encrypted with {described[expected]}, but CONSENTRY_REGISTRY_KEY is {described[key.kind]}"
        )
    blob = _unb64(meta["wrapped_key"])
    try:
        data_key = AESGCM(_kek(key, meta)).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _wrap_aad(registry_id))
    except InvalidTag:
        raise RegistryKeyError(f"{label}: wrong registry key: it does not open this registry (CONSENTRY_REGISTRY_KEY)") from None
    return AesSealer(data_key)


class Sealer:
    """Turns a value into what is stored, and back. ``encrypted`` says whether that is ciphertext."""

    encrypted = False

    def seal(self, value: bytes, aad: bytes) -> bytes:
        return PLAIN_TAG + value

    def open(self, blob: bytes, aad: bytes) -> bytes:
        blob = bytes(blob)
        if blob[:1] != PLAIN_TAG:
            raise ValueError("a sealed value in an unencrypted registry")
        return blob[1:]


class AesSealer(Sealer):
    encrypted = True

    def __init__(self, data_key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead: Any = AESGCM(data_key)

    def __repr__(self) -> str:
        return "AesSealer(<key hidden>)"

    def seal(self, value: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return SEALED_TAG + nonce + self._aead.encrypt(nonce, value, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        blob = bytes(blob)
        if blob[:1] != SEALED_TAG:
            raise ValueError("a value stored in clear in an encrypted registry")
        try:
            return self._aead.decrypt(blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :], aad)
        except InvalidTag:
            raise ValueError("it fails authentication (altered, corrupt or moved)") from None
