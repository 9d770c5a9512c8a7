"""PMMRec beside RecBole's baselines on identical splits: a Markdown table, a CSV and a plot.

``pmmrec-benchmark --dataset=ml-100k-text --models=PMMRec[cpu],SASRec,GRU4Rec,BERT4Rec``

Every model runs through ``run_recbole`` in its own process (so its peak RSS is its own),
with the shared settings (split, metrics, filtering, history length, epochs, seed) written
once to ``<output>/shared.yaml`` and given to every model after its own YAML files.
``NAME[overlay]`` runs model NAME with ``properties/overlays/<overlay>.yaml`` (or a YAML
path) on top; ``NAME[a+b]`` applies several overlays in order.
"""

import argparse
import contextlib
import csv
import multiprocessing
import re
import resource
import shlex
import statistics
import sys
import time
import traceback
import warnings
from logging import StreamHandler, getLogger
from pathlib import Path

import yaml

from recbole_pmmrec.config import Config, properties_dir
from recbole_pmmrec.default_dataset import DEFAULT_DATASET
from recbole_pmmrec.registry import get_model

# resolved once and forced equal for every model (besides the seed, given per run)
# shared defaults of a benchmark (any may be overridden)
DEFAULTS = {
    "metrics": ["Hit", "NDCG", "MRR"],
    "topk": [10, 20],
    "valid_metric": "NDCG@10",
    "stopping_step": 5,
    "show_progress": False,
}

SHARED_KEYS = [
    "eval_args", "repeatable", "metrics", "topk", "valid_metric", "MAX_ITEM_LIST_LENGTH",
    "epochs", "stopping_step", "eval_step", "load_col", "unload_col", "unused_col",
    "rm_dup_inter", "val_interval", "filter_inter_by_user_or_item",
    "user_inter_num_interval", "item_inter_num_interval",
]
REFERENCE_MODEL = "SASRec"  # whose resolved config supplies the shared values (sequential defaults)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
CONSOLE_LINES = re.compile(r"epoch \d+ (training|evaluating)|best valid|test result")


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


@contextlib.contextmanager
def _plain_argv():
    """RecBole's Config reads ``--key=value`` pairs from ``sys.argv``; hide ours from it."""
    argv = sys.argv
    sys.argv = argv[:1]
    try:
        yield
    finally:
        sys.argv = argv


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
    with _plain_argv():
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
    with _plain_argv():
        config = Config(name, dataset, config_file_list=config_files, config_dict={"train_neg_sample_args": None})
    return {"train_neg_sample_args": None} if config["loss_type"] == "CE" else {}


def command_line(name, dataset, config_files, config_dict):
    """The ``run_recbole`` command that reproduces one run."""
    args = ["run_recbole", f"--model={name}", f"--dataset={dataset}", f"--config_files={' '.join(config_files)}"]
    args += [f"--{k}={v}" for k, v in config_dict.items()]
    return " ".join(shlex.quote(a) for a in args)


# --- one run in its own process ----------------------------------------------------------

def _console_filter(record):
    return record.levelno >= 30 or bool(CONSOLE_LINES.search(ANSI.sub("", str(record.msg))))


def _quiet_console(init_logger):
    """Wrap RecBole's ``init_logger``: the console shows epoch and result lines only (the
    log file keeps everything)."""

    def wrapped(config):
        init_logger(config)
        for handler in getLogger().handlers:
            if type(handler) is StreamHandler:
                handler.addFilter(_console_filter)

    return wrapped


def _log_file():
    files = [h.baseFilename for h in getLogger().handlers if hasattr(h, "baseFilename")]
    return files[0] if files else ""


def _run_child(name, dataset, config_files, config_dict, threads, conn):
    sys.argv = sys.argv[:1]
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole\.")  # pandas/amp deprecations
    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
        from recbole_pmmrec import quick_start

        quick_start.init_logger = _quiet_console(quick_start.init_logger)
        result = quick_start.run_recbole(name, dataset, config_files, config_dict)
        result = {k: (dict(v) if k.endswith("result") else v) for k, v in result.items()}
    except Exception as error:  # reported in the model's row; the benchmark goes on
        traceback.print_exc()
        result = {"error": f"{type(error).__name__}: {error}".strip()}
    result["log_file"] = _log_file()
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    conn.send(result)


def run_isolated(name, dataset, config_files=None, config_dict=None, threads=None):
    """``run_recbole`` in a spawned process; its result dict plus ``peak_rss_mb`` and
    ``log_file``, or ``{"error": message}`` if it raised or died."""
    context = multiprocessing.get_context("spawn")
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(target=_run_child, args=(name, dataset, config_files, config_dict, threads, writer))
    process.start()
    writer.close()
    try:
        result = reader.recv()
    except EOFError:
        result = None
    process.join()
    return result or {"error": f"the process died (exit code {process.exitcode})"}


# --- rows --------------------------------------------------------------------------------

def run_row(result):
    """One run's result dict -> a flat CSV row (metrics as valid_*/test_*)."""
    if "error" in result:
        return {"status": f"failed: {result['error']}", "log_file": result.get("log_file", "")}
    epochs = result["train_epoch_seconds"]
    row = {
        "status": "ok",
        "epochs": len(epochs),
        "s_per_epoch": sum(epochs) / max(len(epochs), 1),
        "eval_s": result["test_seconds"],
        "n_test_rows": result["test_rows"],
        "fit_s": result["fit_seconds"],
        "peak_rss_mb": result["peak_rss_mb"],
        "params_total": result["total_parameters"],
        "params_trainable": result["trainable_parameters"],
    }
    row.update({f"valid_{k}": v for k, v in result["best_valid_result"].items()})
    row.update({f"test_{k}": v for k, v in result["test_result"].items()})
    row.update({f"test_{k}_among_unseen": v for k, v in (result.get("test_result_among_unseen") or {}).items()})
    row.update(log_file=result["log_file"], saved_model_file=result["saved_model_file"] or "")
    return row


def summarize(spec, runs):
    """A model's runs (one per seed) -> one row: means, ``*_std`` over seeds when several."""
    ok = [r for r in runs if r["status"] == "ok"]
    failed = [r for r in runs if r["status"] != "ok"]
    row = {"model": spec, "seeds": " ".join(str(r["seed"]) for r in runs)}
    if not ok:
        row["status"] = failed[0]["status"]
    else:
        row["status"] = "ok" if not failed else "; ".join(f"seed {r['seed']} {r['status']}" for r in failed)
        numeric = [k for k, v in ok[0].items() if isinstance(v, (int, float)) and k != "seed"]
        for key in numeric:
            values = [r[key] for r in ok]
            row[key] = values[0] if len(set(values)) == 1 else statistics.fmean(values)
            if len(runs) > 1:
                row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else float("nan")
    for key in ("log_file", "saved_model_file", "command"):
        row[key] = " ; ".join(r[key] for r in runs if r.get(key))
    return row


def write_csv(path, rows):
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


# --- table and plot ----------------------------------------------------------------------

def _cell(row, key, fmt, with_std=True):
    if key not in row:
        return "-"
    text = format(row[key], fmt)
    std = row.get(f"{key}_std") if with_std else None
    return text if std is None else f"{text} ± {format(std, fmt)}"


def metric_columns(rows):
    """The test_* columns present, in RecBole's order."""
    return list(dict.fromkeys(k for row in rows for k in row if k.startswith("test_") and not k.endswith("_std")))


def markdown_table(rows, valid_metric):
    metrics = metric_columns(rows)
    valid_key = f"valid_{valid_metric.lower()}"
    header = ["model", "epochs", "s/epoch", "eval s", "peak MB", "params (trainable / total)",
              f"valid {valid_metric.lower()}", "test rows"] + [m[len("test_"):] for m in metrics]
    failures = any(r["status"] != "ok" for r in rows)
    lines = [header + (["status"] if failures else [])]
    for r in rows:
        params = "-" if "params_total" not in r else f"{r['params_trainable'] / 1e6:.2f}M / {r['params_total'] / 1e6:.2f}M"
        cells = [r["model"], _cell(r, "epochs", ".0f", False), _cell(r, "s_per_epoch", ".1f"), _cell(r, "eval_s", ".1f"),
                 _cell(r, "peak_rss_mb", ".0f", False), params, _cell(r, valid_key, ".4f"),
                 _cell(r, "n_test_rows", ".0f", False)]
        cells += [_cell(r, m, ".4f") for m in metrics]
        lines.append(cells + ([r["status"].replace("|", "/")] if failures else []))
    lines.insert(1, ["---"] * len(lines[0]))
    return "\n".join("| " + " | ".join(map(str, cells)) + " |" for cells in lines)


def settings_text(dataset, shared, seeds):
    """The shared settings, one Markdown bullet each."""
    lines = [f"- dataset: `{dataset}`", f"- seeds: `{', '.join(map(str, seeds))}`"]
    lines += [f"- {k}: `{v}`" for k, v in shared.items() if v is not None]
    return "\n".join(lines)


def _errors(row, keys):
    """Std error bars for ``keys``, or None when the row has no std (one seed)."""
    return [row.get(f"{k}_std", 0) for k in keys] if f"{keys[0]}_std" in row else None


def plot(rows, path, title):
    """Test metrics (bars per model, std as error bars) and times per model, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "epochs" in r]
    metrics = metric_columns(rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / max(len(rows), 1)
    for i, r in enumerate(rows):
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(metrics))]
        left.bar(xs, [r[m] for m in metrics], width, yerr=_errors(r, metrics), capsize=2, label=r["model"])
    left.set_xticks(range(len(metrics)), [m[len("test_"):] for m in metrics])
    left.set_ylabel("test score")
    left.set_title("Test metrics (full ranking)")
    left.legend(fontsize=8)
    left.grid(axis="y", alpha=0.3)

    ys = range(len(rows))
    for offset, key, name in ((-0.2, "s_per_epoch", "training, per epoch"), (0.2, "eval_s", "test evaluation")):
        bars = right.barh([y + offset for y in ys], [r[key] for r in rows], 0.4,
                          xerr=[(_errors(r, [key]) or [0])[0] for r in rows], label=name)
        right.bar_label(bars, fmt="%.1f s", padding=3, fontsize=8)
    right.set_xlim(0, 1.3 * max(r[k] + r.get(f"{k}_std", 0) for r in rows for k in ("s_per_epoch", "eval_s")))
    right.set_yticks(list(ys), [r["model"] for r in rows])
    right.invert_yaxis()
    right.set_xlabel("wall time (s)")
    right.set_title("Time")
    right.legend(fontsize=8)
    right.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- the benchmark -----------------------------------------------------------------------

def benchmark(dataset, models, config_files=None, seeds=(2020,), output="bench_out", threads=None, **shared):
    """Run every model of ``models`` (``NAME`` or ``NAME[overlay]``) for each seed on ``dataset``.

    ``config_files`` apply to every model; ``shared`` keys (``epochs``, ``data_path``, ...)
    too, after each model's own YAML. Writes ``benchmark.md``, ``benchmark.csv`` (one row per
    model), ``runs.csv`` (one row per run) and ``benchmark.png`` into ``output``; returns the
    per-model rows.
    """
    start = time.perf_counter()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    config_files = [str(Path(f).resolve()) for f in (config_files or [])]
    seeds = [int(s) for s in seeds]
    shared.pop("seed", None)  # given per run
    if shared.get("data_path"):
        shared["data_path"] = str(Path(shared["data_path"]).resolve()) + "/"
    shared = resolve_shared(dataset, config_files, shared)
    shared_file = output.resolve() / "shared.yaml"
    shared_file.write_text(
        "# settings forced equal for every model of the benchmark (after each model's own YAML)\n"
        + yaml.safe_dump(shared, sort_keys=False), encoding="utf-8",
    )
    models = split_models(models)
    rows, all_runs = [], []
    for index, spec in enumerate(models, 1):
        runs = []
        for seed in seeds:
            run = {"model": label(spec), "seed": seed}
            print(f"[{index}/{len(models)}] {spec} seed {seed} ...", flush=True)
            run_start = time.perf_counter()
            try:
                name, overlays = parse_model(spec)
                files = config_files + overlays + [str(shared_file)]
                config_dict = {"seed": seed, **model_overrides(name, dataset, files)}
                run["command"] = command_line(name, dataset, files, config_dict)
                result = run_isolated(name, dataset, files, config_dict, threads)
            except Exception as error:  # the model's config did not resolve
                result = {"error": f"{type(error).__name__}: {error}"}
            run.update(run_row(result))
            run.setdefault("command", "")
            runs.append(run)
            elapsed = time.perf_counter() - run_start
            if run["status"] == "ok":
                key = f"test_{shared['valid_metric'].lower()}"
                print(f"[{index}/{len(models)}] {spec} seed {seed}: {run['epochs']} epochs, "
                      f"{key[5:]} {run.get(key, float('nan')):.4f}, {elapsed:.0f} s", flush=True)
            else:
                print(f"[{index}/{len(models)}] {spec} seed {seed}: {run['status']}", flush=True)
        all_runs += runs
        rows.append(summarize(label(spec), runs))

    write_csv(output / "benchmark.csv", rows)
    write_csv(output / "runs.csv", all_runs)
    report = (f"# Benchmark on {dataset}\n\nShared settings (every model):\n\n"
              f"{settings_text(dataset, shared, seeds)}\n\n{markdown_table(rows, shared['valid_metric'])}\n\n"
              f"Means over seeds (± sample std); s/epoch is training only, eval s one test pass; "
              f"peak MB is the run's own process RSS. Commands and logs per run: runs.csv.\n")
    (output / "benchmark.md").write_text(report, encoding="utf-8")
    if any("epochs" in r for r in rows):
        seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"mean ± std over seeds {', '.join(map(str, seeds))}"
        plot(rows, output / "benchmark.png", f"{dataset}: {seed_text}, at most {shared.get('epochs')} epochs")
    print("\n" + report)
    print(f"wrote {output}/benchmark.md, benchmark.csv, runs.csv, benchmark.png; "
          f"total {time.perf_counter() - start:.0f} s")
    return rows


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
