"""The interface every hub connector implements, so a third hub is a new module."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from consentry.errors import ConsentryError


USER_AGENT = "consentry (trust & safety crawler; +https://github.com/consentry)"


class HubError(ConsentryError):
    """A hub answered with an error we could not recover from (after bounded retries)."""

    exit_code = 1


@dataclass
class CrawlReport:
    hub: str
    query_key: str
    models: int = 0
    versions: int = 0
    files: int = 0
    images: int = 0
    pages: int = 0
    failed: int = 0  # records the hub would not give after retries (each named in ``notes``)
    resumed_from: str | None = None
    finished: bool = False
    notes: list[str] = field(default_factory=list)

    def add(self, counts: dict[str, int]) -> None:
        """Count one stored page (``counts``: records stored per kind)."""
        self.pages += 1
        for kind, n in counts.items():
            setattr(self, kind, getattr(self, kind) + n)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


Progress = Callable[[int], None]  # called with the number of records just stored


class HubConnector(Protocol):
    name: str  # "civitai", "huggingface": the value of the hub column in the store

    def crawl(self, store: Any, options: dict[str, Any], *, progress: Progress | None = None,
              max_pages: int | None = None) -> CrawlReport:  # fmt: skip
        """Crawl the hub's metadata into ``store`` incrementally and resumably."""
