"""Request body size limits, enforced before and while a body is read.

A declared Content-Length over the limit is refused before any byte is read; a body that
grows past it (chunked, or a lying header) is cut off the moment it does. Uploads (scans,
imports) get their own, larger limits; every other body is small JSON.
"""

from __future__ import annotations

from typing import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consentry.api.errors import ApiError, error_response


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body is larger than the limit of {limit:,} bytes")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for  # path -> byte limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            status, message = (413, str(too_large(limit).detail)) if declared.isdigit() else (400, "bad Content-Length")
            await error_response(status, message, headers={"Connection": "close"})(scope, receive, send)
            return
        seen = 0

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise too_large(limit)
            return message

        await self.app(scope, counted_receive, send)
