"""Identity of a remote safetensors file from byte ranges, on any host that honours ``Range``.

The header is fetched with two bounded range requests (a first 64 KiB, then the rest of ``N``
if longer) and validated with consentry's strict parser — never huggingface_hub's lenient
reader (``untrusted-files.md`` §1.4: it decodes with ``errors="ignore"`` and checks no offsets).
Tensor bytes are then fetched one tensor at a time, so the weight fingerprint of a checkpoint
costs only the tensors it samples. AutoV3 needs the whole data part: only on request.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

import httpx
from blake3 import blake3

from consentry.errors import MalformedModelError
from consentry.formats.limits import DEFAULT_LIMITS, ReadLimits
from consentry.formats.safetensors import parse_safetensors_header, safetensors_header_length
from consentry.formats.tensors import Manifest, TensorInfo
from consentry.identity.content_hash import combine
from consentry.hubs.base import USER_AGENT, HubError
from consentry.hubs.retry import RETRY_STATUS, RetryPolicy, Transient, retry_after_seconds, transport_failure

FIRST_READ = 1 << 16  # one round trip covers the header of almost every LoRA
MAX_LOAD = 1 << 30  # a full read of the data part is for LoRAs and small models, not checkpoints
MIN_SAMPLE = 16 << 20  # a checkpoint's sample may always take this much, however small the budget
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


@dataclass
class RangeReader:
    """Bounded, retried single-range GETs against one URL; counts every byte it receives."""

    url: str
    client: httpx.Client
    headers: dict[str, str] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(retries=3, backoff=0.1))
    size: int | None = None  # learnt from the first Content-Range
    bytes_fetched: int = 0
    requests: int = 0
    cached: tuple[int, bytes] | None = None  # (offset, bytes) already fetched whole: reads inside it are free
    etags: list[str] = field(default_factory=list)  # ETag / X-Linked-Etag seen on the first answer and its redirects

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``; a short answer is retried, never returned."""
        if self.cached is not None:
            offset, data = self.cached
            if offset <= start and end <= offset + len(data):
                return data[start - offset : end - offset]
        return self.retry.call(f"{self.url}: bytes {start}-{end - 1}", lambda: self._read_once(start, end))

    def _read_once(self, start: int, end: int) -> bytes:
        try:
            return self._read_stream(start, end)
        except httpx.TransportError as exc:  # dropped connection, truncated body, timeout
            raise transport_failure(self.url, exc) from None

    def _read_stream(self, start: int, end: int) -> bytes:
        want = end - start
        self.requests += 1
        headers = {**self.headers, "Range": f"bytes={start}-{end - 1}"}
        with self.client.stream("GET", self.url, headers=headers) as resp:
            if not self.etags:
                self.etags = _linked_etags(resp)
            if resp.status_code in RETRY_STATUS:
                raise Transient(f"HTTP {resp.status_code}", retry_after_seconds(resp.headers.get("retry-after")))
            if resp.status_code in (401, 403):
                code = resp.headers.get("x-error-code", "")
                raise HubAccessDenied(f"{self.url}: access denied (HTTP {resp.status_code} {code or 'no error code'})")
            if resp.status_code == 416:
                raise HubError(f"{self.url}: range {start}-{end - 1} not satisfiable (HTTP 416)")
            if resp.status_code == 200:  # Range ignored: take what we need from the front, then hang up
                if start != 0:
                    raise HubError(f"{self.url}: server ignores Range requests (HTTP 200 for bytes={start}-)")
                total = int(resp.headers.get("content-length", "-1"))
            elif resp.status_code == 206:
                m = _CONTENT_RANGE.fullmatch(resp.headers.get("content-range", ""))
                if not m or int(m.group(1)) != start:
                    raise HubError(f"{self.url}: bad Content-Range {resp.headers.get('content-range')!r} for bytes={start}-")
                total = int(m.group(3))
                want = min(want, total - start)
                length = resp.headers.get("content-length")
                if length is not None and int(length) != int(m.group(2)) - start + 1:
                    raise Transient(f"Content-Length {length} disagrees with Content-Range {m.group(0)!r}")
            else:
                raise HubError(f"{self.url}: HTTP {resp.status_code} for a range read")
            if self.size is not None and total >= 0 and total != self.size:
                raise HubError(f"{self.url}: file size changed from {self.size} to {total} during the read")
            self.size = total if total >= 0 else self.size
            chunks, got = [], 0
            for chunk in resp.iter_bytes():
                chunks.append(chunk[: want - got])
                got += len(chunks[-1])
                self.bytes_fetched += len(chunk)
                if got >= want:
                    break
        if got < want:
            raise Transient(f"short body: {got} of {want} bytes")
        return b"".join(chunks)


def _linked_etags(resp: httpx.Response) -> list[str]:
    """The ETags a resolve URL answered with, redirects included: for an LFS file on the Hub,
    ``X-Linked-Etag`` is the file's SHA-256 (``hub-interfaces.md`` §3.1)."""
    out = []
    for r in [*resp.history, resp]:
        for name in ("x-linked-etag", "etag"):
            value = r.headers.get(name, "").strip().removeprefix("W/").strip('"')
            if value:
                out.append(value)
    return out


class HubAccessDenied(HubError):
    """401/403: a gated or private repo the token may not read (not retried)."""


@dataclass
class RemoteManifest(Manifest):
    """A manifest whose tensors have no local path: their bytes come by Range request."""

    reader: RangeReader | None = None

    def iter_tensor_bytes(self, tensor: TensorInfo, chunk_size: int = 1 << 22) -> Iterator[bytes]:
        if tensor.file_range is None or self.reader is None:
            raise NotImplementedError(f"{tensor.name!r} has no byte range")
        start, end = tensor.file_range
        for pos in range(start, end, chunk_size):
            yield self.reader.read(pos, min(end, pos + chunk_size))


class RemoteSafetensors:
    """A safetensors file at ``url``: header validated strictly, tensors fetched on demand.

    ``open()`` raises :class:`MalformedModelError` for a header the strict parser refuses and
    :class:`HubError` when the host fails (after bounded retries).
    """

    def __init__(self, url: str, *, client: httpx.Client | None = None, headers: dict[str, str] | None = None,
                 limits: ReadLimits = DEFAULT_LIMITS, retry: RetryPolicy | None = None) -> None:  # fmt: skip
        self.url = url
        self._own_client = client is None
        self.client = client or httpx.Client(follow_redirects=True, timeout=httpx.Timeout(30.0, connect=10.0),
                                             headers={"User-Agent": USER_AGENT})  # fmt: skip
        self.reader = RangeReader(url, self.client, dict(headers or {}), retry or RetryPolicy(retries=3, backoff=0.1))
        self.limits = limits
        self.manifest: RemoteManifest | None = None
        self.header_bytes: bytes = b""
        self._head: bytes = b""  # the first bytes fetched, kept so a full read does not fetch them twice

    def __enter__(self) -> "RemoteSafetensors":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._own_client:
            self.client.close()

    @property
    def size(self) -> int:
        return self.reader.size or 0

    @property
    def bytes_fetched(self) -> int:
        return self.reader.bytes_fetched

    def open(self) -> RemoteManifest:
        """Fetch and strictly validate the header (at most ``8 + N`` bytes plus the first read)."""
        first = self.reader.read(0, FIRST_READ)
        self._head = first
        size = self.reader.size if self.reader.size is not None else len(first)
        n = safetensors_header_length(first[:8], size, limits=self.limits, path=self.url)
        data = first if len(first) >= 8 + n else first + self.reader.read(len(first), 8 + n)
        parsed = parse_safetensors_header(data, size, limits=self.limits, path=self.url)
        self.header_bytes = data[: 8 + n]
        # no local path: read_array then asks iter_tensor_bytes, which fetches by Range
        tensors = [dataclasses.replace(t, path=None) for t in parsed.tensors]
        self.manifest = RemoteManifest(path=parsed.path, format=parsed.format, tensors=tensors,
                                       metadata=parsed.metadata, data_start=parsed.data_start, reader=self.reader)  # fmt: skip
        return self.manifest

    def lfs_sha256(self) -> str | None:
        """The SHA-256 the host vouches for without a download (a Hub LFS ETag), upper-case."""
        for value in self.reader.etags:
            if len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value):
                return value.upper()
        return None

    @property
    def data_loaded(self) -> bool:
        return self.reader.cached is not None

    def load_data(self, *, max_bytes: int = MAX_LOAD, chunk_size: int = 1 << 23) -> None:
        """Fetch the whole data part once (in ``chunk_size`` ranges) and keep it, so AutoV3, the
        content hash and the fingerprint all come from one pass. Refused above ``max_bytes``:
        a checkpoint is fingerprinted from a sample instead (:func:`fingerprint_remote`)."""
        manifest = self.manifest or self.open()
        start = manifest.data_start or 0
        if self.size - start > max_bytes:
            raise HubError(f"{self.url}: data part of {self.size - start} bytes is over the {max_bytes}-byte limit for a full read")
        have = min(len(self._head), self.size)
        parts = [self._head[start:have]] if have > start else []
        parts += [self.reader.read(pos, min(self.size, pos + chunk_size)) for pos in range(max(start, have), self.size, chunk_size)]
        self.reader.cached = (start, b"".join(parts))

    def autov3(self, chunk_size: int = 1 << 23) -> str:
        """SHA-256 of the whole data part (``file[8+N:]``), upper-case: streams every data byte
        (or hashes what :meth:`load_data` fetched)."""
        manifest = self.manifest or self.open()
        h = hashlib.sha256()
        start = manifest.data_start or 0
        for pos in range(start, self.size, chunk_size):
            h.update(self.reader.read(pos, min(self.size, pos + chunk_size)))
        return h.hexdigest().upper()

    def content_hash(self) -> str:
        """consentry's container-independent tensor hash; needs every tensor's bytes (call
        :meth:`load_data` first to pay for them once)."""
        manifest = self.manifest or self.open()
        digests = {}
        for tensor in manifest.tensors:
            hasher = blake3()
            for chunk in manifest.iter_tensor_bytes(tensor):
                hasher.update(chunk)
            digests[tensor.name] = hasher.digest()
        return combine(manifest.tensors, digests)


# --- weight fingerprints from a sample of tensors ----------------------------------------------


@dataclass
class RemoteFingerprint:
    fingerprint: Any  # consentry.fingerprints.Fingerprint
    bytes_fetched: int
    size: int
    tensors_read: int
    tensors_total: int
    partial: bool  # True when only a sample of a checkpoint's modules was read

    @property
    def fraction(self) -> float:
        return self.bytes_fetched / self.size if self.size else 0.0


# What a checkpoint's sample reads first: the modules LoRA trainers target (kohya's defaults are
# the attention projections of the UNet/transformer and of the text encoders), cross-attention
# K/V first — small (width x 768) and trained by every likeness LoRA — so a merged LoRA shares
# many modules with even a small sample. Then the other attention projections, then the rest.
_SAMPLE_PRIORITY = (
    re.compile(r"(attn2[._]to_[kv]|self_attn[._][kv]_proj|attn[._]to_(add_out|added_[kv])|add_[kv]_proj)"),
    re.compile(r"(attn\d?[._]to_(q|k|v|out)|self_attn[._](q|k|v|out)_proj|in_proj|out_proj|qkv|proj_(in|out))"),
    re.compile(r"(ff|mlp|fc\d|linear)"),
)


def _sample_key(name: str) -> tuple[int, bytes]:
    """Priority class, then a stable pseudo-random order: every run samples the same modules."""
    rank = next((i for i, pattern in enumerate(_SAMPLE_PRIORITY) if pattern.search(name)), len(_SAMPLE_PRIORITY))
    return rank, hashlib.blake2b(name.encode(), digest_size=8).digest()


def fingerprint_remote(remote: RemoteSafetensors, *, base: Manifest | None = None, base_name: str | None = None,
                       budget: float = 0.04, min_sample: int = MIN_SAMPLE) -> RemoteFingerprint:  # fmt: skip
    """The weight fingerprint of a remote file, fetching only the tensors it needs.

    A LoRA's fingerprint needs all its factors, i.e. nearly the whole (small) file: its data part
    is loaded once, so AutoV3 and the content hash come free (:meth:`RemoteSafetensors.load_data`).
    A full checkpoint is fingerprinted as its difference from ``base`` (a local manifest) over a
    fixed sample of weight matrices totalling at most ``budget`` of the file (but ``min_sample``
    bytes at least), the modules LoRA trainers target first (:data:`_SAMPLE_PRIORITY`): compare
    it as side A (``compare(partial, full)``), so coverage is measured over the sampled modules;
    a merged LoRA is found on the modules it shares with the sample.
    """
    from consentry.fingerprints import fingerprint_manifest
    from consentry.fingerprints.build import _FULL_KINDS, _delta_fingerprint, _matrix_parts
    from consentry.fingerprints.lora import find_lora
    from consentry.inspection.architecture import recognise

    manifest = remote.manifest or remote.open()
    total = len(manifest.tensors)
    arch = recognise(manifest.tensors)
    if find_lora(manifest) is not None or arch.kind not in _FULL_KINDS or base is None:
        if remote.size - (manifest.data_start or 0) <= MAX_LOAD:
            remote.load_data()
        fp = fingerprint_manifest(manifest, base, base_name)
        read = total
        partial = False
    else:
        base_names = {p.name for t in base.tensors for p in _matrix_parts(t)}
        allowance = max(int(budget * remote.size), min_sample)
        candidates = [t for t in sorted(manifest.tensors, key=lambda t: _sample_key(t.name))
                      if any(p.name in base_names for p in _matrix_parts(t))]  # fmt: skip
        chosen, spent = [], 0
        for t in candidates:
            if spent + t.nbytes <= allowance:
                chosen.append(t)
                spent += t.nbytes
        if not chosen:
            raise MalformedModelError(remote.url, f"no weight matrix fits a {budget:.0%} fetch budget")
        sample = dataclasses.replace(manifest, tensors=chosen)
        fp = _delta_fingerprint(sample, base, arch.family, base_name)
        read, partial = len(chosen), len(chosen) < len(candidates)
        if partial:
            fp.notes.append(f"sampled {len(chosen)} of {len(candidates)} weight matrices ({spent} bytes) by range reads")
    fp.source = remote.url
    return RemoteFingerprint(fp, remote.bytes_fetched, remote.size, read, total, partial)


# --- what a crawl records of one remote file ------------------------------------------------------


def read_remote_file(remote: RemoteSafetensors, *, full_read: bool = False, fingerprints: bool = False,
                     bases: dict[str, tuple[str, Manifest]] | None = None) -> dict[str, Any]:  # fmt: skip
    """The ``hub_files`` columns a remote safetensors file yields by range reads: its strictly
    validated header (training metadata decoded, tensor list), the AutoV3 its header claims, and
    with ``fingerprints`` its weight fingerprint (under ``"_fingerprint"``, for the caller to
    store). A LoRA is then read whole, which also gives its AutoV3 and content hash; a checkpoint
    only by a sample, so those need ``full_read``. Problems land in ``raw``, never raise."""
    out: dict[str, Any] = {"format": "safetensors", "raw": {}}
    try:
        manifest = remote.open()
    except HubError as exc:  # denied (gated, private), gone (404), or the host kept failing
        out["raw"]["problem"] = f"not read: {exc}"
        return out
    except MalformedModelError as exc:
        out["raw"]["problem"] = f"rejected: {exc}"
        out["bytes_fetched"] = remote.bytes_fetched
        return out
    out["autov3_claimed"] = claimed_autov3(manifest.metadata)
    out["header_json"] = {"data_start": manifest.data_start,
                          "tensors": [[t.name, t.dtype, list(t.shape)] for t in manifest.tensors]}  # fmt: skip
    try:
        if fingerprints:
            _fingerprint_into(out, remote, bases or {})
        if full_read and not remote.data_loaded and remote.size - (manifest.data_start or 0) <= MAX_LOAD:
            remote.load_data()
        if remote.data_loaded:
            out["autov3"], out["content_hash"] = remote.autov3(), remote.content_hash()
        elif full_read:
            out["autov3"] = remote.autov3()  # streamed: too big to keep for the content hash
        else:
            out["raw"]["autov3"] = "not computed: needs the whole data part (--full-read)"
    except HubError as exc:
        out["raw"]["problem"] = f"partly read: {exc}"
    from consentry.inspection.metadata import decode_metadata

    out["metadata_json"] = {"raw": manifest.metadata,
                            "decoded": decode_metadata(manifest.metadata, autov3=out.get("autov3")).as_dict()}  # fmt: skip
    out["bytes_fetched"] = remote.bytes_fetched
    return out


def _fingerprint_into(out: dict[str, Any], remote: RemoteSafetensors, bases: dict[str, tuple[str, Manifest]]) -> None:
    from consentry.errors import ConsentryError
    from consentry.inspection.architecture import recognise

    family = recognise(remote.manifest.tensors).family if remote.manifest else None
    base_name, base = bases.get(family or "", (None, None))
    try:
        result = fingerprint_remote(remote, base=base, base_name=base_name)
    except HubError:
        raise
    except ConsentryError as exc:
        out["raw"]["fingerprint"] = f"not fingerprinted: {exc}"
        return
    out["_fingerprint"] = result.fingerprint
    out["raw"]["fingerprint"] = (f"{result.fingerprint.kind}, {result.tensors_read}/{result.tensors_total} tensors, "
                                 f"{result.fraction:.1%} of the file fetched")  # fmt: skip


def claimed_autov3(metadata: dict[str, str]) -> str | None:
    """The AutoV3 a header claims (kohya's ``sshs_model_hash``), upper-case; None unless 64 hex.
    It survives re-uploads that keep the metadata, but nobody checked it: kept apart from AutoV3."""
    value = (metadata.get("sshs_model_hash") or "").strip().upper()
    return value if len(value) == 64 and all(c in "0123456789ABCDEF" for c in value) else None


def registered_bases(store: Any) -> dict[str, tuple[str, Manifest]]:
    """family -> (name, manifest) of the base models checkpoints are measured against, for the
    families with exactly one registered base (with two, which one is meant is not known)."""
    from consentry.formats import read_manifest

    by_family: dict[str, list[Any]] = {}
    for base in store.fingerprints.list_bases():
        by_family.setdefault(base.family or "", []).append(base)
    return {family: (bases[0].name, read_manifest(bases[0].path)) for family, bases in by_family.items()
            if family and len(bases) == 1}  # fmt: skip
