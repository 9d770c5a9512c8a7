"""Movie posters for a MovieLens catalogue: an item-id -> image-file map, joined on title and year.

Public poster collections are keyed by another MovieLens release's ids (e.g.
``images/<ml-1m movie_id>.jpg``). This joins the items of any MovieLens variant to that
release's ``movies.dat`` by normalised title and year, and writes a two-column map
(``item_id<TAB>image``) for ``pmmrec-convert ... --image-map``:

1. exact: the same normalised title (case, accents, punctuation and a trailing ", The" /
   ", A" / ", Les"... article ignored) and year, also matching a title given in
   parentheses (``"Postman, The (Postino, Il) (1994)"`` has both);
2. else the same year and one title containing the other (at least 4 characters), when
   exactly one movie of that year qualifies.

Items with no match, an ambiguous one, or no poster file are counted and listed.
"""

import re
import unicodedata
from collections import defaultdict
from pathlib import Path

from . import atomic, reading
from .issues import ConversionError, Issues

_ARTICLE = re.compile(r"^(.*), (the|a|an|les|la|le|il|el|das|der|die|l')$")
_YEAR = re.compile(r"^(.*)\((\d{4})\)\s*$")


def normalise(title):
    """Lower-case ASCII words of a title, a trailing article moved to the front."""
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower().strip()
    match = _ARTICLE.match(text)
    if match:
        text = f"{match.group(2)} {match.group(1)}"
    return re.sub(r"[^a-z0-9]+", " ", text).strip()


def title_names(title):
    """The normalised names a MovieLens title carries: the title, each parenthesised
    alternative, and the title without them."""
    names = [title, re.sub(r"\([^()]*\)", "", title), *re.findall(r"\(([^()]*)\)", title)]
    return {normalise(name) for name in names if normalise(name)}


class MovieIndex:
    """The movies of a ``movies.dat`` (``id::title (year)::genres``) by name and year."""

    def __init__(self, movies_file, encoding=None):
        """``encoding``: default UTF-8 when the file decodes as such, else MovieLens' latin-1."""
        self.by_name, self.by_year = defaultdict(set), defaultdict(list)
        encoding = encoding or reading.detect_encoding(movies_file, "latin-1")
        for line_no, fields in reading.iter_fixed(movies_file, Issues(strict=True), "::", 3, encoding, False):
            match = _YEAR.match(fields[1].strip())
            if not match:
                continue
            title, year = match.groups()
            names = title_names(title)
            self.by_year[year].append((fields[0], names))
            for name in names:
                self.by_name[(name, year)].add(fields[0])

    def match(self, title, year):
        """The id of the one movie that ``title`` (with ``year``) names, else None."""
        name = normalise(title)
        found = self.by_name.get((name, year)) or {
            movie for movie, names in self.by_year.get(year, [])
            if any(len(min(name, other, key=len)) >= 4 and (name in other or other in name) for other in names)
        }
        return next(iter(found)) if len(found) == 1 else None


def poster_map(items, movies_file, posters, output):
    """Write ``output`` (``item_id<TAB>image``) for ``items`` (``(item_id, title, year)``)
    matched to ``movies_file``'s ids, whose posters are ``posters/<id>.jpg``.
    Returns ``{"items", "matched", "no_match", "no_poster", "examples"}``."""
    posters = Path(posters)
    if not posters.is_dir():
        raise ConversionError(f"poster folder not found: {posters}")
    index = MovieIndex(movies_file)
    rows, no_match, no_poster = [], [], []
    for item_id, title, year in items:
        movie = index.match(title, year)
        if movie is None:
            no_match.append(f"{title} ({year})")
        elif not (posters / f"{movie}.jpg").is_file():
            no_poster.append(f"{title} ({year})")
        else:
            rows.append((item_id, str((posters / f"{movie}.jpg").resolve())))
    atomic.write_tsv(output, ["item_id", "image"], rows)
    return {"items": len(items), "matched": len(rows), "no_match": len(no_match), "no_poster": len(no_poster),
            "examples": {"no_match": no_match[:10], "no_poster": no_poster[:10]}}


def recbole_ml100k_items(item_file):
    """``(item_id, title, year)`` of RecBole's atomic ``ml-100k.item``."""
    rows = []
    for _, row in reading.iter_table(item_file, Issues(strict=True), "\t", ["item_id", "movie_title"], "utf-8",
                                     False, strip_types=True):
        rows.append((row["item_id"], row["movie_title"], row.get("release_year", "").strip()))
    return rows
