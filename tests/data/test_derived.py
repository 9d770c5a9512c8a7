"""Derived datasets on disk: merged sources, cold-start copies, transfer splits, written
atomically (a killed write, two runs preparing one dataset at once)."""

import json
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from recbole_pmmrec.data.content import read_content_file
from recbole_pmmrec.data.derived import (
    DEFAULT_DATASET, make_cold_start_dataset, make_transfer_split, merge_sources, prepare_dataset, read_inter,
)
from tests.conftest import write_tiny_dataset


def test_cold_start_items_are_only_last_interactions(tmp_path):
    write_tiny_dataset(tmp_path, name="warm", n_users=40, seed=6)
    cold = make_cold_start_dataset(tmp_path, "warm", cold_ratio=0.2, by="random", seed=1)
    inter, _ = read_inter(tmp_path / "warm-cold" / "warm-cold.inter")
    inter["t"] = inter["timestamp"].astype(float)
    last = inter.sort_values("t").groupby("user_id").tail(1)
    assert cold and set(inter.loc[inter["item_id"].isin(cold), "t"]) <= set(last["t"])
    assert inter["item_id"].isin(cold).sum() == last["item_id"].isin(cold).sum() > 0


def test_transfer_split_shares_no_user_and_no_item(tmp_path):
    write_tiny_dataset(tmp_path, name="whole", n_users=90, seed=8)
    sources, target = make_transfer_split(tmp_path, "whole", n_sources=2)
    frames = {name: read_inter(tmp_path / name / f"{name}.inter")[0] for name in (*sources, target)}
    source_users = set(pd.concat([frames[s] for s in sources])["user_id"])
    source_items = set(pd.concat([frames[s] for s in sources])["item_id"])
    assert not source_users & set(frames[target]["user_id"])
    assert not source_items & set(frames[target]["item_id"])
    assert all(len(f) > 0 for f in frames.values())


def test_merged_dataset_is_rebuilt_only_when_a_source_changes(tmp_path):
    write_tiny_dataset(tmp_path, name="a", n_users=5, seed=1, with_images=False)
    write_tiny_dataset(tmp_path, name="b", n_users=5, seed=2)
    folder = merge_sources(tmp_path, ["a", "b"], "a+b")
    content = [json.loads(line) for line in (folder / "a+b.content.jsonl").read_text().splitlines()]
    images = [row["image"] for row in content if row.get("image")]
    assert images and all(row["item_id"].startswith("b|") for row in content if row.get("image"))
    assert all((folder / image).is_file() for image in images)  # rebased onto the sources' folders
    stamp = (folder / "a+b.inter").stat().st_mtime_ns
    merge_sources(tmp_path, ["a", "b"], "a+b")
    assert (folder / "a+b.inter").stat().st_mtime_ns == stamp
    time.sleep(0.01)
    write_tiny_dataset(tmp_path, name="b", n_users=7, seed=2)
    merge_sources(tmp_path, ["a", "b"], "a+b")
    inter, _ = read_inter(folder / "a+b.inter")
    assert inter["user_id"].nunique() == 12
    with pytest.raises(ValueError, match="at least two distinct datasets"):
        merge_sources(tmp_path, ["a", "a"], "a+a")


def test_a_write_killed_midway_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "tiny.inter"
    path.write_text("previous\n", encoding="utf-8")
    writer = (
        "import os, signal, sys\n"
        "from dataset_converters.atomic import replace_when_done\n"
        "with replace_when_done(sys.argv[1]) as f:\n"
        "    f.write('half of the new file')\n"
        "    f.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    assert subprocess.run([sys.executable, "-c", writer, str(path)]).returncode == -signal.SIGKILL
    assert path.read_text(encoding="utf-8") == "previous\n"


# a run preparing a dataset that pauses after each file it writes: the dataset stays half-written a while
SLOW_PREPARER = """
import contextlib, json, sys, time
from dataset_converters import atomic
from recbole_pmmrec.data.derived import prepare_dataset

replace = atomic.replace_when_done


@contextlib.contextmanager
def slowly(path, **options):
    with replace(path, **options) as f:
        yield f
    time.sleep(0.5)


atomic.replace_when_done = slowly
prepare_dataset(json.loads(sys.argv[1]))
"""


@pytest.mark.parametrize("dataset", [DEFAULT_DATASET, "a+b"])
def test_two_runs_preparing_the_same_dataset_at_once_leave_it_whole(tmp_path, dataset):
    sources = ["a", "b"] if "+" in dataset else None
    for seed, source in enumerate(sources or []):
        write_tiny_dataset(tmp_path, name=source, n_users=200, seed=seed)
    folder = tmp_path / dataset
    config = {"dataset": dataset, "data_path": str(folder), "source_datasets": sources}
    first = subprocess.Popen([sys.executable, "-c", SLOW_PREPARER, json.dumps(config)])
    deadline = time.monotonic() + 120
    while not any(folder.glob(f"{dataset}.*")) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    prepare_dataset(config)  # the second run, while the first is writing
    content = read_content_file(folder / f"{dataset}.content.jsonl")
    inter, _ = read_inter(folder / f"{dataset}.inter")
    assert set(inter["item_id"]) <= set(content)
    assert first.wait(timeout=120) == 0
    assert not list(folder.glob(".*.tmp"))
