"""Mirror finding: where copies of banked models live now, across every crawled hub (issue 5).

:func:`find_mirrors` is the library API behind ``consentry mirrors BANK``.
"""

from consentry.mirrors.finder import EntryMirrors, Mirror, MirrorReport, find_mirrors

__all__ = ["EntryMirrors", "Mirror", "MirrorReport", "find_mirrors"]
