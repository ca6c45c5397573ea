"""Local fakes of the hubs (Civitai, Hugging Face, the archive site) for tests, benchmarks and
the demo: realistic responses built from ``shared/reference/hub-interfaces.md``, served on
127.0.0.1 with faults injected on the wire (:mod:`.serving`)."""

from consentry.hubs.fakes.serving import Fault, FakeServer

__all__ = ["Fault", "FakeServer"]
