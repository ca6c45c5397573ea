"""Why a model could not be fingerprinted or compared."""

from __future__ import annotations

from consentry.errors import ConsentryError


class FingerprintError(ConsentryError):
    """The weights cannot be fingerprinted (unknown architecture, bad shapes, NaN/inf, LyCORIS...).

    The message is the user-facing reason; ``compare`` turns it into a "could not compare"."""

    exit_code = 2
