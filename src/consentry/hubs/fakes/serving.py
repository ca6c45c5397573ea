"""Serve a fake hub on 127.0.0.1 in a background thread, with faults injected on the wire.

Every fake (Civitai, Hugging Face, the archive site) is a plain ASGI app; :class:`FakeServer`
wraps it in :class:`FaultInjector` and runs it with uvicorn on a free loopback port, so the
real clients (httpx, huggingface_hub) meet slow answers, dropped connections, truncated
bodies, a wrong Content-Length or a 429/503 on a real socket. Nothing in the client is mocked.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import Request as HttpRequest
from starlette.responses import Response

FAULT_KINDS = ("slow", "drop", "truncate", "bad_length", "status")


@dataclass
class Fault:
    """Inject ``kind`` into requests whose ``path?query`` contains ``match``.

    kinds: ``slow`` (wait ``delay`` s, then answer normally), ``drop`` (send the headers, then
    close: no body), ``truncate`` (half the body, then close), ``bad_length`` (a Content-Length
    promising more than is sent, then close), ``status`` (answer ``status`` with a JSON
    ``{"error": message}`` and, when ``retry_after`` is set, a Retry-After header).
    The first ``skip`` matching requests pass untouched; then ``times`` are hit (None: all).
    """

    kind: str
    match: str = "/"
    times: int | None = 1
    skip: int = 0
    delay: float = 0.5
    status: int = 503
    retry_after: int | None = None
    message: str = "Server busy, please retry shortly."
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (one of {', '.join(FAULT_KINDS)})")


@dataclass
class Request:
    """What the fake saw, for tests that check what a client sent."""

    method: str
    path: str
    query: str
    headers: dict[str, str]

    @property
    def target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


@dataclass
class Wire:
    """The faults to apply and the log of requests, shared by the injector and the test."""

    faults: list[Fault] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, target: str) -> list[Fault]:
        taken = []
        with self._lock:
            for fault in self.faults:
                if fault.match not in target:
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                if fault.times is None or fault.times > 0:
                    if fault.times is not None:
                        fault.times -= 1
                    fault.fired += 1
                    taken.append(fault)
        return taken


class FaultInjector:
    """ASGI wrapper: logs each request and applies the wire's faults to the response stream."""

    def __init__(self, app: Any, wire: Wire) -> None:
        self.app, self.wire = app, wire

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        query = scope.get("query_string", b"").decode("latin-1")
        request = Request(scope["method"], scope["path"], query, headers)
        self.wire.requests.append(request)
        faults = self.wire.take(request.target)
        for fault in faults:
            if fault.kind == "slow":
                await asyncio.sleep(fault.delay)
        status = next((f for f in faults if f.kind == "status"), None)
        if status is not None:
            return await _send_status(send, status)
        damage = next((f.kind for f in faults if f.kind in ("drop", "truncate", "bad_length")), None)
        if damage is None:
            return await self.app(scope, receive, send)
        await self.app(scope, receive, _damaging(send, damage))


async def _send_status(send: Any, fault: Fault) -> None:
    body = json.dumps({"error": fault.message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store")]  # fmt: skip
    if fault.retry_after is not None:
        headers.append((b"retry-after", str(fault.retry_after).encode()))
    await send({"type": "http.response.start", "status": fault.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _damaging(send: Any, kind: str) -> Any:
    """A ``send`` that spoils the response: the connection closes before it is complete."""
    state: dict[str, Any] = {}

    async def faulty_send(message: dict) -> None:
        if message["type"] == "http.response.start":
            state["start"] = message
            return
        if message["type"] != "http.response.body" or state.get("done"):
            return
        body = message.get("body", b"")
        start = state["start"]
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        claimed = len(body) + 100 if kind == "bad_length" else len(body)
        await send({**start, "headers": headers + [(b"content-length", str(claimed).encode())]})
        sent = {"drop": b"", "truncate": body[: len(body) // 2], "bad_length": body}[kind]
        await send({"type": "http.response.body", "body": sent, "more_body": True})
        state["done"] = True  # the app returns without completing the response: uvicorn closes the socket

    return faulty_send


# --- files with Range support -------------------------------------------------------------------


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range → inclusive (start, end); None if unsatisfiable."""
    unit, _, spec = value.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            n = int(last)
            return (max(0, size - n), size - 1) if n > 0 and size else None
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return None
    return start, min(end, size - 1)


def range_response(request: HttpRequest, path: Path, filename: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:  # fmt: skip
    """A file's bytes as a hub's storage serves them: ``Range`` → 206 with ``Content-Range``,
    416 when unsatisfiable, HEAD without a body. Read from disk per request (a big file costs
    no memory)."""
    size = os.path.getsize(path)
    out = {**(headers or {}), "Accept-Ranges": "bytes"}
    if filename:
        out["Content-Disposition"] = f'attachment; filename="{filename}"'
    start, end, status = 0, size - 1, 200
    wanted = request.headers.get("range")
    if wanted:
        parsed = parse_range(wanted, size)
        if parsed is None:
            return Response(status_code=416, headers={**out, "Content-Range": f"bytes */{size}"})
        (start, end), status = parsed, 206
        out["Content-Range"] = f"bytes {start}-{end}/{size}"
    out["Content-Length"] = str(max(0, end - start + 1))
    if request.method == "HEAD":
        return Response(status_code=status, headers=out)
    with open(path, "rb") as fh:
        fh.seek(start)
        body = fh.read(max(0, end - start + 1))
    return Response(body, status_code=status, headers=out, media_type="application/octet-stream")


# --- the server ---------------------------------------------------------------------------------


class FakeServer:
    """``with FakeServer(app) as hub:`` serves ``app`` at ``hub.url`` until the block ends.

    ``hub.faults`` and ``hub.requests`` are the wire's lists (append faults at any time)."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.wire = Wire()
        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited: no 40 ms Nagle stalls
        self._sock.bind((host, port))
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(FaultInjector(app, self.wire), http="h11", lifespan="off", log_level="critical",
                                access_log=False)  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    @property
    def faults(self) -> list[Fault]:
        return self.wire.faults

    @property
    def requests(self) -> list[Request]:
        return self.wire.requests

    def __enter__(self) -> "FakeServer":
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the fake hub at {self.url} did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


def serve_forever(app: Any, port: int = 0) -> None:  # pragma: no cover - manual use and benchmarks
    """Serve ``app`` in the foreground on 127.0.0.1; prints the base URL first."""
    server = FakeServer(app, port=port)
    print(server.url, flush=True)
    server._server.run(sockets=[server._sock])
