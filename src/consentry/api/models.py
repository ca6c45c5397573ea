"""Request and response bodies. Declared so that /openapi.json describes exactly what is sent.

Responses mirror the library's ``as_dict``/``as_json`` objects field for field; FastAPI checks
every response against these models, so the spec cannot drift from what the service returns.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from consentry.store.api_keys import ROLES
from consentry.store.banks import BANK_NAME

BankName = Annotated[str, StringConstraints(pattern=BANK_NAME)]  # the store's rule: every bank is reachable by URL
ShortText = Annotated[str, StringConstraints(max_length=2000)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Threshold = Annotated[float, Field(allow_inf_nan=False)]
HashValue = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Role = Literal[ROLES]  # type: ignore[valid-type]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- service ---------------------------------------------------------------------------------


class Health(BaseModel):
    ok: bool
    version: str
    store: str = Field(description="'ok' when the database answers")


# --- banks -----------------------------------------------------------------------------------


class BankIn(_Strict):
    name: BankName
    kind: Literal["positive", "negative"] = "positive"
    labels: list[Label] = Field(default_factory=list, max_length=100)
    description: ShortText | None = None
    source: ShortText | None = None
    enabled: bool = True
    thresholds: dict[Label, Threshold] = Field(default_factory=dict, max_length=50)


class BankPatch(_Strict):
    labels: list[Label] | None = Field(None, max_length=100)
    description: ShortText | None = None
    source: ShortText | None = None
    enabled: bool | None = None
    thresholds: dict[Label, Threshold] | None = Field(None, max_length=50)


class BankOut(BaseModel):
    name: str
    kind: Literal["positive", "negative"]
    labels: list[str]
    description: str | None
    source: str | None
    enabled: bool
    thresholds: dict[str, float]
    created_at: str
    updated_at: str
    entry_count: int | None = None


class EntryRef(BaseModel):
    """A bank entry as a match shows it: what the model is and where it came from."""

    id: int | None
    name: str | None
    url: str | None
    labels: list[str]
    note: str | None
    provenance: dict[str, Any]
    added_at: str | None


class EntryOut(BaseModel):
    name: str | None
    url: str | None
    labels: list[str]
    note: str | None
    provenance: dict[str, Any]
    added_at: str | None
    signals: dict[str, str]


class EntryIn(_Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"signals": {"sha256": "5B1C3F5E8A2D4B6C9E0F1A2B3C4D5E6F708192A3B4C5D6E7F8091A2B3C4D5E6F7"},
         "name": "jane_doe_v2", "url": "https://civitai.com/models/123"}]})  # fmt: skip
    signals: dict[Label, HashValue] = Field(min_length=1, max_length=50, description="signal type -> value, e.g. {\"sha256\": \"5B1C...\"}")
    name: ShortText | None = None
    url: ShortText | None = None
    labels: list[Label] = Field(default_factory=list, max_length=100)
    note: ShortText | None = None


class EntryAdded(BaseModel):
    added: bool = Field(description="false when one of its signals was already in the bank")
    entry_id: int | None
    entry: EntryOut


class EntriesPage(BaseModel):
    bank: str
    limit: int
    offset: int
    entries: list[EntryOut]


class Deleted(BaseModel):
    ok: bool = True
    deleted: str


# --- lookup ----------------------------------------------------------------------------------


class TypedHash(_Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"signal": "autov3", "value": "9F0A12345678"}]})

    signal: Label = Field(description="a signal type name, e.g. sha256, autov3, content_hash")
    value: HashValue


class LookupRequest(_Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"hashes": ["5B1C3F5E8A", "sha256:5b1c3f5e8a2d4b6c9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7",
                    {"signal": "content_hash", "value": "41C2" + "0" * 60}]}]})  # fmt: skip
    hashes: list[HashValue | TypedHash] = Field(min_length=1, description="values in any hash form, or typed {signal, value}")


class LookupMatch(BaseModel):
    bank: str
    bank_kind: Literal["positive", "negative"]
    signal: str
    value: str
    entry: EntryRef | None


class LookupResult(BaseModel):
    query: str
    signal: str | None = Field(description="the signal type named in the request, null when inferred")
    tried: list[str] = Field(description="signal types the value was looked up as")
    matches: list[LookupMatch]
    error: str | None = Field(description="why this value could not be looked up; the others still are")


class LookupResponse(BaseModel):
    matched: int = Field(description="how many values matched something")
    results: list[LookupResult]


# --- scan ------------------------------------------------------------------------------------


class MatchSignal(BaseModel):
    type: str
    value: str
    bits: int


class MatchOut(BaseModel):
    bank: str
    bank_kind: Literal["positive", "negative"]
    signal: str
    value: str
    signals: list[MatchSignal]
    strength_bits: int
    weak: bool
    score: float | None
    threshold: float | None
    measure: str | None = Field(None, description="for similarity signals: 'distance' (lower is closer, PDQ) or the score's name")
    reason: str | None = Field(None, description="for similarity signals: how the match was found, e.g. which rotation of an image")
    suppressed_by: str | None
    dismissed_in: int | None = Field(None, description="the review item in which a reviewer dismissed this file's match to"
                                     " this entry: not flagged again, and no new item, until that item is appealed")  # fmt: skip
    review_item: int | None
    entry: EntryRef | None


class ScanOut(BaseModel):
    path: str = Field(description="the uploaded file's name as given (never a server path)")
    status: Literal["match", "no match", "quarantine"]
    verdict: Literal["clean", "quarantine", "rejected"]
    problem: str | None
    format: str
    size: int | None
    hashes: dict[str, str | int | None]
    image: dict[str, int] | None = Field(None, description="for an image: its width and height")
    matches: list[MatchOut]
    negative: list[MatchOut]
    notes: list[str]


# --- review ----------------------------------------------------------------------------------


class DecisionOut(BaseModel):
    action: Literal["confirm", "dismiss", "appeal"]
    actor: str
    reason: str
    negative_bank: str | None
    decided_at: str


class ReviewItemOut(BaseModel):
    id: int
    status: Literal["open", "confirmed", "dismissed"]
    file_name: str | None
    file_sha256: str | None
    file_size: int | None
    file_identity: dict[str, Any]
    bank_name: str
    entry_id: int | None
    signal_type: str
    signal_value: str
    score: float | None
    threshold: float | None
    source: str | None
    created_at: str
    updated_at: str
    decisions: list[DecisionOut]


class ReviewPage(BaseModel):
    status: str | None
    total: int
    limit: int
    offset: int
    items: list[ReviewItemOut]


class DecisionIn(_Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"action": "dismiss", "reason": "licensed likeness, contract on file", "negative_bank": "known-good"}]})  # fmt: skip
    action: Literal["confirm", "dismiss", "appeal"]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    negative_bank: str | None = Field(None, max_length=200, description="dismiss only: add the file to this negative bank")


# --- keys ------------------------------------------------------------------------------------


class KeyIn(_Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    role: Role


class KeyOut(BaseModel):
    name: str
    role: str
    created_at: str
    revoked_at: str | None


class KeyCreated(BaseModel):
    name: str
    role: str
    secret: str = Field(description="shown this once; only its SHA-256 is stored")


# --- import ----------------------------------------------------------------------------------


class ImportOut(BaseModel):
    """The import report (rows added, duplicates, rejected rows with reasons)."""

    model_config = ConfigDict(extra="allow")
