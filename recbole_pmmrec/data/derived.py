"""Datasets derived from PMMRec datasets (``NAME.inter`` + ``NAME.content.jsonl``) on disk.

- :func:`prepare_dataset`: writes the dataset a config names when it is derived (the bundled
  default ``ml-100k-text``, or several sources merged), before RecBole reads it.
- :func:`build_default_dataset`: the bundled ``ml-100k-text`` from RecBole's ml-100k (by the
  MovieLens converter).
- :func:`merge_sources`: several source datasets mixed into one pre-training dataset, users
  and items prefixed with their source so identities never collide.
- :func:`make_cold_start_dataset`: a copy in which some items occur only as users' last
  interaction, so with leave-one-out splitting they are test targets never seen in training.
- :func:`make_transfer_split`: the README's worked example: disjoint user groups, two
  disjoint halves of the catalogue, source datasets on one half and a target on the other.

Files are written like the converters write them (:mod:`dataset_converters.atomic`): through
a temporary file renamed into place, so an interrupted run never leaves a half-written
dataset under the final name, and two runs preparing the same dataset at once each rename
complete files.
"""

import os
import random
from logging import getLogger
from pathlib import Path

import pandas as pd

from dataset_converters.atomic import replace_when_done, write_content
from recbole_pmmrec.data.content import ContentError, read_content_file

DEFAULT_DATASET = "ml-100k-text"

SOURCE_SEPARATOR = "|"  # merged tokens are "<source>|<token>"
REQUIRED_COLUMNS = ("user_id", "item_id")


def prepare_dataset(config):
    """Write the dataset ``config`` names if it is derived and not on disk yet: the bundled
    default, or (``source_datasets``) the merged pre-training dataset of several sources."""
    sources = config["source_datasets"]
    if sources:
        root = Path(config["data_path"]).parent
        for source in sources:
            if source == DEFAULT_DATASET:
                ensure_default_dataset(root / source)
        merge_sources(root, sources, config["dataset"])
    elif config["dataset"] == DEFAULT_DATASET:
        ensure_default_dataset(config["data_path"])


def ensure_default_dataset(folder):
    """Build the bundled default dataset into ``folder`` unless it is complete: the
    converter writes its summary last, so a build that was killed, or is still running in
    another process, is built (again) here."""
    if (Path(folder) / f"{DEFAULT_DATASET}.summary.json").is_file():
        return
    getLogger().info(f"building the default dataset {DEFAULT_DATASET} from RecBole's ml-100k into {folder}")
    build_default_dataset(folder)


def build_default_dataset(folder):
    """``ml-100k-text`` into ``folder``, by the MovieLens converter from RecBole's ml-100k:
    the ratings in their file order (RecBole numbers users and items by first appearance)
    and per movie the converter's text "<title> (<year>). Genres: <g1>, <g2>." (no images)."""
    from dataset_converters import convert

    convert("movielens", None, folder, name=DEFAULT_DATASET, keep_order=True, progress=False)
    return Path(folder)


def read_inter(path):
    """An atomic ``.inter`` file as strings (values kept verbatim), columns named without
    their ``:type``; returns ``(frame, {column: "name:type" header})``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"interaction file not found: {path}")
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    headers = {h.split(":")[0]: h for h in frame.columns}
    frame.columns = list(headers)
    missing = [c for c in REQUIRED_COLUMNS if c not in headers]
    if missing:
        raise ContentError(f"{path}, line 1: the header lacks the field(s) {missing} (has {list(headers)})")
    return frame, headers


def write_inter(path, frame, headers):
    with replace_when_done(path) as f:
        f.write("\t".join(headers[c] for c in frame.columns) + "\n")
        frame.to_csv(f, sep="\t", header=False, index=False, lineterminator="\n")


def _dataset_files(root, name):
    folder = Path(root) / name
    return folder, folder / f"{name}.inter", folder / f"{name}.content.jsonl"


def _rebased_content(source_folder, content, tokens, target_folder, prefix=""):
    """``{prefix + token: (text, image)}`` for ``tokens``, image paths rebased onto ``target_folder``."""
    entries = {}
    for token in tokens:
        text, image, _ = content.get(token, (None, None, None))
        if image is not None:
            image = os.path.relpath(Path(source_folder) / image, target_folder)
        entries[prefix + token] = (text, image)
    return entries


def _write_content(path, entries):
    write_content(path, list(entries), {t: e[0] for t, e in entries.items()}, {t: e[1] for t, e in entries.items()})


def _write_derived(source_folder, content, name, frame, headers):
    """Dataset ``name`` beside ``source_folder``: ``frame``'s interactions and its items' content."""
    folder, inter_path, content_path = _dataset_files(source_folder.parent, name)
    folder.mkdir(parents=True, exist_ok=True)
    _write_content(content_path, _rebased_content(source_folder, content, sorted(set(frame["item_id"])), folder))
    write_inter(inter_path, frame, headers)


def _sort_by_time(frame, path, require_time=False):
    """``frame`` with a ``_t`` column (its timestamp, else the file order), sorted by user
    then ``_t``."""
    if "timestamp" in frame.columns:
        order = frame["timestamp"].astype(float)
    elif require_time:
        raise ContentError(f"{path}, line 1: ordering by time needs a timestamp field (has {list(frame.columns)})")
    else:
        order = range(len(frame))
    return frame.assign(_t=order).sort_values(["user_id", "_t"], kind="stable")


def source_of(token):
    """The source dataset of a merged user or item token."""
    return str(token).split(SOURCE_SEPARATOR, 1)[0]


def merge_sources(root, sources, name):
    """Write dataset ``name`` under ``root`` mixing the datasets ``sources`` (all under ``root``).

    Users and items become ``<source>|<token>``: the same raw id in two sources is two
    users / two items. Columns are those every source has. Image paths point into the
    sources' folders. Skipped when the merged files are newer than every source file.
    """
    if len(sources) < 2 or len(set(sources)) != len(sources):
        raise ValueError(f"source_datasets needs at least two distinct datasets, got {sources}")
    if any(SOURCE_SEPARATOR in s for s in sources):
        raise ValueError(f"source dataset names cannot contain {SOURCE_SEPARATOR!r}: {sources}")
    folder, inter_path, content_path = _dataset_files(root, name)
    inputs = [p for s in sources for p in _dataset_files(root, s)[1:]]
    if inter_path.is_file() and content_path.is_file():
        newest_input = max(p.stat().st_mtime for p in inputs if p.is_file())
        if min(inter_path.stat().st_mtime, content_path.stat().st_mtime) >= newest_input:
            return folder
    folder.mkdir(parents=True, exist_ok=True)
    frames, headers, entries = [], {}, {}
    for source in sources:
        source_folder, source_inter, source_content = _dataset_files(root, source)
        frame, source_headers = read_inter(source_inter)
        content = read_content_file(source_content)
        for column in REQUIRED_COLUMNS:
            frame[column] = source + SOURCE_SEPARATOR + frame[column]
        frames.append(frame)
        headers = source_headers if not headers else {c: h for c, h in headers.items() if c in source_headers}
        items = sorted(set(frame["item_id"].str.split(SOURCE_SEPARATOR, n=1).str[1]))
        entries.update(_rebased_content(source_folder, content, items, folder, prefix=source + SOURCE_SEPARATOR))
        getLogger().info(f"source {source}: {len(frame)} interactions, {len(items)} items")
    merged = pd.concat([f[list(headers)] for f in frames], ignore_index=True)
    _write_content(content_path, entries)
    write_inter(inter_path, _sort_by_time(merged, inter_path).drop(columns="_t"), headers)
    getLogger().info(f"merged {sources} into {folder}: {len(merged)} interactions")
    return folder


def make_cold_start_dataset(root, dataset, name=None, cold_ratio=0.2, by="time", seed=2024, min_length=3):
    """Write ``name`` (default ``<dataset>-cold``): a share ``cold_ratio`` of the items is
    cold (``by="time"``: the items first seen last; ``"random"``), and each user's history
    is cut right after the user's first cold interaction.

    Cold items then occur only as a user's last interaction: under leave-one-out they are
    test targets that never appear in training or validation. Users left with fewer than
    ``min_length`` interactions are dropped (leave-one-out would put their last item into
    training). Users without a cold interaction keep their whole history (their test
    targets are warm; evaluate with ``test_items: unseen`` to keep only the cold ones).
    Returns the set of cold item tokens that remain.
    """
    name = name or f"{dataset}-cold"
    source_folder, inter_path, content_path = _dataset_files(root, dataset)
    frame, headers = read_inter(inter_path)
    frame = _sort_by_time(frame, inter_path, require_time=by == "time")
    items = frame["item_id"].unique()
    n_cold = max(1, round(cold_ratio * len(items)))
    if by == "time":
        first_seen = frame.groupby("item_id", sort=False)["_t"].min().sort_values(kind="stable")
        cold = set(first_seen.index[-n_cold:])
    elif by == "random":
        cold = set(random.Random(seed).sample(sorted(items), n_cold))
    else:
        raise ValueError(f"by must be 'time' or 'random', got {by!r}")
    is_cold = frame["item_id"].isin(cold)
    # rank of each interaction among the user's cold ones: keep those up to the first cold
    cold_before = is_cold.astype(int).groupby(frame["user_id"]).cumsum() - is_cold.astype(int)
    kept = frame[cold_before == 0].drop(columns="_t")
    kept = kept[kept.groupby("user_id")["item_id"].transform("size") >= min_length]
    cold &= set(kept["item_id"])
    _write_derived(source_folder, read_content_file(content_path), name, kept, headers)
    getLogger().info(
        f"{name}: {len(cold)} cold items, {int(kept['item_id'].isin(cold).sum())} users end on one; "
        f"{len(kept)} of {len(frame)} interactions kept"
    )
    return cold


def make_transfer_split(root, dataset, n_sources=2, seed=2024):
    """The worked transfer example: users are split at random into ``n_sources + 1`` equal
    groups and items into two random halves. Source ``k`` (``<dataset>-src<k>``) holds group
    ``k``'s interactions with the first half; the target (``<dataset>-tgt``) holds the last
    group's interactions with the other half: no user and no item is shared with a source.
    Returns ``(source names, target name)``."""
    source_folder, inter_path, content_path = _dataset_files(root, dataset)
    frame, headers = read_inter(inter_path)
    rng = random.Random(seed)
    users = sorted(set(frame["user_id"]))
    items = sorted(set(frame["item_id"]))
    rng.shuffle(users)
    rng.shuffle(items)
    group = {u: k * (n_sources + 1) // len(users) for k, u in enumerate(users)}
    target_half = set(items[len(items) // 2:])
    content = read_content_file(content_path)
    names = [f"{dataset}-src{k + 1}" for k in range(n_sources)] + [f"{dataset}-tgt"]
    user_group = frame["user_id"].map(group)
    in_target_half = frame["item_id"].isin(target_half)
    for k, name in enumerate(names):
        is_target = k == n_sources
        part = frame[(user_group == k) & (in_target_half if is_target else ~in_target_half)]
        _write_derived(source_folder, content, name, part, headers)
        getLogger().info(f"{name}: {len(part)} interactions, {part['user_id'].nunique()} users, "
                         f"{part['item_id'].nunique()} items")
    return names[:-1], names[-1]
