"""Benchmark results: rows over seeds, the CSV files, the Markdown table and the plot."""

import csv
import statistics

from dataset_converters.atomic import replace_when_done


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
    with replace_when_done(path) as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


def cell(row, key, fmt, with_std=True):
    """``row[key]`` formatted for a table, with `` ± std`` where the row has one; ``-`` if absent."""
    if row.get(key) is None:
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
    header = ["model", "epochs run", "best epoch", "train s", "s/epoch", "eval s", "peak MB",
              "params (trainable / total)", f"valid {valid_metric.lower()}", "test rows"]
    header += [m[len("test_"):] for m in metrics]
    failures = any(r["status"] != "ok" for r in rows)
    lines = [header + (["status"] if failures else [])]
    for r in rows:
        params = "-" if "params_total" not in r else f"{r['params_trainable'] / 1e6:.2f}M / {r['params_total'] / 1e6:.2f}M"
        cells = [r["model"], cell(r, "epochs", ".3g"), cell(r, "best_epoch", ".3g"), cell(r, "fit_s", ".1f"),
                 cell(r, "s_per_epoch", ".1f"), cell(r, "eval_s", ".1f"), cell(r, "peak_rss_mb", ".0f", False),
                 params, cell(r, valid_key, ".4f"), cell(r, "n_test_rows", ".0f", False)]
        cells += [cell(r, m, ".4f") for m in metrics]
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


def pyplot():
    """matplotlib's pyplot on the Agg backend (imported only when a plot is drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path):
    """Write ``fig`` as a PNG atomically, then close it."""
    with replace_when_done(path, binary=True) as f:
        fig.savefig(f, format="png", dpi=90)
    pyplot().close(fig)


def save_line_plot(fig, ax, title, path):
    """Give the single-axes ``fig`` its title, legend and grid, then write it (see ``save_figure``)."""
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def plot(rows, path, title):
    """Test metrics (bars per model, std as error bars) and times per model, side by side."""
    plt = pyplot()
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
    save_figure(fig, path)


def valid_curves(curves):
    """Per-epoch rows (model, seed, epoch, valid_score) -> {model: {seed: [(epoch, score)]}},
    the evaluated epochs only."""
    by_model = {}
    for c in curves:
        if c["valid_score"] is not None:
            by_model.setdefault(c["model"], {}).setdefault(c["seed"], []).append((c["epoch"], c["valid_score"]))
    return by_model


def plot_curves(curves, path, title, valid_metric):
    """The valid score per evaluated epoch: a thin line per run and, per model, a thick line
    for the mean over its seeds up to the last epoch that every seed evaluated."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.6))
    for i, (model, runs) in enumerate(valid_curves(curves).items()):
        for points in runs.values():
            ax.plot(*zip(*points), color=f"C{i}", alpha=0.4, linewidth=0.8)
        common = min(len(points) for points in runs.values())
        epochs = [epoch for epoch, _ in next(iter(runs.values()))[:common]]
        mean = [statistics.fmean(points[j][1] for points in runs.values()) for j in range(common)]
        seeds = f"mean of {len(runs)} seeds" if len(runs) > 1 else "1 seed"
        ax.plot(epochs, mean, color=f"C{i}", linewidth=2, marker=".", label=f"{model} ({seeds})")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"valid {valid_metric.lower()}")
    save_line_plot(fig, ax, title, path)
