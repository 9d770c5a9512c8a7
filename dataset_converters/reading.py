"""Streaming readers: plain or gzip files line by line, with line numbers and progress."""

import ast
import codecs
import csv
import gzip
import json
import os
import re
from pathlib import Path

from tqdm import tqdm

from .issues import ConversionError, log, shorten, where

# replacement or C1 control characters, or text once read from UTF-8 as latin-1/cp1252 ("Ã©" for "é")
MOJIBAKE = re.compile("[\ufffd\x80-\x9f]|[\u00c2\u00c3][\u0080-\u00bf]")


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
    Decoded text that looks like mojibake (replacement or C1 control characters, or UTF-8
    read as another encoding) is warned about once per file. A truncated gzip file stops with an
    error, or (``issues.allow_truncated``) ends the read there with a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"input file not found: {path}")
    issues.encodings[str(path)] = encoding
    raw, lines = open_binary(path)
    bar = tqdm(total=os.path.getsize(path), unit="B", unit_scale=True, desc=path.name,
               disable=not progress, leave=False)
    line_no, mojibake = 0, None
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
                                  f"file uses another encoding", path=path)
                    continue
                if line_no == 1:
                    text = text.lstrip("\ufeff")
                if mojibake is None and (MOJIBAKE.search(text) or _utf8_misread(data, encoding)):
                    mojibake = line_no
                yield line_no, text.rstrip("\r\n")
            bar.update(raw.tell() - bar.n)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        if not (issues.allow_truncated and str(path).endswith(".gz")):
            hint = "; pass --allow-truncated to convert the readable part" if str(path).endswith(".gz") else ""
            raise ConversionError(f"{path}: cannot read the file after line {line_no} ({err}){hint}") from None
        issues.truncated[str(path)] = line_no
        log.warning("%s is truncated: converted its first %d lines (%s)", path, line_no, err)
    finally:
        bar.close()
    if mojibake:
        log.warning("%s, line %d: the text looks garbled (replacement or control characters, or UTF-8 read "
                    "as another encoding): the file may not be %s (pass --encoding)", path, mojibake, encoding)


def _utf8_misread(data, encoding):
    """Whether non-ASCII ``data``, decoded as ``encoding`` (not UTF-8), is valid UTF-8."""
    if data.isascii() or codecs.lookup(encoding).name == "utf-8":
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def detect_encoding(path, documented):
    """``utf-8`` if ``path`` decodes as UTF-8 (and is not plain ASCII), else ``documented``
    (e.g. MovieLens 1m's latin-1, which some redistributed copies are not)."""
    raw, lines = open_binary(path)
    with raw, lines:
        data = lines.read(16 * 2**20)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return documented
    return "utf-8" if not data.isascii() else documented


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
            issues.report("malformed_line", f"{where(path, line_no)}: {reason}", path=path)
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
            issues.report("malformed_line", f"{where(path, state['line'])}: {err}", path=path)
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
                          f"separated by {delimiter!r}, found {len(fields)}", path=path)
            continue
        yield line_no, fields


def iter_table(path, issues, delimiter, required, encoding="utf-8", progress=True,
               strip_types=False, columns=None):
    """Yield ``(line_no, {column: value})`` of a delimited file with a header row, or, given
    ``columns``, a headerless file whose fields are named by ``columns``.

    A required column missing from the header is an error whatever the mode (nothing
    sensible can be written without it). ``strip_types`` drops RecBole's ``:type`` suffixes.
    """
    records = iter_delimited(path, issues, delimiter, encoding, progress)
    if columns:
        header_line, header = 0, list(columns)
    else:
        first = next(records, None)
        if first is None:
            raise ConversionError(_no_records(path, issues, encoding))
        header_line, header = first
        header = [h.strip().split(":")[0] if strip_types else h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        found = "the columns named" if columns else "the header has"
        raise ConversionError(f"{where(path, header_line or None)}: column(s) {', '.join(missing)} not "
                              f"found; {found}: {shorten(', '.join(header), 200)}")
    for line_no, fields in records:
        if len(fields) != len(header):
            issues.report("malformed_line", f"{where(path, line_no)}: expected {len(header)} "
                          f"fields separated by {delimiter!r}, found {len(fields)}", path=path)
            continue
        yield line_no, dict(zip(header, fields, strict=True))


def _no_records(path, issues, encoding):
    """Why a table gave no row: an empty file, or one that is not text in ``encoding``."""
    if Path(path).stat().st_size == 0:
        return f"{path}: the file is empty"
    undecodable = issues.counts.get("bad_encoding", 0)
    return (f"{path}: no line could be read as {encoding} text ({undecodable} undecodable lines): is it a "
            f"binary file? Expected a delimited text table with a header row")


def unquote(field):
    """A field written CSV-style inside a TSV file (``"a ""b"" c"``) as its text (``a "b" c``)."""
    if len(field) >= 2 and field.startswith('"') and field.endswith('"'):
        return field[1:-1].replace('""', '"')
    return field


def missing_fields(row, required, path, line_no, issues):
    """Report (and return True) when a JSON row lacks one of the ``required`` keys."""
    missing = [k for k in required if row.get(k) in (None, "")]
    if missing:
        issues.report("missing_field", f"{where(path, line_no)}: missing field(s) "
                      f"{', '.join(missing)}", path=path)
    return bool(missing)


def reviews_and_meta(input_path, meta, suffixes):
    """Locate an Amazon reviews file and its ``meta_*`` file.

    ``input_path`` is the reviews file or a folder holding one reviews file (and maybe its
    meta file). Without ``meta``, ``meta_<category>`` beside the reviews file is used when
    present: 2018's ``<Category>.json.gz`` and 2014's ``reviews_<Category>_5.json.gz`` both
    have ``meta_<Category>.json.gz``. Returns ``(reviews, meta or None)``.
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
    if reviews.name.startswith("meta_"):
        raise ConversionError(f"{reviews} is a metadata file: give the reviews file as --input "
                              f"(and this file as --meta, if it is not found beside the reviews)")
    if meta is not None:
        if not Path(meta).is_file():
            raise ConversionError(f"meta file not found: {meta}")
        return reviews, Path(meta)
    for category in _categories(reviews.name, suffixes):
        for s in suffixes:
            candidate = reviews.with_name(f"meta_{category}{s}")
            if candidate.is_file():
                return reviews, candidate
    return reviews, None


def _categories(name, suffixes):
    """Category names a reviews file name may stand for, most specific first."""
    stem = next((name[: -len(s)] for s in suffixes if name.endswith(s)), name)
    names = [stem]
    for prefix in ("reviews_",):
        if stem.startswith(prefix):
            names.append(stem[len(prefix):])
    names += [n[:-2] for n in list(names) if n.endswith("_5")]
    return list(dict.fromkeys(names))
