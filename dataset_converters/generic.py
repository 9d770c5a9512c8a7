"""Any CSV, TSV or JSON-lines interaction file, with the columns named by options.

``user_col`` and ``item_col`` are required; ``time_col`` (numbers, or ISO 8601 dates, or a
``time_format`` of ``unix``, ``ms`` or a ``strptime`` pattern) is optional: without it the
file order gives the timestamps. ``rating_col``, ``text_cols`` and ``image_col`` (a path
relative to the file, or an http(s) URL) are optional and read from ``items`` (a second
file keyed by ``item_col``; an items file of ids alone lists items without text) when
given, else from the first row of each item. A file without a header row is read with
its columns named by ``columns`` (the interactions) or ``item_columns`` (the items), e.g.
MicroLens' ``id,title`` titles file. CSV-quoted fields are unquoted in TSV files too.
"""

from datetime import datetime, timezone
from pathlib import Path

from . import reading
from .issues import ConversionError, snippet, where
from .text import clean_text

FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".json": "jsonl",
           ".ndjson": "jsonl"}


def default_template(opts):
    return ". ".join("{" + c + "}" for c in opts.text_cols or ["text"])


def file_format(path, opts):
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    fmt = opts.format or FORMATS.get(Path(name).suffix.lower())
    if fmt not in ("csv", "tsv", "jsonl"):
        raise ConversionError(f"{path}: cannot tell the format from the name; give --format "
                              f"csv, tsv or jsonl")
    return fmt


def iter_rows(path, opts, required, optional, issues, columns=None):
    """``(line_no, {column: value})`` from a CSV/TSV (header row, or headerless with its
    ``columns`` named) or JSON-lines file.

    A CSV/TSV header must have the ``required`` and ``optional`` columns; a JSON row
    lacking a ``required`` key is reported and skipped."""
    fmt = file_format(path, opts)
    encoding = opts.encoding or "utf-8"
    if fmt == "jsonl":
        for line_no, row in reading.iter_json(path, issues, encoding, opts.progress):
            if not reading.missing_fields(row, required, path, line_no, issues):
                yield line_no, row
        return
    delimiter = opts.delimiter or ("," if fmt == "csv" else "\t")
    yield from reading.iter_table(path, issues, delimiter, [*required, *optional], encoding, opts.progress,
                                  columns=columns)  # CSV-quoted TSV fields are unquoted by the csv reader


def parse_time(value, time_format):
    """Seconds since the epoch, or None when ``value`` does not match ``time_format``."""
    try:
        if time_format in ("auto", "unix", "ms"):
            try:
                seconds = float(value)
                return seconds / 1000.0 if time_format == "ms" else seconds
            except (TypeError, ValueError):
                if time_format != "auto":
                    return None
            moment = datetime.fromisoformat(str(value).strip())
        else:
            moment = datetime.strptime(str(value).strip(), time_format)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def item_record(row, opts, base):
    """:meth:`RawData.add_item` arguments from a row's text and image columns."""
    fields = {c: clean_text(row.get(c)) for c in opts.text_cols or []}
    image = row.get(opts.image_col) if opts.image_col else None
    image = str(image).strip() if image is not None else ""
    if image.startswith(("http://", "https://")):
        return {"fields": fields, "image_url": image}
    return {"fields": fields, "image_file": base / image if image else None}


def read(input_path, opts, data):
    if input_path is None or not Path(input_path).is_file():
        raise ConversionError(f"generic input must be a file, got {input_path}")
    path = Path(input_path)
    item_cols = [*(opts.text_cols or []), *([opts.image_col] if opts.image_col else [])]
    required = [opts.user_col, opts.item_col] + [c for c in (opts.time_col, opts.rating_col) if c]
    optional = [] if opts.items else item_cols
    data.item_file = Path(opts.items) if opts.items else (path if item_cols else None)
    data.inter_file = path
    for line_no, row in iter_rows(path, opts, required, optional, data.issues, opts.columns):
        if opts.time_col:
            time = parse_time(row[opts.time_col], opts.time_format)
            if time is None:
                data.issues.report("malformed_value", f"{where(path, line_no)}: cannot read time "
                                   f"{snippet(row[opts.time_col])} (time format {opts.time_format})",
                                   path=path)
                continue
        else:
            time = line_no
        rating = row[opts.rating_col] if opts.rating_col else None
        data.add_interaction(path, line_no, row[opts.user_col], row[opts.item_col], time, rating)
        token = data.token(row[opts.item_col])
        if item_cols and not opts.items and token and token not in data.item_info:
            data.add_item(path, line_no, token, **item_record(row, opts, path.parent))
    if opts.items:
        items = Path(opts.items)
        for line_no, row in iter_rows(items, opts, [opts.item_col], item_cols, data.issues, opts.item_columns):
            data.add_item(items, line_no, row[opts.item_col],
                          **item_record(row, opts, items.parent))
    return {"interactions": str(path), "items": opts.items}
