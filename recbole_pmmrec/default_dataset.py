"""The bundled default dataset ``ml-100k-text``, built from the ml-100k copy in RecBole's wheel.

Interactions are RecBole's ``ml-100k.inter`` unchanged; each movie's text is
"<title> (<year>). Genres: <g1>, <g2>." There are no images. Nothing is committed: the
folder is written under ``data_path`` the first time the dataset is asked for.
"""

import json
import os
import shutil
from logging import getLogger
from pathlib import Path

import recbole

DEFAULT_DATASET = "ml-100k-text"
_SOURCE = Path(recbole.__file__).resolve().parent / "dataset_example" / "ml-100k"


def movie_text(title, year, genres):
    """The item text of one movie: title, year and genres in one readable sentence."""
    text = title.strip()
    if year.strip():
        text += f" ({year.strip()})"
    genre_list = genres.split()
    if genre_list:
        text += ". Genres: " + ", ".join(genre_list)
    return text + "."


def build_default_dataset(folder):
    """Write ``ml-100k-text.inter`` and ``ml-100k-text.content.jsonl`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp_inter = folder / f"{DEFAULT_DATASET}.inter.tmp"
    shutil.copyfile(_SOURCE / "ml-100k.inter", tmp_inter)
    tmp_content = folder / f"{DEFAULT_DATASET}.content.jsonl.tmp"
    with open(_SOURCE / "ml-100k.item", encoding="utf-8") as src, open(
        tmp_content, "w", encoding="utf-8"
    ) as dst:
        header = src.readline().rstrip("\n").split("\t")
        columns = [h.split(":")[0] for h in header]
        for line in src:
            row = dict(zip(columns, line.rstrip("\n").split("\t")))
            text = movie_text(row["movie_title"], row.get("release_year", ""), row.get("class", ""))
            dst.write(json.dumps({"item_id": row["item_id"], "text": text}, ensure_ascii=False) + "\n")
    # rename last, so an interrupted build is redone instead of half-read
    os.replace(tmp_content, folder / f"{DEFAULT_DATASET}.content.jsonl")
    os.replace(tmp_inter, folder / f"{DEFAULT_DATASET}.inter")
    return folder


def ensure_default_dataset(dataset, data_path):
    """Build the default dataset into ``data_path`` if ``dataset`` names it and it is absent."""
    if dataset != DEFAULT_DATASET:
        return
    if (Path(data_path) / f"{DEFAULT_DATASET}.inter").is_file():
        return
    getLogger().info(f"building the default dataset {DEFAULT_DATASET} from RecBole's ml-100k into {data_path}")
    build_default_dataset(data_path)
