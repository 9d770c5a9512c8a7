"""Amazon Reviews 2018 (and 2014): ``<Category>.json(.gz)`` reviews, ``meta_<Category>.json(.gz)``.

Reviews: one JSON object per line with ``reviewerID``, ``asin``, ``overall`` and
``unixReviewTime``. Meta: one object per line (some files are Python ``str(dict)``
literals) with ``asin``, ``title``, ``description``, ``brand``, ``category`` (2014:
``categories``, a list of lists) and ``imageURLHighRes`` / ``imageURL`` (older 2018 files:
``image``; 2014: ``imUrl``).
"""

import sys

from . import amazon
from .text import clean_text

SUFFIXES = (".json.gz", ".json")
REQUIRED = ("reviewerID", "asin", "overall", "unixReviewTime")
META_ID = "asin"
PYTHON_LITERALS = True


def default_template(opts):
    return "{title}. {brand}. {description}"


def interaction(row):
    return row["reviewerID"], row["asin"], row["unixReviewTime"], row["overall"]


def categories(row):
    value = row.get("category") or row.get("categories") or []
    flat = []
    for entry in value if isinstance(value, list) else [value]:
        flat.extend(entry if isinstance(entry, list) else [entry])
    names = (clean_text(c) for c in flat)
    return list(dict.fromkeys(c for c in names if c))


def image_url(row):
    for key in ("imageURLHighRes", "imageURL", "image", "imUrl"):
        value = row.get(key)
        if isinstance(value, list):
            value = next((v for v in value if isinstance(v, str) and v.strip()), None)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def read(input_path, opts, data):
    return amazon.read(input_path, opts, data, sys.modules[__name__])
