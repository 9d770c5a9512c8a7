"""pmmrec-transfer: the whole transfer experiment on tiny data."""

from recbole_pmmrec.experiments.transfer_experiment import transfer_experiment, transfer_experiments
from tests.conftest import write_tiny_dataset


def test_transfer_experiment_script_on_tiny_data(tmp_path, tiny_bert):
    write_tiny_dataset(tmp_path, name="whole", n_users=90, seed=9, with_images=False)
    tiny = {"item_modalities": ["text"], "text_encoder": str(tiny_bert), "text_trainable_layers": 0,
            "hidden_size": 32, "inner_size": 64, "n_heads": 2, "MAX_ITEM_LIST_LENGTH": 10,
            "user_inter_num_interval": "[3,inf)", "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "nid_weight": 0.0, "rcl_weight": 0.0, "train_batch_size": 16, "learning_rate": 3e-3,
            "topk": [5], "valid_metric": "NDCG@5"}
    rows, cold_rows = transfer_experiment(output=tmp_path / "out" / "seed_2020", data_path=str(tmp_path), epochs=1,
                                          threads=1, dataset="whole", overlay=None, **tiny)
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
