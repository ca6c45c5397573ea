"""Request bodies streamed to disk: model uploads and bank files are never held in memory.

The size bound is enforced while the body is read (:mod:`consentry.api.limits`); a body cut
off for size, or any other failure, leaves no file behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fastapi import Request

RAW_BODY = {  # OpenAPI: these routes take the file itself as the body
    "required": True,
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


async def body_to_file(request: Request, directory: Path | None, prefix: str) -> Path:
    """Write the request body to a new private (0600) file in ``directory`` and return its path."""
    fd, name = tempfile.mkstemp(prefix=prefix, dir=directory)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            # Plain buffered writes: a chunk is at most 64 KiB into the page cache, far cheaper
            # than a thread hop per chunk.
            async for chunk in request.stream():
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path
