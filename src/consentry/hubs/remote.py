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

from consentry.errors import MalformedModelError
from consentry.formats.limits import DEFAULT_LIMITS, ReadLimits
from consentry.formats.safetensors import parse_safetensors_header, safetensors_header_length
from consentry.formats.tensors import Manifest, TensorInfo
from consentry.hubs.base import USER_AGENT, HubError
from consentry.hubs.retry import RETRY_STATUS, RetryPolicy, Transient, retry_after_seconds

FIRST_READ = 1 << 16  # one round trip covers the header of almost every LoRA
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

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``; a short answer is retried, never returned."""
        return self.retry.call(f"{self.url}: bytes {start}-{end - 1}", lambda: self._read_once(start, end))

    def _read_once(self, start: int, end: int) -> bytes:
        try:
            return self._read_stream(start, end)
        except httpx.TransportError as exc:  # dropped connection, truncated body, timeout
            raise Transient(f"{type(exc).__name__}: {exc}") from None

    def _read_stream(self, start: int, end: int) -> bytes:
        want = end - start
        self.requests += 1
        headers = {**self.headers, "Range": f"bytes={start}-{end - 1}"}
        with self.client.stream("GET", self.url, headers=headers) as resp:
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

    def autov3(self, chunk_size: int = 1 << 23) -> str:
        """SHA-256 of the whole data part (``file[8+N:]``), upper-case: streams every data byte."""
        manifest = self.manifest or self.open()
        h = hashlib.sha256()
        start = manifest.data_start or 0
        for pos in range(start, self.size, chunk_size):
            h.update(self.reader.read(pos, min(self.size, pos + chunk_size)))
        return h.hexdigest().upper()


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


def _sample_key(name: str) -> bytes:
    """A stable pseudo-random order of tensor names, so every run samples the same modules."""
    return hashlib.blake2b(name.encode(), digest_size=8).digest()


def fingerprint_remote(remote: RemoteSafetensors, *, base: Manifest | None = None, base_name: str | None = None,
                       budget: float = 0.04) -> RemoteFingerprint:  # fmt: skip
    """The weight fingerprint of a remote file, fetching only the tensors it needs.

    A LoRA's fingerprint needs all its factors (a LoRA is small). A full checkpoint is
    fingerprinted as its difference from ``base`` (a local manifest) over a fixed pseudo-random
    sample of weight matrices totalling at most ``budget`` of the file: compare it as side A
    (``compare(partial, full)``), so coverage is measured over the sampled modules.
    """
    from consentry.fingerprints import fingerprint_manifest
    from consentry.fingerprints.build import _FULL_KINDS, _delta_fingerprint, _matrix_parts
    from consentry.fingerprints.lora import find_lora
    from consentry.inspection.architecture import recognise

    manifest = remote.manifest or remote.open()
    total = len(manifest.tensors)
    arch = recognise(manifest.tensors)
    if find_lora(manifest) is not None or arch.kind not in _FULL_KINDS or base is None:
        fp = fingerprint_manifest(manifest, base, base_name)
        read = total
        partial = False
    else:
        base_names = {p.name for t in base.tensors for p in _matrix_parts(t)}
        allowance = int(budget * remote.size)
        chosen, spent = [], 0
        for t in sorted(manifest.tensors, key=lambda t: _sample_key(t.name)):
            if not any(p.name in base_names for p in _matrix_parts(t)):
                continue
            if spent + t.nbytes <= allowance:
                chosen.append(t)
                spent += t.nbytes
        if not chosen:
            raise MalformedModelError(remote.url, f"no weight matrix fits a {budget:.0%} fetch budget")
        sample = dataclasses.replace(manifest, tensors=chosen)
        fp = _delta_fingerprint(sample, base, arch.family, base_name)
        fp.notes.append(f"sampled {len(chosen)} of {total} tensors ({spent} bytes) by range reads")
        read, partial = len(chosen), True
    fp.source = remote.url
    return RemoteFingerprint(fp, remote.bytes_fetched, remote.size, read, total, partial)
