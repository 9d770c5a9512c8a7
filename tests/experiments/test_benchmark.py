"""pmmrec-benchmark: several models on one split, one filled row each, failures in their rows."""

import csv
import shlex

import pytest
import yaml
from PIL import Image

from recbole_pmmrec.config import Config, properties_dir
from recbole_pmmrec.experiments import benchmark as bm
from recbole_pmmrec.experiments.runner import run_isolated, run_row
from tests.conftest import tiny_config, write_tiny_dataset

SHARED_KEYS = {"data_path", "checkpoint_dir", "MAX_ITEM_LIST_LENGTH", "metrics", "topk", "valid_metric",
               "state", "load_col", "show_progress", "stopping_step", "eval_batch_size"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory, tiny_bert, tiny_clip):
    """One two-seed benchmark on the tiny dataset: PMMRec (tiny text encoder), SASRec and a
    model name that does not exist."""
    root = tmp_path_factory.mktemp("bench")
    write_tiny_dataset(root, with_images=False)
    config = tiny_config(root, tiny_bert, tiny_clip, root)
    shared = {k: config.pop(k) for k in SHARED_KEYS}
    tiny = root / "tiny.yaml"  # PMMRec-only settings, as an overlay file
    tiny.write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # RecBole writes log/ and log_tensorboard/ into the working folder
        rows = bm.benchmark("tiny", f"PMMRec[{tiny}+text],SASRec,NoSuchModel", seeds=(2020, 2021),
                            output=root / "out", threads=1, epochs=1, **shared)
    return {"rows": rows, "root": root, "out": root / "out", "shared": shared}


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
        assert float(row["epochs"]) == 1 and float(row["peak_rss_mb"]) > 50
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
        assert config["seed"] == int(run["seed"]) and config["epochs"] == 1
        assert config["topk"] == [5] and config["MAX_ITEM_LIST_LENGTH"] == 10
        assert config["train_neg_sample_args"]["distribution"] == "none"
    shared = yaml.safe_load((bench["out"] / "shared.yaml").read_text(encoding="utf-8"))
    assert shared["eval_args"]["split"] == {"LS": "valid_and_test"} and shared["epochs"] == 1


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
