"""run_recbole trains, validates and tests PMMRec and RecBole baselines on the same folder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recbole_pmmrec import load_data_and_model, run_recbole
from recbole_pmmrec.registry import get_trainer

METRICS = {"hit@5", "ndcg@5", "mrr@5"}


def _losses(result):
    return [sum(v) if isinstance(v, tuple) else v for _, v in sorted(result["train_loss_by_epoch"].items())]


@pytest.mark.parametrize(
    "modalities, fusion",
    [(["text", "image"], "merge_attention"), (["text"], None), (["image"], None)],
    ids=["multimodal", "text-only", "image-only"],
)
def test_pmmrec_trains_and_tests(tiny_data, make_config, modalities, fusion):
    overrides = {"item_modalities": modalities}
    if fusion:
        overrides["fusion"] = fusion
    result = run_recbole("PMMRec", "tiny", config_dict=make_config(tiny_data, **overrides))
    assert set(result["test_result"]) == METRICS
    losses = _losses(result)
    assert losses[-1] < losses[0], losses
    assert Path(result["saved_model_file"]).is_file()
    # the walk pattern is learnable: well above a random ranking of 30 items (hit@5 ~ 0.17)
    assert result["test_result"]["hit@5"] > 0.3, result["test_result"]


@pytest.mark.parametrize("fusion", ["sum", "concat"])
def test_other_fusions_train(tiny_data, make_config, fusion):
    result = run_recbole("PMMRec", "tiny", config_dict=make_config(tiny_data, fusion=fusion, epochs=2))
    assert set(result["test_result"]) == METRICS


def test_sasrec_runs_on_the_same_folder(tiny_data, make_config):
    config = make_config(tiny_data, epochs=2)
    result = run_recbole("SASRec", "tiny", config_dict=config)
    assert set(result["test_result"]) == METRICS
    assert result["model"] == "SASRec"


def test_saved_model_loads_back_and_ranks(tiny_data, make_config):
    result = run_recbole("PMMRec", "tiny", config_dict=make_config(tiny_data, item_modalities=["text"]))
    config, model, dataset, _, _, test_data = load_data_and_model(result["saved_model_file"])
    assert config["model"] == "PMMRec"
    batch = next(iter(test_data))[0]
    scores = model.full_sort_predict(batch)
    assert scores.shape == (len(batch), dataset.item_num)
    # the reloaded model reproduces the stored test result through RecBole's evaluator
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    again = trainer.evaluate(test_data, load_best_model=False)
    assert again["ndcg@5"] == pytest.approx(result["test_result"]["ndcg@5"], abs=1e-4)


def test_cli_runs_pmmrec_with_config_files_and_overrides(tiny_data, make_config, tmp_path):
    import yaml

    config = make_config(tiny_data, item_modalities=["text"], epochs=1)
    epochs = config.pop("epochs")
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="2")
    out = subprocess.run(
        [sys.executable, "-m", "recbole_pmmrec", "--model=PMMRec", "--dataset=tiny",
         f"--config_files={config_file}", f"--epochs={epochs}"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "test result:" in out.stdout and "ndcg@5" in out.stdout
