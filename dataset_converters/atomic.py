"""Writing the converted dataset: RecBole atomic files and the item content file."""

import json
import os
import re
import uuid
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replace_when_done(path, binary=False):
    """Write ``path`` (UTF-8 text, or bytes if ``binary``) through a temporary file renamed
    into place on success, so an interrupted write never leaves a half-written file under
    the final name (the previous file stays intact). Each writer has its own temporary file:
    two processes writing the same file at once each rename a complete one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    text = {} if binary else {"encoding": "utf-8", "newline": "\n"}
    try:
        with open(tmp, "wb" if binary else "w", **text) as f:
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path, text):
    """``text`` into ``path`` atomically (:func:`replace_when_done`)."""
    with replace_when_done(path) as f:
        f.write(text)


def number(x):
    """A float as written in atomic files: ``881250949`` rather than ``881250949.0``."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def write_inter(path, filtered):
    """``NAME.inter``: user, item, timestamp (and rating) per kept interaction."""
    header = ["user_id:token", "item_id:token", "timestamp:float"]
    if filtered.has_rating:
        header.append("rating:float")
    with replace_when_done(path) as f:
        f.write("\t".join(header) + "\n")
        for u, i, t, r in filtered:
            tail = f"\t{number(r)}" if r is not None else ""
            f.write(f"{u}\t{i}\t{number(t)}{tail}\n")


def seq_token(name):
    """A category name as one ``token_seq`` element (no spaces, tabs or quotes)."""
    return re.sub(r'[\s"]+', "_", name.strip())


def write_item(path, item_tokens, item_info):
    """``NAME.item`` with ``categories:token_seq``, written only when some item has
    categories. Returns whether the file was written."""
    if not any(getattr(item_info.get(t), "categories", None) for t in item_tokens):
        return False
    with replace_when_done(path) as f:
        f.write("item_id:token\tcategories:token_seq\n")
        for tok in item_tokens:
            info = item_info.get(tok)
            cats = [seq_token(c) for c in (info.categories or [])] if info else []
            f.write(f"{tok}\t{' '.join(c for c in cats if c)}\n")
    return True


def write_content(path, item_tokens, texts, images):
    """``NAME.content.jsonl``: one ``{"item_id", "text", "image"}`` line per item."""
    with replace_when_done(path) as f:
        for tok in item_tokens:
            row = {"item_id": tok, "text": texts.get(tok), "image": images.get(tok)}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _modalities_line(modalities):
    return f"item_modalities: [{', '.join(modalities)}]   # the item content the converted data has"


def content_modalities(rows):
    """The modalities content rows have (an image counts once its file is in the folder)."""
    present = [m for m in ("text", "image") if any(row.get(m) for row in rows)]
    return present or ["text"]


def write_settings(path, name, modalities, user_min, item_min):
    """``NAME.yaml``: the settings run_recbole needs to load the dataset as converted (the
    columns sequential models read, the modalities present) and the filtering applied."""
    lines = [f"# Settings of the dataset {name}, written by pmmrec-convert. recbole-pmmrec reads them",
             "# after its own YAML files and before config files and the command line.",
             "load_col:", "  inter: [user_id, item_id, timestamp]", _modalities_line(modalities)]
    if user_min > 1 or item_min > 1:
        lines.append("# filtering the converter applied (applying it again changes nothing)")
    if user_min > 1:
        lines.append(f'user_inter_num_interval: "[{user_min},inf)"')
    if item_min > 1:
        lines.append(f'item_inter_num_interval: "[{item_min},inf)"')
    with replace_when_done(path) as f:
        f.write("\n".join(lines) + "\n")


def update_modalities(path, modalities):
    """Rewrite the ``item_modalities`` line of a ``NAME.yaml`` written by :func:`write_settings`
    (after images were downloaded); a missing file is left alone."""
    if not Path(path).is_file():
        return
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    lines = [_modalities_line(modalities) if line.startswith("item_modalities:") else line for line in lines]
    with replace_when_done(path) as f:
        f.write("\n".join(lines) + "\n")


def read_content(path):
    """The rows of a content file as a list of dicts (for the image download step)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def rewrite_content(path, rows):
    """Write content rows back (same order)."""
    with replace_when_done(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_tsv(path, header, rows):
    """A small tab-separated file (image manifest, image report)."""
    with replace_when_done(path) as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            f.write("\t".join(re.sub(r"[\t\r\n]", " ", str(x)) for x in row) + "\n")


def read_tsv(path):
    """Rows (lists of strings) of a file written by :func:`write_tsv`, header dropped."""
    if not Path(path).is_file():
        return []
    with open(path, encoding="utf-8") as f:
        next(f, None)
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]
