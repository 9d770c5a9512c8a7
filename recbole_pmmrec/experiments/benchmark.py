"""PMMRec beside RecBole's baselines on identical splits: a Markdown table, CSVs and plots.

``pmmrec-benchmark --dataset=ml-100k-text --models=PMMRec[cpu],SASRec,GRU4Rec,BERT4Rec``

Every model runs through ``run_recbole`` in its own process (:mod:`.runner`), with the
shared settings (split, metrics, filtering, history length, epochs, seed) written once to
``<output>/shared.yaml`` and given to every model after its own YAML files.
Each finished run is kept in ``<output>/runs/<model>-seed<seed>.json`` (the label as a safe file name); a rerun with the
same output folder reuses a run whose command and YAML files are unchanged (an interrupted benchmark
resumes where it stopped). ``NAME[overlay]`` runs model NAME with ``properties/overlays/<overlay>.yaml`` (or a YAML
path) on top; ``NAME[a+b]`` applies several overlays in order.

A convergence comparison is a large ``--epochs`` (the maximum) with ``--stopping_step=K``,
e.g. ``--epochs=300 --stopping_step=10 --seeds=2020,2021,2022``: every model trains until
its ``valid_metric`` (evaluated every ``eval_step`` epochs) has not reached its best for
K+1 evaluations in a row (RecBole's early stopping; a tie counts as a new best) and is
tested with the weights of its best epoch. Per run, ``runs.csv`` has ``best_epoch`` (from
1), ``epochs`` (run) and ``fit_s`` (training with validation); ``curves.csv`` has the
training loss and the valid score per epoch, plotted in ``valid_curves.png``.
"""

import argparse
import hashlib
import json
import re
import sys
import time
from pathlib import Path

import yaml

from dataset_converters.atomic import write_text
from dataset_converters.images import safe_name
from recbole_pmmrec.config import Config, properties_dir
from recbole_pmmrec.data.derived import DEFAULT_DATASET
from recbole_pmmrec.experiments.report import markdown_table, plot, plot_curves, settings_text, summarize, write_csv
from recbole_pmmrec.experiments.runner import command_line, run_curve, run_isolated, run_row
from recbole_pmmrec.registry import get_model

# shared defaults of a benchmark (any may be overridden)
DEFAULTS = {
    "metrics": ["Hit", "NDCG", "MRR"],
    "topk": [10, 20],
    "valid_metric": "NDCG@10",
    "stopping_step": 5,
    "show_progress": False,
}
# resolved once and forced equal for every model (besides the seed, given per run)
SHARED_KEYS = [
    "eval_args", "repeatable", "metrics", "topk", "valid_metric", "MAX_ITEM_LIST_LENGTH",
    "epochs", "stopping_step", "eval_step", "load_col", "unload_col", "unused_col",
    "rm_dup_inter", "val_interval", "filter_inter_by_user_or_item",
    "user_inter_num_interval", "item_inter_num_interval",
]
REFERENCE_MODEL = "SASRec"  # whose resolved config supplies the shared values (sequential defaults)


# --- model specs -------------------------------------------------------------------------

def split_models(models):
    """``"PMMRec[cpu],SASRec"`` or a list -> list of names (commas inside [...] are kept)."""
    if isinstance(models, str):
        models = re.split(r",(?![^\[]*\])", models)
    return [m.strip() for m in models if m.strip()]


def parse_model(spec):
    """``"PMMRec[cpu+my.yaml]"`` -> ``("PMMRec", [overlay YAML paths])``."""
    match = re.fullmatch(r"([^\[\]]+)(?:\[([^\[\]]+)\])?", spec.strip())
    if not match:
        raise ValueError(f"model spec {spec!r} is not NAME or NAME[overlay]")
    name, overlays = match.group(1).strip(), match.group(2)
    files = []
    for overlay in (overlays or "").split("+"):
        overlay = overlay.strip()
        if not overlay:
            continue
        path = Path(overlay) if overlay.endswith((".yaml", ".yml")) else properties_dir() / "overlays" / f"{overlay}.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"overlay {overlay!r} of {spec}: {path} does not exist")
        files.append(str(path.resolve()))
    return name, files


def label(spec):
    """The spec with overlay paths shortened to their file names: ``PMMRec[tiny+text]``."""
    return re.sub(r"[^\[\]+]+\.ya?ml", lambda m: Path(m.group(0)).stem, spec)


def _file_keys(config_files):
    keys = set()
    for file in config_files:
        keys.update(yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {})
    return keys


def resolve_shared(dataset, config_files, shared):
    """The shared settings: benchmark defaults < config files < ``shared``, as resolved by
    RecBole for the reference model; plus every key of ``shared`` as given."""
    defaults = {k: v for k, v in DEFAULTS.items() if k not in _file_keys(config_files)}
    config_dict = {**defaults, **shared, "train_neg_sample_args": None}
    config = Config(REFERENCE_MODEL, dataset, config_file_list=config_files, config_dict=config_dict)
    resolved = {k: config[k] for k in SHARED_KEYS if k in config.final_config_dict}
    resolved.update({k: v for k, v in {**defaults, **shared}.items() if k not in resolved})
    return resolved


def model_overrides(name, dataset, config_files):
    """Per-model fix-ups: RecBole's CE-loss models need ``train_neg_sample_args: None``.

    Also checks that the model's config resolves (unknown model, bad overlay) before a run.
    """
    try:
        get_model(name)
    except (ImportError, ValueError) as error:
        raise ValueError(f"model {name!r} not found in this plugin or RecBole ({error})") from None
    config = Config(name, dataset, config_file_list=config_files, config_dict={"train_neg_sample_args": None})
    return {"train_neg_sample_args": None} if config["loss_type"] == "CE" else {}


def benchmark(dataset, models, config_files=None, seeds=(2020,), output="bench_out", threads=None, **shared):
    """Run every model of ``models`` (``NAME`` or ``NAME[overlay]``) for each seed on ``dataset``.

    ``config_files`` apply to every model; ``shared`` keys (``epochs``, ``data_path``, ...)
    too, after each model's own YAML. Writes ``benchmark.md``, ``benchmark.csv`` (one row per
    model), ``runs.csv`` (one row per run), ``curves.csv`` (one row per run and epoch),
    ``benchmark.png`` and ``valid_curves.png`` into ``output``; returns the per-model rows.
    """
    start = time.perf_counter()
    output = Path(output)
    (output / "runs").mkdir(parents=True, exist_ok=True)
    config_files = [str(Path(f).resolve()) for f in (config_files or [])]
    seeds = [int(s) for s in seeds]
    shared.pop("seed", None)  # given per run
    if shared.get("data_path"):
        shared["data_path"] = str(Path(shared["data_path"]).resolve()) + "/"
    shared = resolve_shared(dataset, config_files, shared)
    shared_file = output.resolve() / "shared.yaml"
    write_text(shared_file, "# settings forced equal for every model of the benchmark (after each model's own YAML)\n"
               + yaml.safe_dump(shared, sort_keys=False))
    models = split_models(models)
    rows, all_runs, curves = [], [], []
    for index, spec in enumerate(models, 1):
        runs = []
        for seed in seeds:
            run = {"model": label(spec), "seed": seed}
            print(f"[{index}/{len(models)}] {spec} seed {seed} ...", flush=True)
            run_start, done = time.perf_counter(), None
            record = output / "runs" / f"{safe_name(run['model'])}-seed{seed}.json"
            try:
                name, overlays = parse_model(spec)
                files = config_files + overlays + [str(shared_file)]
                config_dict = {"seed": seed, **model_overrides(name, dataset, files)}
                run["command"] = command_line(name, dataset, files, config_dict)
                fingerprint = run_fingerprint(run["command"], files)
                done = reusable_run(record, fingerprint)
                if done:  # trained by an earlier, interrupted call into this folder
                    print(f"[{index}/{len(models)}] {spec} seed {seed}: reused {record}", flush=True)
                    run, curve = done["run"], done["curve"]
                else:
                    result = run_isolated(name, dataset, files, config_dict, threads)
                    run.update(run_row(result))
                    curve = run_curve(result) if run["status"] == "ok" else []
            except Exception as error:  # the model's config did not resolve
                run.update(run_row({"error": f"{type(error).__name__}: {error}"}))
                curve = []
            run.setdefault("command", "")
            runs.append(run)
            elapsed = time.perf_counter() - run_start
            if run["status"] == "ok":
                if not done:
                    write_text(record, json.dumps({"fingerprint": fingerprint, "run": run, "curve": curve}, indent=1))
                curves += [{"model": run["model"], "seed": seed, **epoch} for epoch in curve]
                key = f"test_{shared['valid_metric'].lower()}"
                print(f"[{index}/{len(models)}] {spec} seed {seed}: {run['epochs']} epochs (best {run['best_epoch']}), "
                      f"{key[5:]} {run.get(key, float('nan')):.4f}, {elapsed:.0f} s", flush=True)
            else:
                print(f"[{index}/{len(models)}] {spec} seed {seed}: {run['status']}", flush=True)
        all_runs += runs
        rows.append(summarize(label(spec), runs))

    write_csv(output / "benchmark.csv", rows)
    write_csv(output / "runs.csv", all_runs)
    write_csv(output / "curves.csv", curves)
    report = (f"# Benchmark on {dataset}\n\nShared settings (every model):\n\n"
              f"{settings_text(dataset, shared, seeds)}\n\n{markdown_table(rows, shared['valid_metric'])}\n\n"
              f"Means over seeds (± sample std). Best epoch (from 1): the epoch whose weights are tested; "
              f"epochs run: until stopping_step + 1 evaluations in a row did not reach the best, or epochs; "
              f"train s: the whole training, validation included; s/epoch is training only, eval s one test "
              f"pass; peak MB is the run's own process RSS. Commands and logs per run: runs.csv; valid score "
              f"per epoch: curves.csv, valid_curves.png.\n")
    write_text(output / "benchmark.md", report)
    if any("epochs" in r for r in rows):
        seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"mean ± std over seeds {', '.join(map(str, seeds))}"
        plot(rows, output / "benchmark.png", f"{dataset}: {seed_text}, at most {shared.get('epochs')} epochs")
    if curves:
        title = (f"{dataset}: a thin line per seed; stopping_step {shared.get('stopping_step')}, "
                 f"at most {shared.get('epochs')} epochs")
        plot_curves(curves, output / "valid_curves.png", title, shared["valid_metric"])
    print("\n" + report)
    print(f"wrote {output}/benchmark.md, benchmark.csv, runs.csv, benchmark.png; "
          f"total {time.perf_counter() - start:.0f} s")
    if curves:
        print(f"per-epoch curves (valid {shared['valid_metric'].lower()}, training loss; one row per run and epoch): "
              f"{output}/curves.csv; plotted in {output}/valid_curves.png")
    return rows


def run_fingerprint(command, config_files):
    """What decides a run: its command and the contents of its YAML files."""
    digest = hashlib.sha256(command.encode())
    for file in config_files:
        digest.update(Path(file).read_bytes())
    return digest.hexdigest()


def reusable_run(record, fingerprint):
    """The finished run stored in ``record`` if it has the same fingerprint, else None."""
    if not record.is_file():
        return None
    done = json.loads(record.read_text(encoding="utf-8"))
    return done if done.get("fingerprint") == fingerprint else None


def _value(text):
    value = yaml.safe_load(text)
    return None if value == "None" else value


def main(argv=None):
    """``pmmrec-benchmark --dataset=NAME --models=A,B[overlay] [--seeds=..] [--key=value ...]``"""
    parser = argparse.ArgumentParser(
        prog="pmmrec-benchmark",
        description=__doc__.splitlines()[0] + " Other --key=value pairs apply to every model.",
    )
    parser.add_argument("--dataset", "-d", default=DEFAULT_DATASET)
    parser.add_argument("--models", "-m", default="PMMRec[cpu],SASRec,GRU4Rec,BERT4Rec")
    parser.add_argument("--config_files", default=None, help="space-separated YAML files for every model")
    parser.add_argument("--seeds", default="2020", help="comma-separated seeds")
    parser.add_argument("--output", default="bench_out", help="folder for the table, CSVs and plot")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run")
    args, rest = parser.parse_known_args(argv)
    shared = {}
    for item in rest:
        match = re.fullmatch(r"--(\w+)=(.*)", item)
        if not match:
            parser.error(f"unrecognised argument {item!r} (use --key=value)")
        shared[match.group(1)] = _value(match.group(2))
    for key in ("data_path", "epochs"):
        if getattr(args, key) is not None:
            shared[key] = getattr(args, key)
    rows = benchmark(
        args.dataset, args.models, args.config_files.split() if args.config_files else None,
        seeds=args.seeds.split(","), output=args.output, threads=args.threads, **shared,
    )
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
