"""Amazon Reviews 2023: ``<Category>.jsonl(.gz)`` reviews, ``meta_<Category>.jsonl(.gz)``.

Reviews: ``user_id``, ``parent_asin``, ``rating``, ``timestamp`` (milliseconds, written
as seconds). Items are keyed by ``parent_asin``. Meta: ``parent_asin``, ``title``,
``features`` and ``description`` (lists), ``store``, ``categories``, ``details`` (a dict)
and ``images`` (a list of ``{thumb, large, hi_res, variant}``; the ``MAIN`` one is used).
"""

import sys

from . import amazon
from .text import clean_text

SUFFIXES = (".jsonl.gz", ".jsonl")
REQUIRED = ("user_id", "parent_asin", "rating", "timestamp")
META_ID = "parent_asin"
PYTHON_LITERALS = False


def default_template(opts):
    return "{title}. {store}. {description}"


def seconds(milliseconds):
    """Milliseconds as seconds; a non-number is passed on unchanged (and then reported)."""
    try:
        return float(milliseconds) / 1000.0
    except (TypeError, ValueError):
        return milliseconds


def interaction(row):
    return row["user_id"], row["parent_asin"], seconds(row["timestamp"]), row["rating"]


def categories(row):
    names = (clean_text(c) for c in row.get("categories") or [])
    return list(dict.fromkeys(c for c in names if c))


def image_url(row):
    shots = [s for s in row.get("images") or [] if isinstance(s, dict)]
    shots.sort(key=lambda s: s.get("variant") != "MAIN")
    for shot in shots:
        for key in ("hi_res", "large", "thumb"):
            if isinstance(shot.get(key), str) and shot[key].strip():
                return shot[key].strip()
    return None


def read(input_path, opts, data):
    return amazon.read(input_path, opts, data, sys.modules[__name__])
