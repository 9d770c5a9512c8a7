"""Bad-input bookkeeping: strict mode raises, lenient mode skips and counts."""

import logging

log = logging.getLogger("dataset_converters")

MAX_EXAMPLES = 5


class ConversionError(ValueError):
    """The input cannot be converted (or, under ``strict``, has a bad row)."""


def where(path, line_no=None):
    """``'file, line N'``, the location prefix of every message about an input row."""
    return f"{path}, line {line_no}" if line_no is not None else str(path)


class Issues:
    """Collects skipped rows by kind, keeping the first few messages of each kind.

    ``strict=True`` turns every reported issue into a :class:`ConversionError`.
    """

    def __init__(self, strict=False):
        self.strict = strict
        self.counts = {}
        self.examples = {}

    def report(self, kind, message, count=1):
        """Record ``count`` rows skipped for ``kind``; ``message`` names file and line."""
        if self.strict:
            raise ConversionError(message)
        seen = self.counts.get(kind, 0)
        self.counts[kind] = seen + count
        examples = self.examples.setdefault(kind, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(message)
            log.warning("skipped (%s): %s", kind, message)
