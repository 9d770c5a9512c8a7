"""Bad-input bookkeeping: strict mode raises, lenient mode skips and counts."""

import logging
from pathlib import Path

log = logging.getLogger("dataset_converters")

MAX_EXAMPLES = 5


class ConversionError(ValueError):
    """The input cannot be converted (or, under ``strict``, has a bad row)."""


def where(path, line_no=None):
    """``'file, line N'``, the location prefix of every message about an input row."""
    return f"{path}, line {line_no}" if line_no is not None else str(path)


def shorten(text, limit=60):
    """``text`` cut to ``limit`` characters (binary garbage stays short)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def snippet(value, limit=60):
    """``repr`` of a raw value, cut to ``limit`` characters."""
    return shorten(repr(value), limit)


class Issues:
    """Collects skipped rows by kind, keeping the first few messages of each kind.

    ``strict=True`` turns every reported issue into a :class:`ConversionError`.
    ``allow_truncated=True`` converts the readable part of a truncated compressed file
    (recorded in ``truncated``: file -> lines read) instead of stopping.
    """

    def __init__(self, strict=False, allow_truncated=False):
        self.strict = strict
        self.allow_truncated = allow_truncated
        self.truncated = {}
        self.encodings = {}  # file -> the text encoding it was read with
        self.counts = {}
        self.examples = {}
        self.rows_by_file = {}  # file -> rows of that file skipped (reports that name a path)

    def report(self, kind, message, count=1, path=None):
        """Record ``count`` rows skipped for ``kind``; ``message`` names file and line, and
        ``path`` the file the rows belong to (so the interactions file's skipped rows are told
        apart from an item file's, e.g. the repeated records of Amazon 2018 metadata)."""
        if self.strict:
            raise ConversionError(message)
        seen = self.counts.get(kind, 0)
        self.counts[kind] = seen + count
        if path is not None:
            key = str(Path(path))
            self.rows_by_file[key] = self.rows_by_file.get(key, 0) + count
        examples = self.examples.setdefault(kind, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(message)
            log.warning("skipped (%s): %s", kind, message)

    def rows_skipped_in(self, path):
        """How many rows of ``path`` were skipped (reported with that path)."""
        return self.rows_by_file.get(str(Path(path)), 0)
