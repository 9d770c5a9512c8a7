"""Raw interactions and item records as read from a source, before filtering and writing."""

import math
import re
from array import array

import numpy as np

from . import filtering
from .atomic import number
from .issues import ConversionError, shorten, snippet, where

# strings pandas reads as missing values (RecBole loads atomic files with pandas defaults)
NA_STRINGS = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
              "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
_UNSAFE = re.compile(r'[\t\r\n"]')


class ItemInfo:
    """What a source says about one item: rendered text, image file or URL, categories."""

    __slots__ = ("text", "image_file", "image_url", "categories")

    def __init__(self, text=None, image_file=None, image_url=None, categories=None):
        self.text, self.image_file, self.image_url = text, image_file, image_url
        self.categories = categories


class RawData:
    """Interactions coded as integer arrays plus item records, filled by a source reader."""

    def __init__(self, issues, template, min_rating=None):
        self.issues, self.template, self.min_rating = issues, template, min_rating
        self.user_ids, self.item_ids = {}, {}
        self.users, self.items = array("i"), array("i")
        self.times, self.ratings, self.lines = array("d"), array("d"), array("q")
        self.has_rating = None
        self.inter_file = None  # set by the source (else by the first row added)
        self.item_file = None  # set by a source that reads an item file: items absent from
        # it are then unknown, and their interactions skipped (or kept, keep_unknown_items)
        self.item_info = {}
        self.rewritten = {}
        self.rows_read = 0  # rows handed to add_interaction (bad values included)
        self.bad_values = 0  # of which skipped for a bad value
        self.below_min_rating = 0
        self.item_rows_read = 0
        self.markup_only_fields = 0

    # ------------------------------------------------------------------ tokens
    def token(self, value):
        """The RecBole token for a raw id: stripped, with characters that would break the
        tab-separated file (tab, newline, double quote) replaced and pandas' missing-value
        words (``NA``, ``null``...) suffixed with ``_``. ``None`` for an empty id."""
        if value is None:
            return None
        raw = str(value).strip()
        tok = _UNSAFE.sub("_", raw)
        if tok in NA_STRINGS:
            tok = tok + "_" if tok else None
        if tok is not None and tok != raw:
            self.rewritten[raw] = tok
        return tok

    # ------------------------------------------------------------ interactions
    def add_interaction(self, path, line_no, user, item, time, rating=None):
        """Add one row; a bad value is reported (file and line) and the row skipped."""
        self.inter_file = self.inter_file or path
        self.rows_read += 1
        here = where(path, line_no)
        u, i = self.token(user), self.token(item)
        if u is None or i is None:
            return self._bad(path, f"{here}: empty {'user' if u is None else 'item'} id")
        t = _number(time)
        if t is None:
            return self._bad(path, f"{here}: timestamp {snippet(time)} is not a number")
        if self.has_rating is None:
            self.has_rating = rating is not None
        if self.has_rating:
            r = _number(rating)
            if r is None:
                return self._bad(path, f"{here}: rating {snippet(rating)} is not a number")
            if self.min_rating is not None and r < self.min_rating:
                self.below_min_rating += 1
                return
            self.ratings.append(r)
        self.users.append(self.user_ids.setdefault(u, len(self.user_ids)))
        self.items.append(self.item_ids.setdefault(i, len(self.item_ids)))
        self.times.append(t)
        self.lines.append(line_no)

    def _bad(self, path, message):
        self.bad_values += 1
        self.issues.report("malformed_value", message, path=path)

    # ------------------------------------------------------------------ items
    def wants(self, token):
        """Whether ``token`` occurs in the interactions read so far."""
        return token in self.item_ids

    def add_item(self, path, line_no, item, fields=None, image_file=None, image_url=None,
                 categories=None):
        """Add an item record; ``fields`` (cleaned texts) are rendered through the template.
        A second record for the same item is reported and ignored."""
        self.item_rows_read += 1
        tok = self.token(item)
        if tok is None:
            return self.issues.report("malformed_value", f"{where(path, line_no)}: empty item id", path=path)
        if tok in self.item_info:
            return self.issues.report("duplicate_item",
                                      f"{where(path, line_no)}: item {snippet(tok)} appears again",
                                      path=path)
        text = self.template.render(fields) if fields is not None else None
        self.item_info[tok] = ItemInfo(text, image_file, image_url, categories)

    # ---------------------------------------------------------------- filters
    def finalize(self, keep_unknown_items=False, user_min=1, item_min=1, max_seq_len=None, keep_order=False):
        """Apply unknown-item removal, de-duplication, last-N and k-core; return a
        :class:`Filtered` with the kept rows in output order (by user then time, or with
        ``keep_order`` the input's order) and the filter counts."""
        if self.min_rating is not None and self.has_rating is False:
            raise ConversionError("--min-rating was given but the source has no ratings")
        users = np.frombuffer(self.users, dtype=np.int32)
        items = np.frombuffer(self.items, dtype=np.int32)
        times = np.frombuffer(self.times, dtype=np.float64)
        rows = np.arange(len(users))
        if not len(rows):
            raise ConversionError(self._nothing_read())
        item_tokens = list(self.item_ids)
        bad_rows = self.skipped_interaction_rows()
        counts = {"rows_read": self.interaction_rows_read(), "below_min_rating": self.below_min_rating,
                  "bad_rows": bad_rows}
        before = len(rows)
        if self.item_file is not None and not keep_unknown_items:
            rows = self._drop_unknown(items, rows, item_tokens)
        counts["dropped_unknown_items"] = int(before - len(rows))
        dups, originals = filtering.duplicate_rows(users, items, times, rows)
        user_tokens = list(self.user_ids) if len(dups) else []
        for pos in np.argsort(dups, kind="stable"):
            d, o = dups[pos], originals[pos]
            self.issues.report(
                "duplicate_interaction",
                f"{where(self.inter_file, self.lines[d])}: repeats line {self.lines[o]} (user "
                f"{shorten(user_tokens[users[d]])}, item {shorten(item_tokens[items[d]])}, time {number(times[d])})")
        rows = np.setdiff1d(rows, dups)
        counts["dropped_duplicates"] = int(len(dups))
        counts["interactions_before_filters"] = int(len(rows))
        if max_seq_len:
            before = len(rows)
            rows = filtering.keep_last(users, times, rows, max_seq_len)
            counts["dropped_by_max_seq_len"] = int(before - len(rows))
        before = len(rows)
        rows, rounds = filtering.k_core(users, items, rows, user_min, item_min)
        counts["dropped_by_k_core"] = int(before - len(rows))
        counts["k_core_rounds"] = rounds
        if not len(rows):
            raise ConversionError(f"no interactions are left after filtering: {_drop_reasons(counts)}")
        rows = np.sort(rows) if keep_order else filtering.sort_rows(users, times, rows)
        return Filtered(self, rows, users, items, times, item_tokens, counts)

    def skipped_interaction_rows(self):
        """Rows of the interactions file skipped while reading (malformed lines, missing
        fields, bad values); an item file's skipped lines are not interaction rows."""
        return self.issues.rows_skipped_in(self.inter_file) if self.inter_file else 0

    def interaction_rows_read(self):
        """Rows of the interactions file read: those handed to :meth:`add_interaction` and
        those skipped before (so ``rows_read`` less each filter's count is what is kept)."""
        return self.rows_read + self.skipped_interaction_rows() - self.bad_values

    def _nothing_read(self):
        """Why no interaction was read from the file: what became of its lines and rows."""
        source = self.inter_file or "the input"
        reasons = [f"{self.rows_read} rows read"]
        if self.below_min_rating:
            reasons.append(f"{self.below_min_rating} below --min-rating")
        if self.issues.counts:
            skipped = ", ".join(f"{n} {kind}" for kind, n in sorted(self.issues.counts.items()))
            reasons.append(f"skipped: {skipped} (see the messages above)")
        if "bad_encoding" in self.issues.counts:
            encoding = self.issues.encodings.get(str(source), "utf-8")
            reasons.append(f"is it a binary file? Expected {encoding} text (or pass --encoding)")
        return f"no interactions were read from {source}: {'; '.join(reasons)}"

    def _drop_unknown(self, items, rows, item_tokens):
        known = np.array([tok in self.item_info for tok in item_tokens], dtype=bool)
        unknown_rows = rows[~known[items[rows]]]
        if len(unknown_rows):
            first = {}
            for row in unknown_rows.tolist():  # file order: the first row of each item
                first.setdefault(int(items[row]), row)
            n_rows = np.bincount(items[unknown_rows], minlength=len(item_tokens))
            for item, row in first.items():
                self.issues.report(
                    "unknown_item",
                    f"{where(self.inter_file, self.lines[row])}: item {snippet(item_tokens[item])} is not "
                    f"in {self.item_file} ({n_rows[item]} interactions skipped)",
                    count=int(n_rows[item]))
        return rows[known[items[rows]]]


def _drop_reasons(counts):
    """Where the rows read went, e.g. ``6 read; dropped: 6 of unknown items``."""
    labels = {"below_min_rating": "below --min-rating", "bad_rows": "malformed (see the summary)",
              "dropped_unknown_items": "of items not in the item file", "dropped_duplicates": "duplicates",
              "dropped_by_max_seq_len": "beyond --max-seq-len", "dropped_by_k_core": "by the k-core / minimum length"}
    dropped = [f"{counts[key]} {label}" for key, label in labels.items() if counts.get(key)]
    return f"{counts['rows_read']} rows read; dropped: {', '.join(dropped) or 'none'}"


class Filtered:
    """The kept interactions (``rows``, in output order) and the kept item tokens."""

    def __init__(self, data, rows, users, items, times, item_tokens, counts):
        self.rows, self.counts = rows, counts
        self._users, self._items, self._times = users, items, times
        self._user_tokens, self._item_tokens = list(data.user_ids), item_tokens
        self._ratings = np.frombuffer(data.ratings, dtype=np.float64) if data.has_rating else None
        self.has_rating = self._ratings is not None
        self.item_tokens = [item_tokens[i] for i in np.unique(items[rows]).tolist()]
        self.n_users = len(np.unique(users[rows]))

    def __iter__(self):
        """``(user, item, time, rating or None)`` per kept row, in output order."""
        for start in range(0, len(self.rows), 65536):
            rows = self.rows[start:start + 65536]
            ratings = self._ratings[rows].tolist() if self.has_rating else [None] * len(rows)
            yield from zip([self._user_tokens[u] for u in self._users[rows].tolist()],
                           [self._item_tokens[i] for i in self._items[rows].tolist()],
                           self._times[rows].tolist(), ratings, strict=True)


def _number(value):
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None
