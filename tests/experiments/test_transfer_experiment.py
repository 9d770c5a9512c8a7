"""pmmrec-transfer: the whole transfer experiment, and its low-data curve, on tiny data."""

import pytest

import recbole_pmmrec.experiments.transfer_experiment as experiment
from recbole_pmmrec.experiments.transfer_experiment import (
    FINE_TUNED, SCRATCH, ZERO_SHOT, transfer_experiment, transfer_experiments,
)
from recbole_pmmrec.validation import SettingsError
from tests.conftest import write_tiny_dataset


def tiny_settings(tiny_bert):
    """A text-only PMMRec with a frozen tiny encoder, on a 90-user dataset."""
    return {"item_modalities": ["text"], "text_encoder": str(tiny_bert), "text_trainable_layers": 0,
            "hidden_size": 32, "inner_size": 64, "n_heads": 2, "MAX_ITEM_LIST_LENGTH": 10,
            "user_inter_num_interval": "[3,inf)", "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "nid_weight": 0.0, "rcl_weight": 0.0, "train_batch_size": 16, "learning_rate": 3e-3,
            "topk": [5]}


def test_transfer_experiment_script_on_tiny_data(tmp_path, tiny_bert):
    write_tiny_dataset(tmp_path, name="whole", n_users=90, seed=9, with_images=False)
    tiny = tiny_settings(tiny_bert)
    rows, cold_rows = transfer_experiment(output=tmp_path / "out" / "seed_2020", data_path=str(tmp_path), epochs=1,
                                          threads=1, dataset="whole", overlay=None, valid_metric="NDCG@5", **tiny)
    assert [r["model"] for r in rows] == [
        "SASRec (scratch)", "PMMRec (scratch)", "PMMRec (zero-shot)", "PMMRec (fine-tuned)"]
    assert all(r["status"] == "ok" for r in rows + cold_rows)
    assert rows[2]["epochs"] == 0 and rows[3]["epochs"] == 1
    assert cold_rows[0]["n_test_rows"] == cold_rows[1]["n_test_rows"] > 0
    report = (tmp_path / "out" / "seed_2020" / "transfer.md").read_text()
    assert "PMMRec (fine-tuned)" in report and "whole-cold" in report and "test on `whole-src1` alone" in report
    # the seeds' summary reuses a seed that has its report instead of running it again
    summary = transfer_experiments([2020], output=tmp_path / "out", valid_metric="NDCG@5")
    assert "| PMMRec (zero-shot) | 0 |" in summary and "| SASRec |" in summary


def test_low_data_curve_on_tiny_data(tmp_path, tiny_bert, monkeypatch):
    write_tiny_dataset(tmp_path, name="whole", n_users=90, seed=9, with_images=False)
    output = tmp_path / "curve"
    report = transfer_experiments([2020], output=output, valid_metric="NDCG@5", fractions=[1.0, 0.5],
                                  data_path=str(tmp_path), epochs=2, stopping_step=1, threads=1, dataset="whole",
                                  overlay=None, **tiny_settings(tiny_bert))
    runs = {(r["model"], r["fraction"]): r for r in experiment._read_csv(output / "seed_2020" / "curve.csv")}
    assert list(runs) == [(ZERO_SHOT, 0.0), (SCRATCH, 0.5), (FINE_TUNED, 0.5), (SCRATCH, 1.0), (FINE_TUNED, 1.0)]
    half, whole = runs[SCRATCH, 0.5], runs[SCRATCH, 1.0]
    assert half["train_users"] == runs[FINE_TUNED, 0.5]["train_users"] == round(whole["train_users"] / 2)
    assert whole["train_users"] == runs[FINE_TUNED, 1.0]["train_users"] == 30  # the target's third of the users
    assert len({r["n_test_rows"] for r in runs.values()}) == 1  # every run tests every target user
    assert runs[ZERO_SHOT, 0.0]["epochs"] == 0 and all(1 <= r["epochs"] <= 2 for r in list(runs.values())[1:])
    difference = runs[FINE_TUNED, 0.5]["test_ndcg@5"] - half["test_ndcg@5"]
    assert (f"| 50% | 15 | {half['test_ndcg@5']:.4f} | {runs[FINE_TUNED, 0.5]['test_ndcg@5']:.4f} | "
            f"{difference:.4f} | {half['test_hit@5']:.4f} |") in report
    assert "| fraction of users | training users | scratch ndcg@5 | fine-tuned ndcg@5 |" in report
    assert (output / "transfer_curve.md").read_text(encoding="utf-8") == report
    assert (output / "transfer_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (output / "seed_2020" / "transfer_curve.md").is_file()
    # a seed that has every run asked for is reused, not run again; a bad fraction fails before any run
    monkeypatch.setattr(experiment, "transfer_experiment", lambda **kwargs: pytest.fail("seed run again"))
    assert transfer_experiments([2020], output=output, valid_metric="NDCG@5", fractions=[0.5, 1.0]) == report
    with pytest.raises(SettingsError, match=r"fraction 0.0: expected a number > 0"):
        transfer_experiments([2020], output=output, fractions=[0.0, 0.5])
