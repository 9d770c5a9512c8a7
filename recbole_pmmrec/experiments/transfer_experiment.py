"""The transfer experiment of the README, on the bundled data: ``pmmrec-transfer``.

1. Split ``ml-100k-text`` into two source datasets and a target that shares no user and no
   item with them (:func:`~recbole_pmmrec.data.derived.make_transfer_split`).
2. Pre-train PMMRec on both sources mixed in one run.
3. On the target: SASRec and PMMRec from scratch, PMMRec zero-shot (the checkpoint, no
   training) and PMMRec fine-tuned from the checkpoint, on identical splits and metrics.
4. Cold-start: a copy of ``ml-100k-text`` whose newest items occur only as test targets
   (:func:`~recbole_pmmrec.data.derived.make_cold_start_dataset`); PMMRec beside SASRec
   on those test rows (``test_items: unseen``).

With ``--fractions`` (the low-data curve) steps 3 and 4 become: PMMRec zero-shot, then for
each fraction of the target's training users (``train_user_fraction``) PMMRec from scratch
and fine-tuned (SASRec too with ``--curve_sasrec``), each with early stopping.

Every run is a ``run_recbole`` in its own process. Each seed (which also draws the split)
writes ``<output>/seed_<seed>/transfer.md`` (the curve: ``transfer_curve.md``);
``<output>/transfer.md`` (``transfer_curve.md`` and ``transfer_curve.png``) gives mean ± std
over the seeds.
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
from recbole_pmmrec.experiments.benchmark import DEFAULTS, benchmark, parse_model, resolve_shared
from recbole_pmmrec.experiments.report import cell, markdown_table, pyplot, save_line_plot, summarize, write_csv
from recbole_pmmrec.experiments.runner import command_line, run_isolated, run_row
from recbole_pmmrec.validation import RULES, SettingsError

SASREC, SCRATCH = "SASRec (scratch)", "PMMRec (scratch)"
ZERO_SHOT, FINE_TUNED = "PMMRec (zero-shot)", "PMMRec (fine-tuned)"
# the models the curve trains at each fraction: label -> column name
CURVE_MODELS = {SASREC: "SASRec", SCRATCH: "scratch", FINE_TUNED: "fine-tuned"}
CURVE_RUNS = "curve.csv"  # per seed: one row per run of the curve


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
    row = {"model": label, **run_row(result), "by_source": result.get("test_result_by_source") or {},
           "train_users": result.get("train_users")}
    row["command"] = command_line(model, dataset, files, config_dict)
    print(f"{label}: {row['status']}, {time.perf_counter() - start:.0f} s", flush=True)
    if row["status"] != "ok":
        raise RuntimeError(f"{label} failed: {row['status']} (log: {row.get('log_file')})")
    return row


def _target_variants(overlay_files, checkpoint):
    """label -> (model, config files, settings) of the runs on the target."""
    return {
        SASREC: ("SASRec", [], {"train_neg_sample_args": None}),
        SCRATCH: ("PMMRec", overlay_files, {}),
        ZERO_SHOT: ("PMMRec", overlay_files, {"transfer_from": checkpoint, "epochs": 0}),
        FINE_TUNED: ("PMMRec", overlay_files, {"transfer_from": checkpoint}),
    }


def curve_labels(curve_sasrec):
    """The models trained at each fraction of the curve."""
    return [label for label in CURVE_MODELS if curve_sasrec or label != SASREC]


def transfer_experiment(output="bench_out/transfer", data_path=None, epochs=10, seed=2020, threads=None,
                        cold_ratio=0.2, dataset=DEFAULT_DATASET, overlay="cpu", fractions=None, curve_sasrec=False,
                        **settings):
    """Run the four steps above on ``dataset`` (with ``fractions``: the curve after step 2);
    PMMRec runs get ``properties/overlays/<overlay>.yaml``, every run gets ``settings``.
    Returns ``(target rows, cold-start rows)``, or the curve's runs."""
    start = time.perf_counter()
    output = Path(output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    root = _prepared_root(dataset, data_path)
    sources, target = make_transfer_split(root, dataset, n_sources=2, seed=seed)
    overlay_files = parse_model(f"PMMRec[{overlay}]")[1] if overlay else []
    # the derived datasets take the whole dataset's settings (filtering, history length)
    dataset_file = properties_dir() / "dataset" / f"{dataset}.yaml"
    dataset_settings = yaml.safe_load(dataset_file.read_text(encoding="utf-8")) if dataset_file.is_file() else {}
    common = {**dataset_settings, **settings, "data_path": str(root) + "/", "epochs": epochs, "seed": seed,
              "checkpoint_dir": str(output / "saved")}

    pretrain = _run("PMMRec pre-trained on sources", "PMMRec", ",".join(sources), overlay_files,
                    {**DEFAULTS, **common}, threads)
    shared = resolve_shared(target, [], {k: v for k, v in common.items() if k != "seed"})
    shared_file = output / "shared.yaml"
    write_text(shared_file, yaml.safe_dump(shared, sort_keys=False))
    variants = _target_variants(overlay_files, pretrain["saved_model_file"])

    def run(label, **extra):
        model, files, variant_settings = variants[label]
        config_dict = {"seed": seed, **variant_settings, **extra}
        return {**_run(label, model, target, files + [str(shared_file)], config_dict, threads), "seed": seed}

    metric = shared["valid_metric"].lower()
    source_lines = "\n".join(
        f"- test on `{s}` alone (its own items ranked): {metric} {r[metric]:.4f}" for s, r in pretrain["by_source"].items()
    )
    pretrain_text = (
        f"Sources {sources} (pre-training, mixed in one run), target `{target}` (no shared user or item).\n"
        f"Pre-training: {pretrain['epochs']} epochs, {pretrain['s_per_epoch']:.1f} s/epoch, "
        f"test {metric} {pretrain['test_' + metric]:.4f} on the merged sources.\n{source_lines}\n\n"
    )
    if fractions:
        runs = [{**run(ZERO_SHOT), "fraction": 0.0}]  # no training user
        runs += [{**run(label, train_user_fraction=fraction), "fraction": fraction}
                 for fraction in fractions for label in curve_labels(curve_sasrec)]
        write_csv(output / CURVE_RUNS, runs)
        intro = (f"# Transfer to a low-data target on {dataset}, seed {seed}\n\n{pretrain_text}"
                 f"On `{target}`: at most {epochs} epochs, early stopping with patience {shared['stopping_step']} on "
                 f"valid {metric}. Runs: {CURVE_RUNS}. Total {time.perf_counter() - start:.0f} s.\n\n")
        _write_curve(output, runs, curve_labels(curve_sasrec), shared["valid_metric"], intro)
        return runs

    rows = [run(label) for label in variants]
    write_csv(output / "target.csv", [pretrain] + rows)
    make_cold_start_dataset(root, dataset, cold_ratio=cold_ratio, by="time")
    pmmrec = f"PMMRec[{overlay}]" if overlay else "PMMRec"
    cold_rows = benchmark(f"{dataset}-cold", [pmmrec, "SASRec"], seeds=[seed],
                          output=output / "cold_start", threads=threads, test_items="unseen", **common)
    report = (
        f"# Transfer on {dataset}\n\n{pretrain_text}"
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


def _curve_rows(runs, labels, metrics):
    """One row per fraction: ``{label: the model's runs summarised over seeds}`` and, as
    ``difference``, fine-tuned - scratch of ``metrics`` per seed, summarised."""
    rows = []
    for fraction in sorted({r["fraction"] for r in runs if r["model"] in labels}):
        at = {(r["model"], r["seed"]): r for r in runs if r["fraction"] == fraction}
        seeds = sorted({seed for _, seed in at})
        differences = [{"seed": seed, "status": "ok", **{
            m: at[FINE_TUNED, seed][f"test_{m}"] - at[SCRATCH, seed][f"test_{m}"] for m in metrics}} for seed in seeds]
        row = {label: summarize(label, [at[label, seed] for seed in seeds]) for label in labels}
        rows.append({"fraction": fraction, "difference": summarize("difference", differences), **row})
    return rows


def _curve_table(rows, labels, metrics):
    """The curve as a Markdown table: per fraction the training users, each model's test
    ``metrics`` (mean ± std over seeds) with fine-tuned - scratch, and the epochs trained."""
    header = ["fraction of users", "training users"]
    for m in metrics:
        header += [f"{CURVE_MODELS[label]} {m}" for label in labels] + [f"fine-tuned - scratch {m}"]
    header.append(f"epochs ({' / '.join(CURVE_MODELS[label] for label in labels)})")
    lines = [header, ["---"] * len(header)]
    for row in rows:
        cells = [f"{row['fraction']:.0%}", cell(row[FINE_TUNED], "train_users", ".0f")]
        for m in metrics:
            cells += [cell(row[label], f"test_{m}", ".4f") for label in labels]
            cells.append(cell(row["difference"], m, ".4f"))
        cells.append(" / ".join(cell(row[label], "epochs", ".1f", False) for label in labels))
        lines.append(cells)
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def _plot_curve(rows, zero_shot, labels, metric, path, title):
    """Test ``metric`` over the fraction of training users, one line per model (std as
    error bars), zero-shot as a dashed line."""
    key = f"test_{metric}"
    fractions = [row["fraction"] for row in rows]
    fig, ax = pyplot().subplots(figsize=(6.4, 4.4))
    for label in labels:
        cells = [row[label] for row in rows]
        ax.errorbar(fractions, [c[key] for c in cells], yerr=[c.get(f"{key}_std", 0) for c in cells],
                    marker="o", capsize=3, label=label)
    ax.axhline(zero_shot[key], color="grey", linestyle="--", label=f"{ZERO_SHOT}, no target training")
    ax.set_xscale("log")
    ax.set_xticks(fractions, [f"{f:.0%}" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("fraction of the target's training users")
    ax.set_ylabel(f"test {metric}")
    save_line_plot(fig, ax, title, path)


def _write_curve(output, runs, labels, valid_metric, intro):
    """``output/transfer_curve.md`` (``intro``, then the curve's table at the cut-off of
    ``valid_metric``) and ``transfer_curve.png`` from the curve's ``runs``; returns the report."""
    cutoff = valid_metric.split("@")[1]
    metrics = [f"ndcg@{cutoff}", f"hit@{cutoff}"]
    rows = _curve_rows(runs, labels, metrics)
    zero_shot = summarize(ZERO_SHOT, [r for r in runs if r["model"] == ZERO_SHOT])
    seeds = ", ".join(sorted({str(int(r["seed"])) for r in runs}))
    report = (
        f"{intro}The target's training data keeps the training rows of a fraction of its users "
        f"(`train_user_fraction`: the same users for every model of a seed, nested across fractions); "
        f"validation and test keep every user. Test metrics (mean ± std over the seeds when several):\n\n"
        f"{_curve_table(rows, labels, metrics)}\n\n"
        f"{ZERO_SHOT}, no target training: "
        + ", ".join(f"{m} {cell(zero_shot, f'test_{m}', '.4f')}" for m in metrics) + ".\n"
    )
    write_text(output / "transfer_curve.md", report)
    _plot_curve(rows, zero_shot, labels, metrics[0], output / "transfer_curve.png",
                f"Transfer to a low-data target, seeds {seeds}")
    print("\n" + report)
    return report


def _read_csv(path):
    def value(text):
        try:
            return float(text)
        except ValueError:
            return text

    with open(path, newline="", encoding="utf-8") as f:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _check_fractions(fractions):
    """``fractions`` sorted, each checked by the rule of ``train_user_fraction`` before anything runs."""
    for fraction in fractions:
        problem = RULES["train_user_fraction"](fraction)
        if problem:
            raise SettingsError(f"fraction {fraction!r}: expected {problem}")
    return sorted(set(fractions))


def _seed_done(folder, fractions, curve_sasrec):
    """Whether the seed in ``folder`` has its results: its report, or (the curve) a run of
    every model at every fraction."""
    if not fractions:
        return (folder / "transfer.md").is_file()
    path = folder / CURVE_RUNS
    asked = {(label, fraction) for label in curve_labels(curve_sasrec) for fraction in fractions}
    return path.is_file() and asked <= {(r["model"], r["fraction"]) for r in _read_csv(path)}


def transfer_experiments(seeds, output="bench_out/transfer", valid_metric=DEFAULTS["valid_metric"], fractions=None,
                         curve_sasrec=False, **kwargs):
    """:func:`transfer_experiment` once per seed into ``<output>/seed_<seed>``, validated on
    ``valid_metric`` (a seed that has its results is not run again), then the mean ± std over
    seeds of every row into ``<output>/transfer.md`` (with ``fractions``: the curve into
    ``transfer_curve.md`` and ``.png``). Returns that report."""
    output = Path(output)
    if fractions:
        fractions = _check_fractions(fractions)
    for seed in seeds:
        folder = output / f"seed_{seed}"
        if not _seed_done(folder, fractions, curve_sasrec):
            transfer_experiment(output=folder, seed=seed, fractions=fractions, curve_sasrec=curve_sasrec,
                                valid_metric=valid_metric, **kwargs)
    if fractions:
        labels = curve_labels(curve_sasrec)
        runs = [r for seed in seeds for r in _read_csv(output / f"seed_{seed}" / CURVE_RUNS)
                if r["model"] == ZERO_SHOT or (r["model"] in labels and r["fraction"] in fractions)]
        intro = (f"# Transfer to a low-data target: mean ± std over seeds {', '.join(map(str, seeds))}\n\n"
                 f"Each seed draws its own split, users kept and initialisation; per-seed reports (pre-training, "
                 f"settings) in seed_<seed>/transfer_curve.md.\n\n")
        return _write_curve(output, runs, labels, valid_metric, intro)
    tables = {seed: (_read_csv(output / f"seed_{seed}" / "target.csv"),
                     _read_csv(output / f"seed_{seed}" / "cold_start" / "benchmark.csv")) for seed in seeds}

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
    """``pmmrec-transfer [--seeds=2020,2021,2022] [--epochs=10] [--output=bench_out/transfer] [--threads=N]
    [--fractions=0.1,0.25,0.5,1.0 [--curve_sasrec]] [--patience=5]``"""
    parser = argparse.ArgumentParser(prog="pmmrec-transfer", description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="bench_out/transfer")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", default="2020,2021,2022", help="comma-separated; each draws its own split")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run")
    parser.add_argument("--cold_ratio", type=float, default=0.2, help="share of items made cold")
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="the dataset split into sources and target")
    parser.add_argument("--overlay", default="cpu", help="properties/overlays/<name>.yaml (or '+'-joined names) "
                                                         "for every PMMRec run")
    parser.add_argument("--fractions", default=None,
                        help="comma-separated shares of the target's training users: the low-data curve instead")
    parser.add_argument("--curve_sasrec", action="store_true", help="train SASRec at each fraction too (slow)")
    parser.add_argument("--patience", type=int, default=DEFAULTS["stopping_step"],
                        help="stop after this many epochs without a better valid metric")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    fractions = [float(f) for f in args.fractions.split(",")] if args.fractions else None
    transfer_experiments(seeds, args.output, data_path=args.data_path, epochs=args.epochs, threads=args.threads,
                         cold_ratio=args.cold_ratio, stopping_step=args.patience, fractions=fractions,
                         curve_sasrec=args.curve_sasrec, dataset=args.dataset, overlay=args.overlay)
    return 0


if __name__ == "__main__":
    sys.exit(main())
