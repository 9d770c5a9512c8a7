"""Item images: copying from a folder or LMDB, the URL manifest, and downloading URLs.

Every image is checked to decode with PIL before it is referenced from the content
file; the ones that are missing or broken are listed in ``NAME.image_report.tsv``.
"""

import csv
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from . import atomic
from .issues import ConversionError, log

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
FORMAT_EXT = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif",
              "BMP": ".bmp", "TIFF": ".tif"}
REPORT_HEADER = ["item_id", "source", "problem"]
MAX_BYTES = 50 * 2**20
RETRY_HTTP = {408, 429, 500, 502, 503, 504}
USER_AGENT = "pmmrec-convert/0.1 (+https://github.com/RUCAIBox/RecBole)"


def safe_name(token):
    """A file name stem for an item id: the id itself when it is a safe name, otherwise the
    id with unsafe characters replaced plus a short hash (so two ids never collide)."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", token)[:100]
    if stem != token or stem.startswith("."):
        stem = f"{stem}-{hashlib.sha1(token.encode('utf-8')).hexdigest()[:8]}"
    return stem


def decode_check(source):
    """``(format, None)`` if ``source`` (a path or bytes) fully decodes as an image, else
    ``(None, reason)``."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            fmt = img.format
            img.load()
        return fmt, None
    except Exception as err:  # PIL raises many types for corrupt data
        return None, f"{type(err).__name__}: {err}"


class ImageCollector:
    """Places item images under ``FOLDER/images/`` and records what went wrong."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.images = {}  # item token -> path relative to the dataset folder
        self.problems = []  # [item, source, problem]

    def _target(self, token, fmt):
        (self.folder / "images").mkdir(parents=True, exist_ok=True)
        return f"images/{safe_name(token)}{FORMAT_EXT.get(fmt, '.' + (fmt or 'img').lower())}"

    def add_file(self, token, path):
        """Copy the image file ``path`` for ``token`` (skipped if an identical copy exists)."""
        path = Path(path)
        if not path.is_file():
            return self.problems.append([token, str(path), "file not found"])
        fmt, reason = decode_check(path)
        if reason:
            return self.problems.append([token, str(path), f"broken image ({reason})"])
        rel = self._target(token, fmt)
        dest = self.folder / rel
        if not (dest.is_file() and dest.stat().st_size == path.stat().st_size):
            shutil.copyfile(path, dest)
        self.images[token] = rel

    def add_bytes(self, token, data, source):
        """Write encoded image ``data`` for ``token``."""
        fmt, reason = decode_check(data)
        if reason:
            return self.problems.append([token, source, f"broken image ({reason})"])
        rel = self._target(token, fmt)
        (self.folder / rel).write_bytes(data)
        self.images[token] = rel

    def missing(self, token, source, problem):
        self.problems.append([token, source, problem])


def folder_index(folder):
    """``{file stem: path}`` of the image files in ``folder`` (``<item>.jpg`` etc.)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConversionError(f"image folder not found: {folder}")
    index = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, ext = os.path.splitext(entry.name)
            if ext.lower() in IMAGE_EXTS and entry.is_file():
                index.setdefault(stem, entry.path)
    return index


def image_map(path):
    """``{item id: image path}`` of a two-column CSV or TSV file (``item_id, image``): an
    optional header row naming the columns, paths relative to the map's folder or absolute."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"image map not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    delimiter = "\t" if "\t" in text.split("\n", 1)[0] else ","
    mapping = {}
    for line_no, fields in enumerate(csv.reader(text.splitlines(), delimiter=delimiter), start=1):
        if not fields or not any(f.strip() for f in fields):
            continue
        if len(fields) != 2:
            raise ConversionError(f"{path}, line {line_no}: expected two columns (item id, image file), "
                                  f"found {len(fields)}")
        item, image = (f.strip() for f in fields)
        if line_no == 1 and item.lower() in ("item_id", "item", "id") and not (path.parent / image).is_file():
            continue  # the header row
        mapping.setdefault(item, str(path.parent / image))
    return mapping


# --------------------------------------------------------------------- LMDB
class _LMDBImage:
    """Stand-in for the ``LMDB_Image`` class pickled into PMMRec/NineRec LMDB files."""


class _LMDBUnpickler(pickle.Unpickler):
    """Unpickles only ``LMDB_Image`` objects (raw pixels), never arbitrary classes."""

    ALLOWED = {("copyreg", "_reconstructor"), ("builtins", "object")}

    def find_class(self, module, name):
        if name == "LMDB_Image":
            return _LMDBImage
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in an LMDB value")


def lmdb_value_to_image(value):
    """Encoded image bytes from an LMDB value: either encoded bytes already, or a pickled
    ``LMDB_Image`` (``image`` raw uint8 pixels, ``size`` (h, w), ``channels``) as in the
    PMMRec/NineRec release, re-encoded as JPEG."""
    if not value.startswith(b"\x80"):
        return value
    obj = _LMDBUnpickler(io.BytesIO(value)).load()
    (height, width), channels = obj.size, obj.channels
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    img = Image.frombytes(mode, (width, height), obj.image)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=95)
    return buf.getvalue()


def lmdb_keys(token):
    """Keys to try for an item: the id, and its number without a ``v`` prefix (PMMRec
    stores item ``v123`` under key ``123``)."""
    keys = [token]
    digits = token[1:] if token[:1] in "vV" else token
    if digits.isdigit():
        keys.append(str(int(digits)))
    return [k.encode("utf-8") for k in dict.fromkeys(keys)]


def add_lmdb_images(collector, lmdb_path, tokens):
    """Copy the images of ``tokens`` found in the LMDB at ``lmdb_path``; returns the tokens
    that have no key there."""
    try:
        import lmdb
    except ImportError:
        raise ConversionError("reading images from an LMDB needs the optional 'lmdb' package "
                              "(pip install lmdb), or pass an image folder instead") from None
    lmdb_path = Path(lmdb_path)
    if not lmdb_path.exists():
        raise ConversionError(f"LMDB not found: {lmdb_path}")
    env = lmdb.open(str(lmdb_path), readonly=True, lock=False, readahead=False,
                    subdir=lmdb_path.is_dir())
    absent = []
    try:
        with env.begin() as txn:
            for token in tokens:
                value = next((v for v in map(txn.get, lmdb_keys(token)) if v is not None), None)
                if value is None:
                    absent.append(token)
                    continue
                try:
                    data = lmdb_value_to_image(bytes(value))
                except Exception as err:
                    collector.missing(token, str(lmdb_path), f"broken LMDB value ({err})")
                    continue
                collector.add_bytes(token, data, str(lmdb_path))
    finally:
        env.close()
    return absent


# ------------------------------------------------------------------ downloads
def url_target(token, url):
    """Where the image of ``token`` downloaded from ``url`` goes (relative path)."""
    ext = os.path.splitext(urllib.parse.urlparse(url).path)[1].lower()
    return f"images/{safe_name(token)}{ext if ext in IMAGE_EXTS else '.jpg'}"


def present_download(folder, token, url):
    """The relative path of an already downloaded, decodable image for ``url``, else None."""
    rel = url_target(token, url)
    path = Path(folder) / rel
    return rel if path.is_file() and decode_check(path)[1] is None else None


def fetch(url, timeout=30, retries=2, backoff=1.0):
    """``(bytes, None)`` or ``(None, reason)``; transient failures are retried with
    exponential back-off, a 404 or other client error is not."""
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        return None, f"not an http(s) URL: {url}"
    reason = None
    for attempt in range(retries + 1):
        try:
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                data = response.read(MAX_BYTES + 1)
            if len(data) > MAX_BYTES:
                return None, f"larger than {MAX_BYTES} bytes"
            return data, None
        except urllib.error.HTTPError as err:
            reason = f"HTTP {err.code}"
            if err.code not in RETRY_HTTP:
                return None, reason
        except (urllib.error.URLError, OSError) as err:
            reason = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
        if attempt < retries:
            time.sleep(backoff * 2**attempt)
    return None, f"{reason} (after {retries + 1} tries)"


def _download_one(url, path, timeout, retries, backoff):
    data, reason = fetch(url, timeout, retries, backoff)
    if data is None:
        return reason
    _, reason = decode_check(data)
    if reason:
        return f"not a decodable image ({reason})"
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    os.replace(part, path)
    return None


def download_images(folder, workers=8, retries=2, timeout=30, backoff=1.0, progress=True):
    """Download the images listed in ``FOLDER/NAME.image_urls.tsv`` into ``FOLDER/images``.

    Resumable: an image already present and decodable is not fetched again. The content
    file is updated to reference each downloaded image (and ``NAME.yaml``'s
    ``item_modalities`` to include images once any is present), the failures are written to
    ``NAME.image_report.tsv``, and the counts to ``NAME.summary.json``. Returns the counts.
    """
    folder = Path(folder)
    name = folder.name
    manifest = folder / f"{name}.image_urls.tsv"
    content = folder / f"{name}.content.jsonl"
    for path in (manifest, content):
        if not path.is_file():
            raise ConversionError(f"{path} not found: run the conversion into {folder} first")
    urls = {row[0]: row[1] for row in atomic.read_tsv(manifest) if len(row) >= 2 and row[1]}
    (folder / "images").mkdir(exist_ok=True)
    done, todo = {}, []
    for token, url in urls.items():
        rel = present_download(folder, token, url)
        if rel:
            done[token] = rel
        else:
            todo.append(token)
    failed = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(_download_one, urls[t], folder / url_target(t, urls[t]), timeout,
                               retries, backoff): t for t in todo}
        for future in tqdm(as_completed(futures), total=len(futures), desc="images",
                           disable=not progress, leave=False):
            token = futures[future]
            reason = future.result()
            if reason:
                failed[token] = reason
            else:
                done[token] = url_target(token, urls[token])
    rows = atomic.read_content(content)
    for row in rows:
        token = row["item_id"]
        if token in done:
            row["image"] = done[token]
        elif token in failed and not (row.get("image") and (folder / row["image"]).is_file()):
            row["image"] = None
    atomic.rewrite_content(content, rows)
    atomic.update_modalities(folder / f"{name}.yaml", atomic.content_modalities(rows))
    report = folder / f"{name}.image_report.tsv"
    kept = [r for r in atomic.read_tsv(report) if r[0] not in urls]
    atomic.write_tsv(report, REPORT_HEADER,
                     kept + [[t, urls[t], reason] for t, reason in sorted(failed.items())])
    stats = {"urls": len(urls), "already_present": len(urls) - len(todo),
             "downloaded": len(todo) - len(failed), "failed": len(failed),
             "report": report.name}
    _update_summary(folder / f"{name}.summary.json", rows, stats, len(kept) + len(failed))
    if failed:
        log.warning("%d of %d images could not be downloaded; see %s", len(failed), len(urls),
                    report)
    return stats


def _update_summary(path, rows, stats, problems):
    summary = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    summary["items_with_image"] = sum(1 for r in rows if r.get("image"))
    images = summary.setdefault("images", {})
    images["download"] = stats
    images["problems"] = problems
    with atomic.replace_when_done(path) as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
        f.write("\n")
