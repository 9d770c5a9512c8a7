"""One conversion: read a source, filter, place images, write the dataset and summary."""

import codecs
import dataclasses
import json
from pathlib import Path

from tqdm import tqdm

from . import atomic, images
from .issues import ConversionError, Issues, log
from .records import RawData
from .summary import build_summary, write_summary
from .text import TextTemplate


@dataclasses.dataclass
class Options:
    """Every conversion option (source-specific ones are ignored by other sources)."""

    name: str = None
    # text
    text_template: str = None
    text_fields: list = None
    # filters
    k_core: int = None
    user_core: int = None
    item_core: int = None
    min_seq_len: int = None
    max_seq_len: int = None
    min_rating: float = None
    keep_unknown_items: bool = False
    keep_order: bool = False  # write interactions in the input's order (RecBole numbers ids by first appearance)
    # reading
    strict: bool = False
    allow_truncated: bool = False  # convert the readable part of a truncated .gz file
    encoding: str = None
    meta: str = None          # amazon2018 / amazon2023: the meta_* file
    variant: str = "auto"     # movielens: 100k, 1m, latest, recbole
    items: str = None         # pmmrec / generic: the item file
    format: str = None        # generic: csv, tsv, jsonl
    delimiter: str = None     # generic
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = None
    time_format: str = "auto"
    rating_col: str = None
    text_cols: list = None
    image_col: str = None
    columns: list = None      # generic: column names of a headerless interaction file
    item_columns: list = None  # generic: column names of a headerless item file
    # images
    images: str = None        # folder of <item>.<ext>
    image_map: str = None     # CSV/TSV: item id -> image file
    lmdb: str = None
    download_images: bool = False
    workers: int = 8
    retries: int = 2
    timeout: float = 30.0
    progress: bool = True

    def non_default(self):
        defaults = Options()
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(defaults, f.name)}


def make_options(options):
    names = {f.name for f in dataclasses.fields(Options)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TypeError(f"unknown conversion option(s): {', '.join(unknown)}; "
                        f"known: {', '.join(sorted(names))}")
    opts = Options(**options)
    for field in ("text_fields", "text_cols", "columns", "item_columns"):
        value = getattr(opts, field)
        if isinstance(value, str):
            setattr(opts, field, [v.strip() for v in value.split(",") if v.strip()])
    for field in ("meta", "items", "images", "lmdb", "image_map"):
        if getattr(opts, field) is not None:
            setattr(opts, field, str(getattr(opts, field)))
    for field in ("k_core", "user_core", "item_core", "min_seq_len", "max_seq_len"):
        value = getattr(opts, field)
        if value is not None and value < 1:
            raise ConversionError(f"{field} must be at least 1, got {value}")
    if opts.text_template and opts.text_fields:
        raise ConversionError("give either a text template or text fields, not both")
    if opts.encoding:
        try:
            codecs.lookup(opts.encoding)
        except LookupError:
            raise ConversionError(f"unknown encoding {opts.encoding!r} (e.g. utf-8, latin-1, cp1252)") from None
    return opts


def dataset_folder(output, name):
    """``(folder, name)``: the dataset is written to ``output`` (named after it), or to
    ``output/name`` when a different ``name`` is given."""
    output = Path(output)
    if name and name != output.name:
        if "/" in name or "\\" in name or name in (".", ".."):
            raise ConversionError(f"dataset name {name!r} must be a plain folder name")
        return output / name, name
    if not output.name or output.name in (".", ".."):
        raise ConversionError(f"cannot name the dataset after {output}; give --name")
    return output, output.name


def run(source_module, source, input_path, output, options):
    """Convert and return the summary (see :func:`dataset_converters.convert`)."""
    opts = make_options(options)
    folder, name = dataset_folder(output, opts.name)
    if opts.text_template:
        template = TextTemplate(opts.text_template)
    elif opts.text_fields:
        template = TextTemplate.from_fields(opts.text_fields)
    else:
        template = TextTemplate(source_module.default_template(opts))
    data = RawData(Issues(opts.strict, opts.allow_truncated), template, opts.min_rating)
    inputs = source_module.read(input_path, opts, data)

    user_min = max(opts.user_core or opts.k_core or 1, opts.min_seq_len or 1)
    item_min = opts.item_core or opts.k_core or 1
    filtered = data.finalize(opts.keep_unknown_items, user_min, item_min, opts.max_seq_len, opts.keep_order)

    folder.mkdir(parents=True, exist_ok=True)
    collector, urls = place_images(opts, data, filtered.item_tokens, folder)
    texts = {t: info.text for t, info in data.item_info.items()}
    files = {"inter": f"{name}.inter", "content": f"{name}.content.jsonl"}
    atomic.write_inter(folder / files["inter"], filtered)
    if atomic.write_item(folder / f"{name}.item", filtered.item_tokens, data.item_info):
        files["item"] = f"{name}.item"
    atomic.write_content(folder / files["content"], filtered.item_tokens, texts, collector.images)
    image_info = {"copied_or_present": len(collector.images), "problems": len(collector.problems)}
    if urls:
        files["image_urls"] = image_info["manifest"] = f"{name}.image_urls.tsv"
        image_info["urls"] = len(urls)
        atomic.write_tsv(folder / files["image_urls"], ["item_id", "url"], sorted(urls.items()))
    if urls or collector.images or collector.problems:
        files["image_report"] = image_info["report"] = f"{name}.image_report.tsv"
        atomic.write_tsv(folder / files["image_report"], images.REPORT_HEADER, collector.problems)
    files["settings"] = f"{name}.yaml"
    modalities = atomic.content_modalities(
        [{"text": texts.get(t), "image": collector.images.get(t)} for t in filtered.item_tokens])
    atomic.write_settings(folder / files["settings"], name, modalities, user_min, item_min)
    files["summary"] = f"{name}.summary.json"
    for stale in (f"{name}.item", f"{name}.image_urls.tsv", f"{name}.image_report.tsv"):
        if stale not in files.values():  # left by an earlier conversion into this folder
            (folder / stale).unlink(missing_ok=True)
    summary = build_summary(name, source, opts.non_default(), data, filtered, texts, collector,
                            {"output": str(folder), "inputs": inputs, "files": files})
    summary["images"].update(image_info)
    unseen = template.unseen_fields()
    if unseen:
        log.warning("text template fields never present in any item: %s", ", ".join(unseen))
    write_summary(folder / files["summary"], summary)
    if opts.download_images and urls:
        images.download_images(folder, opts.workers, opts.retries, opts.timeout,
                                progress=opts.progress)
        summary = json.loads((folder / files["summary"]).read_text(encoding="utf-8"))
    return summary


def place_images(opts, data, tokens, folder):
    """Copy each kept item's image (explicit file, ``--images`` folder, then LMDB) into
    ``folder/images``; items with only a URL go to the returned ``{item: url}`` manifest
    (already downloaded images from an earlier run are reused)."""
    collector = images.ImageCollector(folder)
    index = {data.token(k): v for k, v in images.image_map(opts.image_map).items()} if opts.image_map else {}
    if opts.images:
        index = {**images.folder_index(opts.images), **index}
    from_lmdb, no_image = [], []
    copying = bool(opts.images or opts.image_map or any(i.image_file for i in data.item_info.values()))
    for token in tqdm(tokens, desc="images", disable=not (opts.progress and copying), leave=False):
        info = data.item_info.get(token)
        if info is not None and info.image_file:
            collector.add_file(token, info.image_file)
        elif token in index:
            collector.add_file(token, index[token])
        elif opts.lmdb:
            from_lmdb.append(token)
        else:
            no_image.append(token)
    if from_lmdb:
        no_image += images.add_lmdb_images(collector, opts.lmdb, from_lmdb)
    urls = {}
    for token in no_image:
        info = data.item_info.get(token)
        if info is not None and info.image_url:
            urls[token] = info.image_url
            present = images.present_download(folder, token, info.image_url)
            if present:
                collector.images[token] = present
    if opts.images or opts.image_map or opts.lmdb or urls or collector.images:
        where = opts.lmdb or opts.image_map or opts.images or data.item_file or "the source"
        for token in no_image:
            if token not in urls:
                collector.missing(token, str(where), "no image for this item in the source")
    return collector, urls
