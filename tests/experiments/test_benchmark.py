"""pmmrec-benchmark: several models on one split, trained until early stopping, one filled row
each, failures in their rows, the validation curve of every run."""

import contextlib
import csv
import io
import re
import shlex
import statistics
from pathlib import Path

import pytest
import yaml
from PIL import Image

from recbole_pmmrec.config import Config, properties_dir
from recbole_pmmrec.experiments import benchmark as bm
from recbole_pmmrec.experiments.report import valid_curves
from recbole_pmmrec.experiments.runner import best_epoch, run_curve, run_isolated, run_row
from tests.conftest import tiny_config, write_tiny_dataset

SHARED_KEYS = {"data_path", "checkpoint_dir", "MAX_ITEM_LIST_LENGTH", "metrics", "topk", "valid_metric",
               "state", "load_col", "show_progress", "stopping_step", "eval_batch_size"}
# a convergence run: at most EPOCHS, evaluated every EVAL_STEP epochs, stopped after
# STOPPING_STEP + 1 evaluations in a row below the best; with CONVERGE both models stop
# well before EPOCHS (after 6 to 36 epochs)
EPOCHS, EVAL_STEP, STOPPING_STEP = 60, 2, 1
CONVERGE = {"learning_rate": 0.01, "train_batch_size": 32}


@pytest.fixture(scope="module")
def bench(tmp_path_factory, tiny_bert, tiny_clip):
    """One two-seed convergence benchmark on the tiny dataset: PMMRec (tiny text encoder),
    SASRec and a model name that does not exist; the logs record every epoch (state INFO)."""
    root = tmp_path_factory.mktemp("bench")
    write_tiny_dataset(root, with_images=False)
    config = tiny_config(root, tiny_bert, tiny_clip, root)
    shared = {k: config.pop(k) for k in SHARED_KEYS}
    shared.update(state="INFO", stopping_step=STOPPING_STEP, eval_step=EVAL_STEP, **CONVERGE)
    tiny = root / "tiny.yaml"  # PMMRec-only settings, as an overlay file
    tiny.write_text(yaml.safe_dump(config), encoding="utf-8")
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.chdir(root)  # RecBole writes log/ and log_tensorboard/ into the working folder
        rows = bm.benchmark("tiny", f"PMMRec[{tiny}+text],SASRec,NoSuchModel", seeds=(2020, 2021),
                            output=root / "out", threads=1, epochs=EPOCHS, **shared)
    return {"rows": rows, "root": root, "out": root / "out", "shared": shared, "printed": printed.getvalue()}


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_one_filled_row_per_model(bench):
    rows = _read_csv(bench["out"] / "benchmark.csv")
    assert [r["model"] for r in rows] == ["PMMRec[tiny+text]", "SASRec", "NoSuchModel"]
    assert rows[0]["model"] == bench["rows"][0]["model"] and len(bench["rows"]) == 3
    for row in rows[:2]:
        assert row["status"] == "ok"
        assert all(value != "" for value in row.values()), row
        assert float(row["test_ndcg@5"]) >= 0 and float(row["valid_hit@5"]) >= 0
        assert 1 < float(row["epochs"]) < EPOCHS and float(row["peak_rss_mb"]) > 50
        assert int(row["params_total"]) >= int(row["params_trainable"]) > 0
    # the tiny text encoder is partly frozen; SASRec trains everything
    assert int(rows[0]["params_total"]) > int(rows[0]["params_trainable"])
    assert rows[1]["params_total"] == rows[1]["params_trainable"]


def test_a_failing_model_is_reported_in_its_row(bench):
    missing = _read_csv(bench["out"] / "benchmark.csv")[2]
    assert missing["status"].startswith("failed: ValueError") and "NoSuchModel" in missing["status"]
    table = (bench["out"] / "benchmark.md").read_text(encoding="utf-8")
    assert "| NoSuchModel |" in table and "failed: ValueError" in table


def test_an_error_inside_a_run_comes_back_as_its_message(bench, monkeypatch):
    """SASRec refuses a width that its heads do not divide, after RecBole's logging started."""
    monkeypatch.chdir(bench["root"])
    files = [str(bench["out"] / "shared.yaml")]
    result = run_isolated("SASRec", "tiny", files, {"hidden_size": 30, "n_heads": 4, "train_neg_sample_args": None}, threads=1)
    row = run_row(result)
    assert row["status"].startswith("failed: ValueError: The hidden size (30)"), row
    assert row["log_file"].endswith(".log")


def test_two_seeds_give_std_columns(bench):
    rows = _read_csv(bench["out"] / "benchmark.csv")
    for column in ("test_ndcg@5_std", "valid_mrr@5_std", "s_per_epoch_std"):
        assert float(rows[1][column]) >= 0
    assert rows[1]["seeds"] == "2020 2021"
    assert "±" in (bench["out"] / "benchmark.md").read_text(encoding="utf-8")


def test_plot_decodes(bench):
    with Image.open(bench["out"] / "benchmark.png") as image:
        image.verify()
        assert image.size[0] > 600


def _log_epochs(log_file):
    """From a run's log: the training loss of each epoch, the valid score of each evaluated
    epoch and the best epoch RecBole names when it stops early (epochs from 0, as logged)."""
    text = Path(log_file).read_text(encoding="utf-8")
    losses = {int(e): float(v) for e, v in re.findall(r"epoch (\d+) training \[.*?train loss: ([\d.]+)", text)}
    scores = {int(e): float(v) for e, v in re.findall(r"epoch (\d+) evaluating \[.*?valid_score: ([\d.]+)\]", text)}
    best = re.findall(r"best eval result in epoch (\d+)", text)
    return losses, scores, int(best[0]) if len(best) == 1 else None


def _ok_runs(bench):
    runs = [r for r in _read_csv(bench["out"] / "runs.csv") if r["status"] == "ok"]
    assert len(runs) == 4
    return runs


def test_runs_stop_early_and_record_their_curve_as_the_log_does(bench):
    curves = _read_csv(bench["out"] / "curves.csv")
    for run in _ok_runs(bench):
        curve = [c for c in curves if (c["model"], c["seed"]) == (run["model"], run["seed"])]
        losses, scores, logged_best = _log_epochs(run["log_file"])
        epochs, best = int(run["epochs"]), int(run["best_epoch"])
        # stopped early, STOPPING_STEP + 1 evaluations after the best epoch, as the log says
        assert len(losses) == len(curve) == epochs < EPOCHS, run
        assert logged_best + 1 == best and epochs == best + (STOPPING_STEP + 1) * EVAL_STEP
        assert [int(c["epoch"]) for c in curve] == list(range(1, epochs + 1))
        assert [float(c["train_loss"]) for c in curve] == pytest.approx([losses[e] for e in sorted(losses)], abs=6e-5)
        valid = {int(c["epoch"]): float(c["valid_score"]) for c in curve if c["valid_score"]}
        assert sorted(valid) == [e + 1 for e in sorted(scores)] == list(range(EVAL_STEP, epochs + 1, EVAL_STEP))
        assert list(valid.values()) == pytest.approx([scores[e] for e in sorted(scores)], abs=1e-6)
        # the tested model is the best epoch's: the best score, never reached afterwards
        assert valid[best] == float(run["valid_ndcg@5"]) == max(valid.values())
        assert all(score < valid[best] for epoch, score in valid.items() if epoch > best)
        assert float(run["fit_s"]) > sum(float(c["train_s"]) for c in curve) > 0


def _table(bench):
    lines = [line for line in (bench["out"] / "benchmark.md").read_text(encoding="utf-8").splitlines()
             if line.startswith("| ")]
    header, *rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return [dict(zip(header, row)) for row in rows[1:]]


def test_table_shows_best_epoch_epochs_run_and_training_time(bench):
    runs, table = _ok_runs(bench), _table(bench)
    summary = _read_csv(bench["out"] / "benchmark.csv")
    for model, row, line in zip(("PMMRec[tiny+text]", "SASRec"), summary, table):
        values = {k: [float(r[k]) for r in runs if r["model"] == model] for k in ("best_epoch", "epochs", "fit_s")}
        assert float(row["best_epoch"]) == pytest.approx(statistics.fmean(values["best_epoch"]))
        assert float(row["epochs_std"]) == pytest.approx(statistics.stdev(values["epochs"]))
        for column, key, fmt in (("best epoch", "best_epoch", ".3g"), ("epochs run", "epochs", ".3g"),
                                 ("train s", "fit_s", ".1f")):
            mean, std = statistics.fmean(values[key]), statistics.stdev(values[key])
            assert line[column] == f"{mean:{fmt}} ± {std:{fmt}}", (model, column)
    assert table[2]["model"] == "NoSuchModel" and table[2]["best epoch"] == table[2]["train s"] == "-"


def test_valid_curves_are_plotted_per_model(bench):
    curves = [{**c, "valid_score": float(c["valid_score"]) if c["valid_score"] else None}
              for c in _read_csv(bench["out"] / "curves.csv")]
    by_model = valid_curves(curves)
    assert list(by_model) == ["PMMRec[tiny+text]", "SASRec"]
    assert all(list(seeds) == ["2020", "2021"] for seeds in by_model.values())
    with Image.open(bench["out"] / "valid_curves.png") as image:
        pixels = {colour for _, colour in image.convert("RGB").getcolors(maxcolors=1 << 24)}
    assert image.size[0] > 600
    assert {(31, 119, 180), (255, 127, 14)} <= pixels  # matplotlib's first two colours: a line per model
    assert f"{bench['out']}/curves.csv" in bench["printed"] and f"{bench['out']}/valid_curves.png" in bench["printed"]


def test_best_epoch_is_the_last_evaluated_epoch_at_the_best_score():
    result = {"valid_score_by_epoch": {1: 0.5, 3: 0.7, 5: 0.7, 7: 0.6}, "best_valid_score": 0.7,
              "train_loss_by_epoch": {e: 10.0 - e for e in range(8)}, "train_epoch_seconds": [0.5] * 8}
    assert best_epoch(result) == 6  # RecBole keeps the later of two equal scores
    assert best_epoch({"valid_score_by_epoch": {}, "best_valid_score": 0.1}) is None  # epochs: 0
    curve = run_curve(result)
    assert [c["epoch"] for c in curve] == list(range(1, 9)) and curve[7]["train_loss"] == 3.0
    assert [c["valid_score"] for c in curve[:4]] == [None, 0.5, None, 0.7]


def test_runs_record_logs_checkpoints_and_a_reproducing_command(bench):
    runs = _read_csv(bench["out"] / "runs.csv")
    assert len(runs) == 2 * 3
    sasrec = [r for r in runs if r["model"] == "SASRec"]
    assert [r["seed"] for r in sasrec] == ["2020", "2021"]
    for run in sasrec:
        assert run["log_file"].endswith(".log") and run["saved_model_file"].endswith(".pth")
        args = shlex.split(run["command"])
        assert args[:3] == ["run_recbole", "--model=SASRec", "--dataset=tiny"]
        # the command line resolves to the same settings as the run
        files = args[3].split("=", 1)[1].split()
        config = Config("SASRec", "tiny", config_file_list=files, argv=args[4:])
        assert config["seed"] == int(run["seed"]) and config["epochs"] == EPOCHS
        assert config["topk"] == [5] and config["MAX_ITEM_LIST_LENGTH"] == 10
        assert config["train_neg_sample_args"]["distribution"] == "none"
    shared = yaml.safe_load((bench["out"] / "shared.yaml").read_text(encoding="utf-8"))
    assert shared["eval_args"]["split"] == {"LS": "valid_and_test"} and shared["epochs"] == EPOCHS
    assert (shared["stopping_step"], shared["eval_step"]) == (STOPPING_STEP, EVAL_STEP)


def test_model_specs_and_overlays():
    overlays = properties_dir() / "overlays"
    assert bm.split_models("PMMRec[cpu+text],SASRec, GRU4Rec") == ["PMMRec[cpu+text]", "SASRec", "GRU4Rec"]
    assert bm.parse_model("SASRec") == ("SASRec", [])
    assert bm.parse_model("PMMRec[cpu+text]") == (
        "PMMRec", [str(overlays / "cpu.yaml"), str(overlays / "text.yaml")])
    with pytest.raises(FileNotFoundError, match="nope"):
        bm.parse_model("PMMRec[nope]")
    for name in ("frozen", "text", "image", "sum", "ce"):
        assert yaml.safe_load((overlays / f"{name}.yaml").read_text(encoding="utf-8"))


def test_cli_passes_shared_settings(monkeypatch):
    seen = {}
    monkeypatch.setattr(bm, "benchmark", lambda *args, **kwargs: seen.update(args=args, kwargs=kwargs) or [])
    assert bm.main(["--dataset=tiny", "--models=PMMRec[cpu],SASRec", "--seeds=1,2", "--epochs=3",
                    "--config_files=a.yaml b.yaml", "--train_batch_size=8", "--topk=[5,10]"]) == 0
    assert seen["args"] == ("tiny", "PMMRec[cpu],SASRec", ["a.yaml", "b.yaml"])
    assert seen["kwargs"]["seeds"] == ["1", "2"]
    assert {k: seen["kwargs"][k] for k in ("epochs", "train_batch_size", "topk")} == {
        "epochs": 3, "train_batch_size": 8, "topk": [5, 10]}


def test_a_rerun_reuses_finished_runs_and_reruns_changed_ones(bench, monkeypatch):
    """Rerunning into the same folder (an interrupted benchmark) trains nothing again and
    writes the same tables; a run whose YAML changed is not reused."""
    before = {name: (bench["out"] / name).read_text(encoding="utf-8") for name in ("runs.csv", "curves.csv")}
    monkeypatch.setattr(bm, "run_isolated", lambda *args: pytest.fail(f"run again: {args[:2]}"))
    monkeypatch.chdir(bench["root"])
    tiny = bench["root"] / "tiny.yaml"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        bm.benchmark("tiny", f"PMMRec[{tiny}+text],SASRec", seeds=(2020, 2021), output=bench["out"],
                     threads=1, epochs=EPOCHS, **bench["shared"])
    assert printed.getvalue().count(": reused ") == 4
    runs = _read_csv(bench["out"] / "runs.csv")
    assert len(runs) == 4 and all(r["status"] == "ok" for r in runs)
    assert (bench["out"] / "curves.csv").read_text(encoding="utf-8") == before["curves.csv"]
    after = (bench["out"] / "runs.csv").read_text(encoding="utf-8").splitlines()
    assert after == before["runs.csv"].splitlines()[:5]  # header and the 4 runs (NoSuchModel left out here)
    record = next((bench["out"] / "runs").glob("PMMRec*-seed2020.json"))
    files = shlex.split(runs[0]["command"])[3].split("=", 1)[1].split()
    fingerprint = bm.run_fingerprint(runs[0]["command"], files)
    assert bm.reusable_run(record, fingerprint)["run"]["seed"] == 2020
    changed = bench["root"] / "changed" / "tiny.yaml"
    changed.parent.mkdir()
    changed.write_text(tiny.read_text(encoding="utf-8") + "\nlearning_rate: 0.5\n", encoding="utf-8")
    assert bm.reusable_run(record, bm.run_fingerprint(runs[0]["command"], [str(changed)] + files[1:])) is None
