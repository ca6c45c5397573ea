"""The six Civitai file hashes plus per-tensor BLAKE3 digests, in one sequential read.

What is computed (``hub-interfaces.md`` §2): SHA-256 of the whole file (AutoV2 is its first
10 hex digits), AutoV1 (SHA-256 of ``file[0x100000:0x110000]``, 8 hex, only for files of at
least 2 MiB), AutoV3 (SHA-256 of ``file[data_start:]``, the safetensors tensor data), CRC32
(``zlib.crc32`` printed in Civitai's little-endian byte order), BLAKE3 of the whole file, and
BLAKE3 of every tensor's bytes that lie raw in the file (``TensorInfo.file_range``), which
:func:`consentry.identity.content_hash.combine` turns into the content hash.

Design (measured on the 2-core CI-like machine, 1 GiB safetensors file in the page cache; see
``bench/hash_speed.py`` and the README's performance table): one plain SHA-256 pass takes
0.76 s there and ``hash_file`` 1.06 s (1.39x), 1.96 CPU s in all. Wall times move with load and
with the host: the CPU seconds are the steadier figure. Memory does not depend on either: 32 MiB
above an idle interpreter (the ring below); ``consentry hash`` on 1 GiB peaks at 57 MiB RSS.

* Model files are many GB, so the file is read exactly once. The calling thread reads with
  ``readinto`` into a ring of preallocated buffers: no per-chunk allocation, and the ring
  bounds memory (32 MiB of chunks in flight whatever the file size).
* SHA-256 (1.8 GB/s with SHA-NI) dominates: the two SHA-256 passes (whole file and AutoV3's
  range) cannot share state. CRC32 (6 GB/s), BLAKE3 (9 GB/s, twice: whole file and tensors)
  and the copy out of the page cache add ~0.5 s of CPU, so the 2-core floor is ~0.80 s,
  ~1.4x one SHA-256 pass, if nothing overlaps (see above for what was measured).
* The reading thread runs the whole-file jobs (SHA-256, BLAKE3, CRC-32) on each chunk it has
  just read, while the chunk is in its core's cache: on this project's host, handing every chunk
  to another core cost more than it saved (a bare two-thread read→SHA-256 handoff was 19% slower
  than one thread doing both). The other jobs (AutoV3's SHA-256, AutoV1 and the tensor digests)
  each have a FIFO of chunks; ``workers - 1`` threads each take whichever idle job has the
  longest backlog. hashlib, zlib.crc32 and blake3 release the GIL on large buffers, so the
  threads run truly in parallel. On the earlier host, with every job on worker threads, these
  were measured and found slower: other static splits (+3% to +8%), one thread per SHA-256 plus
  one for the rest (+9%), 3 workers (+11%), blake3 ``max_threads=2`` (+20%). One job never
  runs on two threads at once, so every hasher sees its chunks in file order.
* Chunks of 2 MiB: the reading thread's three jobs then find the chunk in cache (4 MiB measured
  1.50x, 2 MiB 1.39x, 1 MiB 1.43x here); 16 chunks fill the 32 MiB ring.
* Tensor digests take memoryview slices of the chunk (no copies); a tensor wholly inside one
  chunk is hashed in one call, so a LoRA's ~1,000 small tensors cost ~5 us each.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import threading
import zlib

try:  # zlib-ng's CRC-32 uses carry-less multiplication: ~30 GB/s here against zlib's ~6 GB/s.
    from zlib_ng.zlib_ng import crc32 as _crc32
except ImportError:  # pragma: no cover - the dependency is declared; this keeps a broken wheel usable
    _crc32 = zlib.crc32
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from blake3 import blake3

from consentry.formats.tensors import Manifest, TensorInfo

AUTOV1_OFFSET = 0x100000
AUTOV1_LENGTH = 0x10000
AUTOV1_MIN_SIZE = 0x200000  # Civitai's HashTask: smaller files get no AutoV1

DEFAULT_CHUNK_SIZE = 2 << 20  # 2 MiB: a chunk stays in the reading core's cache for its three whole-file jobs
MAX_IN_FLIGHT = 32 << 20  # bytes of file data held in the ring at once

_EMPTY_BLAKE3 = blake3(b"").digest()


@dataclass
class FileHashes:
    """Every hash of one file, upper-case hex as Civitai prints them."""

    sha256: str
    autov1: str | None
    autov2: str
    autov3: str | None
    autov3_short: str | None
    crc32: str  # Civitai's byte order: 85114A0D for b"hello world"
    crc32_conventional: str  # zlib's integer as usually printed: 0D4A1185
    blake3: str
    size: int
    tensor_digests: dict[str, bytes] = field(default_factory=dict)
    # CRC-32 of each ``crc_ranges`` entry, by its name (not part of the printed identity).
    range_crcs: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict; tensor digests as upper-case hex."""
        return {
            "sha256": self.sha256,
            "autov1": self.autov1,
            "autov2": self.autov2,
            "autov3": self.autov3,
            "autov3_short": self.autov3_short,
            "crc32": self.crc32,
            "crc32_conventional": self.crc32_conventional,
            "blake3": self.blake3,
            "size": self.size,
            "tensor_digests": {name: d.hex().upper() for name, d in self.tensor_digests.items()},
        }


# --------------------------------------------------------------------------------------------
# Jobs: one per independent hash state. ``update`` is always called with chunks in file order.


class _WholeJob:
    """A hashlib/blake3 object fed every chunk."""

    def __init__(self, hasher: Any) -> None:
        self.hasher = hasher

    def wants(self, start: int, end: int) -> bool:
        return True

    def update(self, start: int, view: memoryview) -> None:
        self.hasher.update(view)


class _Crc32Job:
    def __init__(self) -> None:
        self.value = 0

    def wants(self, start: int, end: int) -> bool:
        return True

    def update(self, start: int, view: memoryview) -> None:
        self.value = _crc32(view, self.value)


class _Crc32State:
    """A CRC-32 with the hasher interface :class:`_RangesJob` expects (``factory(data)`` or
    ``factory()`` then ``update``)."""

    __slots__ = ("value",)

    def __init__(self, data: Any = None) -> None:
        self.value = _crc32(data) if data is not None else 0

    def update(self, data: Any) -> None:
        self.value = _crc32(data, self.value)


class _TailJob:
    """SHA-256 of ``file[offset:]`` (AutoV3)."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.hasher = hashlib.sha256()

    def wants(self, start: int, end: int) -> bool:
        return end > self.offset

    def update(self, start: int, view: memoryview) -> None:
        skip = self.offset - start
        self.hasher.update(view[skip:] if skip > 0 else view)


class _RangesJob:
    """Hashes of many byte ranges (tensors, AutoV1); ranges may overlap and come in any order."""

    def __init__(self, ranges: Iterable[tuple[Any, int, int, Callable[..., Any]]]) -> None:
        # (start, end, key, factory), non-empty ranges only, sorted by start. ``factory`` is
        # hashlib.sha256 or blake3: called with the bytes, or empty for a range split by chunks.
        self.pending = sorted(((s, e, k, f) for k, s, e, f in ranges if e > s), key=lambda r: (r[0], r[1]))
        self.next = 0
        self.active: list[tuple[int, int, Any, Any]] = []  # (start, end, key, hasher) spanning chunks
        self.results: dict[Any, Any] = {}
        self._union = self._merge([(s, e) for s, e, _, _ in self.pending])

    @staticmethod
    def _merge(spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
        starts: list[int] = []
        ends: list[int] = []
        for s, e in spans:  # already sorted by start
            if ends and s <= ends[-1]:
                ends[-1] = max(ends[-1], e)
            else:
                starts.append(s)
                ends.append(e)
        return starts, ends

    def wants(self, start: int, end: int) -> bool:
        starts, ends = self._union
        i = bisect.bisect_right(starts, end - 1) - 1  # last span starting inside or before chunk
        return i >= 0 and ends[i] > start

    def update(self, start: int, view: memoryview) -> None:
        end = start + len(view)
        pending = self.pending
        while self.next < len(pending) and pending[self.next][0] < end:
            s, e, key, factory = pending[self.next]
            self.next += 1
            if s >= start and e <= end:  # wholly inside this chunk: one call, no state kept
                self.results[key] = factory(view[s - start : e - start])
            else:
                self.active.append((s, e, key, factory()))
        still = []
        for s, e, key, hasher in self.active:
            lo, hi = max(s, start), min(e, end)
            if lo < hi:
                hasher.update(view[lo - start : hi - start])
            if e <= end:
                self.results[key] = hasher
            else:
                still.append((s, e, key, hasher))
        self.active = still


# --------------------------------------------------------------------------------------------
# Scheduler: a reader (the calling thread) and a pool of workers sharing a ring of buffers.


class _Pipeline:
    """Feeds chunks to jobs; ``workers`` threads run whichever idle job has the most backlog."""

    def __init__(self, jobs: list[Any], workers: int, chunk_size: int) -> None:
        self.jobs = jobs
        self.queues: list[deque[tuple[int, int, memoryview]]] = [deque() for _ in jobs]
        self.busy = [False] * len(jobs)
        nbuf = max(2, min(MAX_IN_FLIGHT // chunk_size, 16))
        self.buffers = [bytearray(chunk_size) for _ in range(nbuf)]
        self.refs = [0] * nbuf
        self.free_ids = list(range(nbuf))
        self.cond = threading.Condition()
        self.closed = False
        self.error: BaseException | None = None
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]

    def __enter__(self) -> "_Pipeline":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self.cond:
            self.closed = True
            if exc[0] is not None:
                for q in self.queues:  # abandon queued work on error
                    q.clear()
            self.cond.notify_all()
        for t in self.threads:
            t.join()
        if self.error is not None and exc[0] is None:
            raise self.error

    def take_buffer(self) -> tuple[int, memoryview]:
        """Wait for a free buffer from the ring."""
        with self.cond:
            while not self.free_ids:
                if self.error is not None:
                    raise self.error
                self.cond.wait()
            i = self.free_ids.pop()
        return i, memoryview(self.buffers[i])

    def submit(self, buf_id: int, start: int, view: memoryview, inline: Sequence[Any] = ()) -> None:
        """Queue the chunk for the workers' jobs, then run the ``inline`` jobs on it on this
        thread, while the chunk is still in this core's cache."""
        end = start + len(view)
        mine = [job for job in inline if job.wants(start, end)]
        with self.cond:
            n = 0
            for j, job in enumerate(self.jobs):
                if job.wants(start, end):
                    self.queues[j].append((buf_id, start, view))
                    n += 1
            if n + len(mine) == 0:
                self.free_ids.append(buf_id)
                return
            self.refs[buf_id] = n + (1 if mine else 0)
            self.cond.notify_all()
        if not mine:
            return
        try:
            for job in mine:
                job.update(start, view)
        finally:
            with self.cond:
                self.refs[buf_id] -= 1
                if self.refs[buf_id] == 0:
                    self.free_ids.append(buf_id)
                self.cond.notify_all()

    def _pick(self) -> int | None:
        best, backlog = None, 0
        for j, q in enumerate(self.queues):
            if q and not self.busy[j] and len(q) > backlog:
                best, backlog = j, len(q)
        return best

    def _work(self) -> None:
        cond = self.cond
        with cond:
            while True:
                j = self._pick()
                if j is None:
                    if self.closed and not any(self.queues):
                        return
                    cond.wait()
                    continue
                self.busy[j] = True
                buf_id, start, view = self.queues[j].popleft()
                cond.release()
                try:
                    self.jobs[j].update(start, view)
                except BaseException as exc:  # surfaced to the reader; stop everything
                    cond.acquire()
                    self.error = exc
                    for q in self.queues:
                        q.clear()
                    self.closed = True
                    cond.notify_all()
                    return
                cond.acquire()
                self.busy[j] = False
                self.refs[buf_id] -= 1
                if self.refs[buf_id] == 0:
                    self.free_ids.append(buf_id)
                cond.notify_all()


# --------------------------------------------------------------------------------------------


def _file_size(fd: int) -> int:
    """Size at open time; a separate function so tests can fake a file that shrinks."""
    return os.fstat(fd).st_size


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class _Jobs:
    """The job set for one file, and how to turn finished jobs into :class:`FileHashes`."""

    def __init__(self, size: int, data_start: int | None, tensors: Sequence[TensorInfo],
                 crc_ranges: Sequence[tuple[str, int, int, int]] = ()) -> None:  # fmt: skip
        if data_start is not None and not 0 <= data_start <= size:
            raise ValueError(f"data_start {data_start} outside a file of {size} bytes")
        self.size = size
        self.sha = _WholeJob(hashlib.sha256())
        self.crc = _Crc32Job()
        self.b3 = _WholeJob(blake3())
        self.tail = _TailJob(data_start) if data_start is not None else None
        self.zero: dict[str, bytes] = {}
        ranges: list[tuple[Any, int, int, Callable[..., Any]]] = []
        if size >= AUTOV1_MIN_SIZE:
            ranges.append((None, AUTOV1_OFFSET, AUTOV1_OFFSET + AUTOV1_LENGTH, hashlib.sha256))
        for t in tensors:
            if t.file_range is None:
                continue
            s, e = t.file_range
            if not 0 <= s <= e <= size:
                raise ValueError(f"tensor {t.name!r} range {t.file_range} outside a file of {size} bytes")
            if s == e:
                self.zero[t.name] = _EMPTY_BLAKE3
            else:
                ranges.append((t.name, s, e, blake3))
        self.zero_crcs: dict[str, int] = {}
        for what, s, e, _expected in crc_ranges:
            if not 0 <= s <= e <= size:
                raise ValueError(f"CRC range {what!r} ({s}, {e}) outside a file of {size} bytes")
            if s == e:
                self.zero_crcs[what] = 0
            else:
                ranges.append((("crc", what), s, e, _Crc32State))
        self.ranges = _RangesJob(ranges) if ranges else None

    def all(self) -> list[Any]:
        """Slowest first, so a sequential run and the scheduler's ties favour SHA-256."""
        jobs: list[Any] = [self.sha]
        if self.tail is not None:
            jobs.append(self.tail)
        jobs += [self.b3, self.crc]
        if self.ranges is not None:
            jobs.append(self.ranges)
        return jobs

    def whole_file(self) -> list[Any]:
        """The jobs that read every byte: run by the reading thread in a pipeline."""
        return [self.sha, self.b3, self.crc]

    def result(self) -> FileHashes:
        sha = self.sha.hasher.hexdigest().upper()
        autov3 = self.tail.hasher.hexdigest().upper() if self.tail is not None else None
        autov1 = None
        digests = dict(self.zero)
        crcs = dict(self.zero_crcs)
        if self.ranges is not None:
            for key, hasher in self.ranges.results.items():
                if key is None:
                    autov1 = hasher.hexdigest().upper()[:8]
                elif isinstance(key, tuple):
                    crcs[key[1]] = hasher.value
                else:
                    digests[key] = hasher.digest()
        crc = self.crc.value
        return FileHashes(
            sha256=sha,
            autov1=autov1,
            autov2=sha[:10],
            autov3=autov3,
            autov3_short=autov3[:12] if autov3 is not None else None,
            crc32=crc.to_bytes(4, "little").hex().upper(),
            crc32_conventional=f"{crc:08X}",
            blake3=self.b3.hasher.hexdigest().upper(),
            size=self.size,
            tensor_digests=digests,
            range_crcs=crcs,
        )


def hash_bytes(data: bytes, data_start: int | None = None, tensors: Sequence[TensorInfo] = (),
               crc_ranges: Sequence[tuple[str, int, int, int]] = ()) -> FileHashes:  # fmt: skip
    """All hashes of an in-memory file (tests, remote headers); no threads."""
    view = memoryview(data).cast("B")
    jobs = _Jobs(len(view), data_start, tensors, crc_ranges)
    for job in jobs.all():
        if len(view) and job.wants(0, len(view)):
            job.update(0, view)
    return jobs.result()


def hash_file(
    path: str | Path,
    *,
    data_start: int | None = None,
    tensors: Sequence[TensorInfo] = (),
    crc_ranges: Sequence[tuple[str, int, int, int]] = (),
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    workers: int | None = None,
) -> FileHashes:
    """Hash ``path`` in one sequential read; see the module docstring for the design.

    ``data_start`` (safetensors: 8 + header length) enables AutoV3. ``tensors`` with a
    ``file_range`` get BLAKE3 digests; the others are left to :func:`tensor_digests_for`.
    ``crc_ranges`` (``(name, start, end, expected)``, e.g. a torch zip's stored members) get
    their CRC-32 in ``FileHashes.range_crcs``; comparing them is the caller's job.
    ``workers`` defaults to the usable cores; 1 hashes on the calling thread.
    Raises OSError if the file cannot be read or ends before the size it had when opened,
    ValueError if ``data_start`` or a tensor range lies outside the file.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    nworkers = _default_workers() if workers is None else max(1, workers)
    with open(path, "rb", buffering=0) as fh:
        fd = fh.fileno()
        size = _file_size(fd)
        jobs = _Jobs(size, data_start, tensors, crc_ranges)
        job_list = jobs.all()
        if hasattr(os, "posix_fadvise"):  # larger readahead for cold files; free when cached
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            except OSError:  # pragma: no cover - e.g. a pipe
                pass
        if nworkers == 1 or size <= chunk_size:
            buf = memoryview(bytearray(min(chunk_size, max(size, 1))))
            for start, _, view in _read_chunks(fh, size, lambda: (0, buf), path):
                for job in job_list:
                    if job.wants(start, start + len(view)):
                        job.update(start, view)
        else:
            # The reading thread runs the whole-file jobs (SHA-256, BLAKE3, CRC-32) on each chunk
            # it has just read, while it is in its core's cache; the other threads take the
            # range jobs (AutoV3, tensor digests). Handing every chunk across cores cost more.
            inline = [job for job in job_list if job in jobs.whole_file()]
            rest = [job for job in job_list if job not in inline]
            with _Pipeline(rest, max(1, min(nworkers - 1, len(rest))), chunk_size) as pipe:
                for start, buf_id, view in _read_chunks(fh, size, pipe.take_buffer, path):
                    pipe.submit(buf_id, start, view, inline)
    return jobs.result()


def _read_chunks(
    fh: Any, size: int, take: Callable[[], tuple[int, memoryview]], path: str | Path
) -> Iterator[tuple[int, int, memoryview]]:
    """Yield ``(offset, buffer id, filled view)`` until ``size`` bytes were read into buffers from ``take``."""
    offset = 0
    while offset < size:
        buf_id, buf = take()
        want = min(len(buf), size - offset)
        got = 0
        while got < want:
            n = fh.readinto(buf[got:want])
            if not n:
                raise OSError(f"{path}: file shrank while hashing (ended at {offset + got} of {size} bytes)")
            got += n
        yield offset, buf_id, buf[:want]
        offset += want


def tensor_digests_for(manifest: Manifest, tensors_without_range: Iterable[TensorInfo]) -> dict[str, bytes]:
    """BLAKE3 of tensors whose bytes are not raw in the file (a second read, only for these)."""
    out: dict[str, bytes] = {}
    for t in tensors_without_range:
        hasher = blake3()
        for block in manifest.iter_tensor_bytes(t):
            hasher.update(block)
        out[t.name] = hasher.digest()
    return out

