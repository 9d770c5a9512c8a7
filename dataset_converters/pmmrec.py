"""The PMMRec / NineRec release format.

``<name>_users.tsv``: ``user<TAB>item item item ...`` one user per line, items in time
order and no timestamps (each user's positions 0, 1, 2... are written as timestamps).
``<name>_items_texts.tsv``: ``item<TAB>title`` (a title quoted CSV-style is unquoted; a line
with the id alone is an item without text, as in MoRec's ``*_items.tsv`` lists). Images: a folder of ``<item>.jpg``
(``--images``, or an ``images/`` folder beside the files) or an LMDB (``--lmdb``, or a
single ``*.lmdb`` beside the files) whose keys are item ids (``v123`` is also looked up
as ``123``) and values encoded images or pickled ``LMDB_Image`` pixels.
"""

from pathlib import Path

from . import reading
from .issues import ConversionError, snippet, where


def default_template(opts):
    return "{title}"


def locate(input_path, items):
    """``(users file, items file or None)`` from a folder or the users file itself."""
    if input_path is None:
        raise ConversionError("--input is required")
    path = Path(input_path)
    if path.is_dir():
        users = reading.find_one(path, ["*_users.tsv"], "users")
    elif path.is_file():
        users = path
    else:
        raise ConversionError(f"input not found: {path}")
    if items is None:
        prefix = users.name[: -len("users.tsv")] if users.name.endswith("users.tsv") else ""
        candidate = users.with_name(f"{prefix}items_texts.tsv")
        items = candidate if prefix and candidate.is_file() else None
    return users, Path(items) if items else None


def read(input_path, opts, data):
    users_file, items_file = locate(input_path, opts.items)
    enc, issues = opts.encoding or "utf-8", data.issues
    folder = users_file.parent
    if opts.images is None and opts.lmdb is None:
        lmdbs = sorted(folder.glob("*.lmdb"))
        if (folder / "images").is_dir():
            opts.images = str(folder / "images")
        elif len(lmdbs) == 1:
            opts.lmdb = str(lmdbs[0])
    data.inter_file = users_file
    seen_users = {}
    for line_no, (user, sequence) in reading.iter_fixed(users_file, issues, "\t", 2, enc,
                                                        opts.progress):
        items = sequence.split()
        here = where(users_file, line_no)
        if not items:
            issues.report("malformed_line", f"{here}: user {snippet(user)} has no items", path=users_file)
        elif user.strip() in seen_users:
            issues.report("duplicate_user", f"{here}: user {snippet(user)} already has a sequence "
                          f"on line {seen_users[user.strip()]}", path=users_file)
        else:
            seen_users[user.strip()] = line_no
            for position, item in enumerate(items):
                data.add_interaction(users_file, line_no, user, item, position)
    if items_file is not None:
        data.item_file = items_file
        for line_no, text in reading.iter_lines(items_file, issues, enc, opts.progress):
            if not text.strip():
                continue
            item, _, title = text.partition("\t")  # an id-only line is an item without text
            data.add_item(items_file, line_no, item, {"title": reading.unquote(title.strip())})
    return {"users": str(users_file), "items": str(items_file) if items_file else None,
            "images": opts.images, "lmdb": opts.lmdb}
