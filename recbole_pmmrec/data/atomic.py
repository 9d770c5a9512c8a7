"""RecBole atomic files (``NAME.inter``...) checked before RecBole reads them, so a malformed
header or value is an error naming the file, line and field rather than a pandas traceback."""

import csv

TYPES = ("token", "token_seq", "float", "float_seq")


class AtomicFileError(ValueError):
    """An atomic file's header or a value in it is malformed."""


def _header(path):
    with open(path, encoding="utf-8") as f:
        return f.readline().rstrip("\r\n").split("\t")


def check_atomic_header(path, load_col=None):
    """Each header field is ``name:type`` with a RecBole type, and the ``load_col`` columns
    are present."""
    names = []
    for position, field in enumerate(_header(path), start=1):
        name, sep, kind = field.partition(":")
        if not sep or not name:
            raise AtomicFileError(f"{path}, line 1: header field {position} {field!r} is not name:type "
                                  f"(e.g. item_id:token); types: {', '.join(TYPES)}")
        if kind not in TYPES:
            raise AtomicFileError(f"{path}, line 1: field {name!r} has type {kind!r}; RecBole's types are "
                                  f"{', '.join(TYPES)}")
        names.append(name)
    missing = [c for c in load_col or [] if c not in names]
    if missing:
        raise AtomicFileError(f"{path}, line 1: load_col names {missing}, but the header has {names}")


def first_bad_value(path):
    """``"file, line N: field F: ..."`` for the first value of a float field that is not a
    number, or a row with the wrong number of fields; None if there is none."""
    header = _header(path)
    floats = [i for i, field in enumerate(header) if field.partition(":")[2] in ("float", "float_seq")]
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows, None)
        for line_no, row in enumerate(rows, start=2):
            if len(row) != len(header):
                return f"{path}, line {line_no}: {len(row)} fields, the header has {len(header)}"
            for i in floats:
                for value in row[i].split(" ") if header[i].endswith("_seq") else [row[i]]:
                    try:
                        float(value or "nan")
                    except ValueError:
                        return f"{path}, line {line_no}: field {header[i]!r} value {value[:40]!r} is not a number"
    return None
