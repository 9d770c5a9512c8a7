"""The transfer experiment of the README, on the bundled data: ``pmmrec-transfer``.

1. Split ``ml-100k-text`` into two source datasets and a target that shares no user and no
   item with them (:func:`~recbole_pmmrec.data.derived.make_transfer_split`).
2. Pre-train PMMRec on both sources mixed in one run.
3. On the target: SASRec and PMMRec from scratch, PMMRec zero-shot (the checkpoint, no
   training) and PMMRec fine-tuned from the checkpoint, on identical splits and metrics.
4. Cold-start: a copy of ``ml-100k-text`` whose newest items occur only as test targets
   (:func:`~recbole_pmmrec.data.derived.make_cold_start_dataset`); PMMRec beside SASRec
   on those test rows (``test_items: unseen``).

Every run is a ``run_recbole`` in its own process. Each seed (which also draws the split)
writes ``<output>/seed_<seed>/transfer.md``; ``<output>/transfer.md`` gives mean ± std over
the seeds.
"""

import argparse
import csv
import sys
import time
from pathlib import Path

import yaml

from dataset_converters.atomic import write_text
from recbole_pmmrec.config import Config, properties_dir
from recbole_pmmrec.data.derived import (
    DEFAULT_DATASET, make_cold_start_dataset, make_transfer_split, prepare_dataset,
)
from recbole_pmmrec.experiments.benchmark import DEFAULTS, benchmark, resolve_shared
from recbole_pmmrec.experiments.report import markdown_table, summarize, write_csv
from recbole_pmmrec.experiments.runner import command_line, run_isolated, run_row


def _prepared_root(dataset, data_path):
    """The folder holding the dataset folders (as RecBole resolves ``data_path``), with
    ``dataset`` written there if it is the bundled default."""
    config = Config("PMMRec", dataset, config_dict={"data_path": data_path} if data_path else None)
    prepare_dataset(config)
    return Path(config["data_path"]).resolve().parent


def _run(label, model, dataset, files, config_dict, threads):
    print(f"{label} on {dataset} ...", flush=True)
    start = time.perf_counter()
    result = run_isolated(model, dataset, files, config_dict, threads)
    row = {"model": label, **run_row(result), "by_source": result.get("test_result_by_source") or {}}
    row["command"] = command_line(model, dataset, files, config_dict)
    print(f"{label}: {row['status']}, {time.perf_counter() - start:.0f} s", flush=True)
    if row["status"] != "ok":
        raise RuntimeError(f"{label} failed: {row['status']} (log: {row.get('log_file')})")
    return row


def transfer_experiment(output="bench_out/transfer", data_path=None, epochs=10, seed=2020, threads=None,
                        cold_ratio=0.2, dataset=DEFAULT_DATASET, overlay="cpu", **settings):
    """Run the four steps above on ``dataset``; PMMRec runs get ``properties/overlays/<overlay>.yaml``,
    every run gets ``settings``. Returns ``(target rows, cold-start rows)``."""
    start = time.perf_counter()
    output = Path(output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    root = _prepared_root(dataset, data_path)
    sources, target = make_transfer_split(root, dataset, n_sources=2, seed=seed)
    make_cold_start_dataset(root, dataset, cold_ratio=cold_ratio, by="time")
    overlay_files = [str(properties_dir() / "overlays" / f"{overlay}.yaml")] if overlay else []
    # the derived datasets take the whole dataset's settings (filtering, history length)
    dataset_file = properties_dir() / "dataset" / f"{dataset}.yaml"
    dataset_settings = yaml.safe_load(dataset_file.read_text(encoding="utf-8")) if dataset_file.is_file() else {}
    common = {**dataset_settings, **settings, "data_path": str(root) + "/", "epochs": epochs, "seed": seed,
              "checkpoint_dir": str(output / "saved")}

    pretrain = _run("PMMRec pre-trained on sources", "PMMRec", ",".join(sources), overlay_files,
                    {**DEFAULTS, **common}, threads)
    checkpoint = pretrain["saved_model_file"]

    shared = resolve_shared(target, [], {k: v for k, v in common.items() if k != "seed"})
    shared_file = output / "shared.yaml"
    write_text(shared_file, yaml.safe_dump(shared, sort_keys=False))
    variants = [
        ("SASRec (scratch)", "SASRec", [], {"train_neg_sample_args": None}),
        ("PMMRec (scratch)", "PMMRec", overlay_files, {}),
        ("PMMRec (zero-shot)", "PMMRec", overlay_files, {"transfer_from": checkpoint, "epochs": 0}),
        ("PMMRec (fine-tuned)", "PMMRec", overlay_files, {"transfer_from": checkpoint}),
    ]
    rows = [_run(label, model, target, files + [str(shared_file)], {"seed": seed, **extra}, threads)
            for label, model, files, extra in variants]
    write_csv(output / "target.csv", [pretrain] + rows)

    pmmrec = f"PMMRec[{overlay}]" if overlay else "PMMRec"
    cold_rows = benchmark(f"{dataset}-cold", [pmmrec, "SASRec"], seeds=[seed],
                          output=output / "cold_start", threads=threads, test_items="unseen", **common)
    metric = shared["valid_metric"].lower()
    source_lines = "\n".join(
        f"- test on `{s}` alone (its own items ranked): {metric} {r[metric]:.4f}" for s, r in pretrain["by_source"].items()
    )
    report = (
        f"# Transfer on {dataset}\n\n"
        f"Sources {sources} (pre-training, mixed in one run), target `{target}` (no shared user or item).\n"
        f"Pre-training: {pretrain['epochs']} epochs, {pretrain['s_per_epoch']:.1f} s/epoch, "
        f"test {metric} {pretrain['test_' + metric]:.4f} on the merged sources.\n{source_lines}\n\n"
        f"## Target `{target}`\n\n{markdown_table(rows, shared['valid_metric'])}\n\n"
        f"## Cold-start items (`{dataset}-cold`, test targets never seen in training)\n\n"
        f"The newest {cold_ratio:.0%} of items (by first interaction) occur only as users' last interaction; "
        f"{int(cold_rows[0].get('n_test_rows', 0))} test rows have such a target.\n\n"
        f"{markdown_table(cold_rows, shared['valid_metric'])}\n\n"
        f"Commands: target.csv and cold_start/runs.csv. Total {time.perf_counter() - start:.0f} s.\n"
    )
    write_text(output / "transfer.md", report)
    print("\n" + report)
    return rows, cold_rows


def _read_csv(path):
    def value(text):
        try:
            return float(text)
        except ValueError:
            return text

    with open(path, newline="", encoding="utf-8") as f:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(f)]


def transfer_experiments(seeds, output="bench_out/transfer", valid_metric=DEFAULTS["valid_metric"], **kwargs):
    """:func:`transfer_experiment` once per seed into ``<output>/seed_<seed>`` (a seed whose
    report exists is not run again), then the mean ± std over seeds of every row into
    ``<output>/transfer.md``. Returns that report."""
    output = Path(output)
    tables = {}
    for seed in seeds:
        folder = output / f"seed_{seed}"
        if not (folder / "transfer.md").is_file():
            transfer_experiment(output=folder, seed=seed, **kwargs)
        tables[seed] = (_read_csv(folder / "target.csv"), _read_csv(folder / "cold_start" / "benchmark.csv"))

    def over_seeds(index):
        labels = [row["model"] for row in tables[seeds[0]][index]]
        return [
            summarize(label, [{**tables[seed][index][i], "seed": seed} for seed in seeds])
            for i, label in enumerate(labels)
        ]

    target_rows, cold_rows = over_seeds(0), over_seeds(1)
    seed_text = ", ".join(map(str, seeds))
    report = (
        f"# Transfer: mean ± std over seeds {seed_text}\n\n"
        f"Each seed draws its own split (users and items) and initialisation; per-seed reports in "
        f"seed_<seed>/transfer.md.\n\n"
        f"## Pre-training on the sources (test on the merged sources)\n\n{markdown_table(target_rows[:1], valid_metric)}\n\n"
        f"## Target (no user and no item shared with the sources)\n\n{markdown_table(target_rows[1:], valid_metric)}\n\n"
        f"## Cold-start items (test targets never seen in training)\n\n{markdown_table(cold_rows, valid_metric)}\n"
    )
    write_text(output / "transfer.md", report)
    print("\n" + report)
    return report


def main(argv=None):
    """``pmmrec-transfer [--seeds=2020,2021,2022] [--epochs=10] [--output=bench_out/transfer] [--threads=N]``"""
    parser = argparse.ArgumentParser(prog="pmmrec-transfer", description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="bench_out/transfer")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", default="2020,2021,2022", help="comma-separated; each draws its own split")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run")
    parser.add_argument("--cold_ratio", type=float, default=0.2, help="share of items made cold")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    transfer_experiments(seeds, args.output, data_path=args.data_path, epochs=args.epochs, threads=args.threads,
                         cold_ratio=args.cold_ratio)
    return 0


if __name__ == "__main__":
    sys.exit(main())
