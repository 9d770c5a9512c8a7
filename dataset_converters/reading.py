"""Streaming readers: plain or gzip files line by line, with line numbers and progress."""

import ast
import csv
import gzip
import json
import os
from pathlib import Path

from tqdm import tqdm

from .issues import ConversionError, where


def open_binary(path):
    """The raw file and a line iterator over it (gunzipped when the name ends in .gz)."""
    raw = open(path, "rb")
    if str(path).endswith(".gz"):
        return raw, gzip.GzipFile(fileobj=raw)
    return raw, raw


def iter_lines(path, issues, encoding="utf-8", progress=True):
    """Yield ``(line_no, text)`` for each line of ``path`` without its line ending.

    Lines are decoded one at a time, so a line in another encoding is reported with its
    number (and skipped) instead of aborting the whole read. A leading BOM is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"input file not found: {path}")
    raw, lines = open_binary(path)
    bar = tqdm(total=os.path.getsize(path), unit="B", unit_scale=True, desc=path.name,
               disable=not progress, leave=False)
    line_no = 0
    try:
        with raw, lines:
            for line_no, data in enumerate(lines, start=1):
                if line_no % 4096 == 0:
                    bar.update(raw.tell() - bar.n)
                try:
                    text = data.decode(encoding)
                except UnicodeDecodeError as err:
                    issues.report("bad_encoding", f"{where(path, line_no)}: not valid {encoding} "
                                  f"({err.reason} at byte {err.start}); pass --encoding if the "
                                  f"file uses another encoding")
                    continue
                if line_no == 1:
                    text = text.lstrip("\ufeff")
                yield line_no, text.rstrip("\r\n")
            bar.update(raw.tell() - bar.n)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise ConversionError(f"{path}: cannot read the file after line {line_no} ({err})") \
            from None
    finally:
        bar.close()


def iter_json(path, issues, encoding="utf-8", progress=True, python_literals=False):
    """Yield ``(line_no, dict)`` for each JSON-object line; blank lines are ignored.

    With ``python_literals`` a line that is not JSON is tried as a Python literal (the
    Amazon 2018 metadata files are partly written with ``str(dict)``).
    """
    for line_no, text in iter_lines(path, issues, encoding, progress):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as err:
            row, reason = None, f"not valid JSON ({err.msg} at column {err.colno})"
            if python_literals:
                try:
                    row = ast.literal_eval(text)
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    reason += " nor a Python literal"
        if not isinstance(row, dict):
            if row is not None:
                reason = f"expected a JSON object, got {type(row).__name__}"
            issues.report("malformed_line", f"{where(path, line_no)}: {reason}")
            continue
        yield line_no, row


def iter_delimited(path, issues, delimiter, encoding="utf-8", progress=True, quoting=True):
    """Yield ``(line_no, fields)`` of a delimited file, one list of strings per record.

    With ``quoting`` (CSV) a quoted field may span lines; ``line_no`` is then the record's
    last line. Without it every line is one record split on ``delimiter`` (which may be
    longer than one character, like MovieLens' ``::``). Blank lines are ignored.
    """
    lines = iter_lines(path, issues, encoding, progress)
    if not quoting:
        for line_no, text in lines:
            if text.strip():
                yield line_no, text.split(delimiter)
        return
    state = {"line": 0}

    def texts():
        for line_no, text in lines:
            state["line"] = line_no
            yield text

    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # long item descriptions
    reader = csv.reader(texts(), delimiter=delimiter)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            issues.report("malformed_line", f"{where(path, state['line'])}: {err}")
            continue
        if fields and any(f.strip() for f in fields):
            yield state["line"], fields


def find_one(folder, patterns, what, exclude=()):
    """The single file in ``folder`` matching one of ``patterns`` (glob), else an error."""
    folder = Path(folder)
    found = sorted({p for pattern in patterns for p in folder.glob(pattern)
                    if p.is_file() and not any(p.match(x) for x in exclude)})
    if len(found) != 1:
        listing = ", ".join(p.name for p in found) or "none"
        raise ConversionError(f"{folder}: expected exactly one {what} file "
                              f"({' or '.join(patterns)}), found {listing}; name it explicitly")
    return found[0]


def iter_fixed(path, issues, delimiter, n_fields, encoding="utf-8", progress=True, quoting=False):
    """:func:`iter_delimited` keeping only records of exactly ``n_fields`` fields (others
    are reported as malformed)."""
    for line_no, fields in iter_delimited(path, issues, delimiter, encoding, progress, quoting):
        if len(fields) != n_fields:
            issues.report("malformed_line", f"{where(path, line_no)}: expected {n_fields} fields "
                          f"separated by {delimiter!r}, found {len(fields)}")
            continue
        yield line_no, fields


def iter_table(path, issues, delimiter, required, encoding="utf-8", progress=True,
               strip_types=False):
    """Yield ``(line_no, {column: value})`` of a delimited file with a header row.

    A required column missing from the header is an error whatever the mode (nothing
    sensible can be written without it). ``strip_types`` drops RecBole's ``:type`` suffixes.
    """
    records = iter_delimited(path, issues, delimiter, encoding, progress)
    first = next(records, None)
    if first is None:
        raise ConversionError(f"{path}: the file is empty")
    header_line, header = first
    header = [h.strip().split(":")[0] if strip_types else h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise ConversionError(f"{where(path, header_line)}: column(s) {', '.join(missing)} not "
                              f"found; the header has: {', '.join(header)}")
    for line_no, fields in records:
        if len(fields) != len(header):
            issues.report("malformed_line", f"{where(path, line_no)}: expected {len(header)} "
                          f"fields separated by {delimiter!r}, found {len(fields)}")
            continue
        yield line_no, dict(zip(header, fields, strict=True))


def missing_fields(row, required, path, line_no, issues):
    """Report (and return True) when a JSON row lacks one of the ``required`` keys."""
    missing = [k for k in required if row.get(k) in (None, "")]
    if missing:
        issues.report("missing_field", f"{where(path, line_no)}: missing field(s) "
                      f"{', '.join(missing)}")
    return bool(missing)


def reviews_and_meta(input_path, meta, suffixes):
    """Locate an Amazon reviews file and its ``meta_*`` file.

    ``input_path`` is the reviews file or a folder holding one reviews file (and maybe its
    meta file). Without ``meta``, ``meta_<category>`` beside the reviews file is used when
    present (a ``_5`` core suffix is ignored). Returns ``(reviews, meta or None)``.
    """
    if input_path is None:
        raise ConversionError("--input is required")
    path = Path(input_path)
    patterns = [f"*{s}" for s in suffixes]
    if path.is_dir():
        reviews = find_one(path, patterns, "reviews", exclude=["meta_*"])
    elif path.is_file():
        reviews = path
    else:
        raise ConversionError(f"input not found: {path}")
    if meta is not None:
        if not Path(meta).is_file():
            raise ConversionError(f"meta file not found: {meta}")
        return reviews, Path(meta)
    stem = reviews.name
    for s in suffixes:
        if stem.endswith(s):
            stem = stem[: -len(s)]
            break
    for category in dict.fromkeys([stem, stem[:-2] if stem.endswith("_5") else stem]):
        for s in suffixes:
            candidate = reviews.with_name(f"meta_{category}{s}")
            if candidate.is_file():
                return reviews, candidate
    return reviews, None
