"""MovieLens: ml-100k, ml-1m (and ml-10m), ml-latest(-small), and RecBole's atomic ml-100k.

The variant is recognised by its files: ``u.data`` + ``u.item`` (100k, ``|``-separated,
latin-1, 19 genre flags named in ``u.genre``), ``ratings.dat`` + ``movies.dat`` (1m,
``::``-separated, latin-1), ``ratings.csv`` + ``movies.csv`` (latest, CSV with a header,
UTF-8). Copies of the latin-1 files re-encoded as UTF-8 circulate: a file that decodes as
UTF-8 is read as UTF-8 (``--encoding`` overrides); ``ml-100k.inter`` + ``ml-100k.item`` (RecBole's atomic copy; ``--input`` may be
left out to use the one inside the installed recbole package). Item text fields:
``title`` (with the year), ``year`` and ``genres``.
"""

import re
from pathlib import Path

from . import reading
from .issues import ConversionError

GENRES_100K = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
               "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
               "Romance", "Sci-Fi", "Thriller", "War", "Western"]
_YEAR = re.compile(r"\((\d{4})\)\s*$")
VARIANTS = {"100k": "u.data", "1m": "ratings.dat", "latest": "ratings.csv", "recbole": "*.inter"}


def default_template(opts):
    return "{title}. Genres: {genres}."


def recbole_ml100k():
    import recbole

    return Path(recbole.__file__).resolve().parent / "dataset_example" / "ml-100k"


def detect(folder, variant):
    """The variant of the MovieLens folder (checking its interactions file exists)."""
    if variant not in ("auto", *VARIANTS):
        raise ConversionError(f"unknown MovieLens variant {variant!r}; use one of auto, "
                              f"{', '.join(VARIANTS)}")
    for name, pattern in VARIANTS.items():
        if variant in ("auto", name) and any(folder.glob(pattern)):
            return name
    raise ConversionError(f"{folder}: no MovieLens interactions file found (expected "
                          f"{' or '.join(VARIANTS.values())})")


def movie(fields, title, genres, year=None):
    """The template fields of one movie."""
    title = title.strip()
    if year is None:
        match = _YEAR.search(title)
        year = match.group(1) if match else ""
    elif year and not _YEAR.search(title):
        title = f"{title} ({year})"
    genres = [g for g in genres if g and g != "(no genres listed)"]
    values = {"title": title, "year": year, "genres": ", ".join(genres)}
    return {f: values.get(f, "") for f in fields}, genres


def read(input_path, opts, data):
    folder = Path(input_path) if input_path is not None else recbole_ml100k()
    if not folder.is_dir():
        raise ConversionError(f"MovieLens input must be the unpacked folder, got {folder}")
    variant = detect(folder, "recbole" if input_path is None else opts.variant)
    readers = {"100k": _read_100k, "1m": _read_1m, "latest": _read_latest,
               "recbole": _read_recbole}
    inter_file, item_file = readers[variant](folder, opts, data)
    data.inter_file = inter_file
    return {"variant": variant, "interactions": str(inter_file), "items": str(item_file)}


def _add_movie(data, path, line_no, item, title, genres, year=None):
    data.item_file = path
    fields, genres = movie(data.template.fields, title, genres, year)
    data.add_item(path, line_no, item, fields, categories=genres)


def _read_100k(folder, opts, data):
    ratings, items = folder / "u.data", folder / "u.item"
    enc, issues = opts.encoding or reading.detect_encoding(items, "latin-1"), data.issues
    for line_no, (user, item, rating, ts) in reading.iter_fixed(
            ratings, issues, "\t", 4, enc, opts.progress):
        data.add_interaction(ratings, line_no, user, item, ts, rating)
    names = GENRES_100K
    if (folder / "u.genre").is_file():
        pairs = [f for _, f in reading.iter_fixed(folder / "u.genre", issues, "|", 2, enc, False)]
        names = [name for name, _ in sorted(pairs, key=lambda p: int(p[1]))]
    for line_no, fields in reading.iter_fixed(items, issues, "|", 5 + len(names), enc,
                                              opts.progress):
        genres = [g for g, flag in zip(names, fields[5:], strict=True) if flag.strip() == "1"]
        release = fields[2].strip()
        _add_movie(data, items, line_no, fields[0], fields[1], genres, release[-4:] or "")
    return ratings, items


def _read_1m(folder, opts, data):
    ratings, items = folder / "ratings.dat", folder / "movies.dat"
    enc = opts.encoding or reading.detect_encoding(items, "latin-1")
    for line_no, (user, item, rating, ts) in reading.iter_fixed(
            ratings, data.issues, "::", 4, enc, opts.progress):
        data.add_interaction(ratings, line_no, user, item, ts, rating)
    for line_no, (item, title, genres) in reading.iter_fixed(
            items, data.issues, "::", 3, enc, opts.progress):
        _add_movie(data, items, line_no, item, title, genres.split("|"))
    return ratings, items


def _read_latest(folder, opts, data):
    enc = opts.encoding or "utf-8"
    ratings, items = folder / "ratings.csv", folder / "movies.csv"
    for line_no, row in reading.iter_table(ratings, data.issues, ",",
                                           ["userId", "movieId", "rating", "timestamp"], enc,
                                           opts.progress):
        data.add_interaction(ratings, line_no, row["userId"], row["movieId"], row["timestamp"],
                             row["rating"])
    for line_no, row in reading.iter_table(items, data.issues, ",",
                                           ["movieId", "title", "genres"], enc, opts.progress):
        _add_movie(data, items, line_no, row["movieId"], row["title"], row["genres"].split("|"))
    return ratings, items


def _read_recbole(folder, opts, data):
    enc = opts.encoding or "utf-8"
    inter = reading.find_one(folder, ["*.inter"], "RecBole .inter")
    items = inter.with_suffix(".item")
    for line_no, row in reading.iter_table(inter, data.issues, "\t",
                                           ["user_id", "item_id", "timestamp"], enc,
                                           opts.progress, strip_types=True):
        data.add_interaction(inter, line_no, row["user_id"], row["item_id"], row["timestamp"],
                             row.get("rating"))
    for line_no, row in reading.iter_table(items, data.issues, "\t", ["item_id", "movie_title"],
                                           enc, opts.progress, strip_types=True):
        _add_movie(data, items, line_no, row["item_id"], row["movie_title"],
                   row.get("class", "").split(), row.get("release_year", "").strip())
    return inter, items
