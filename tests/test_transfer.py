"""Transfer: multi-source pre-training, component-subset loading, single-modality targets,
zero-shot evaluation and cold-start splits, on tiny generated datasets."""

import json
import sys
import time

import pandas as pd
import pytest
import torch
import yaml
from recbole.data import data_preparation

from recbole_pmmrec.compat import load_checkpoint
from recbole_pmmrec.derived_datasets import make_cold_start_dataset, make_transfer_split, merge_sources, read_inter
from recbole_pmmrec.evaluation import ranking_only, unseen_items, unseen_target_loader
from recbole_pmmrec.quick_start import build_config, main, run_recbole
from recbole_pmmrec.registry import create_dataset, get_model
from recbole_pmmrec.transfer import COMPONENTS, TransferError, parse_components
from recbole_pmmrec.transfer_experiment import transfer_experiment, transfer_experiments
from tests.conftest import tiny_config, write_tiny_bert, write_tiny_dataset

FAST = {"epochs": 2, "nid_weight": 0.0, "rcl_weight": 0.0}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, tiny_bert, tiny_clip):
    """A text+image PMMRec pre-trained on the two sources ``a`` and ``b`` (mixed in one run)."""
    root = tmp_path_factory.mktemp("transfer")
    write_tiny_dataset(root, name="a", seed=1)
    write_tiny_dataset(root, name="b", seed=2)
    config = tiny_config(root, tiny_bert, tiny_clip, root, epochs=12)
    result = run_recbole(model="PMMRec", dataset="a,b", config_dict=config)
    return root, result


def build_model(config_dict, model="PMMRec", dataset="target"):
    config = build_config(model, dataset, config_dict=config_dict)
    data = create_dataset(config)
    train_data, _, _ = data_preparation(config, data)
    return config, get_model(model)(config, train_data._dataset)


def component_state(model, name):
    prefix = COMPONENTS[name]
    return {k[len(prefix):]: v for k, v in model.state_dict().items() if k.startswith(prefix)}


def checkpoint_state(path, name):
    prefix = COMPONENTS[name]
    return {k[len(prefix):]: v for k, v in load_checkpoint(path)["state_dict"].items() if k.startswith(prefix)}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def target_config(root, tiny_bert, tiny_clip, tmp_path, **overrides):
    """A config naming only data and run settings: the architecture comes from the checkpoint."""
    config = tiny_config(root, tiny_bert, tiny_clip, tmp_path, **overrides)
    for key in ("hidden_size", "inner_size", "fusion_n_heads", "MAX_ITEM_LIST_LENGTH", "text_encoder",
                "image_encoder", "text_trainable_layers", "image_trainable_layers"):
        if key not in overrides:
            del config[key]
    return config


def test_multi_source_pretraining_mixes_sources_without_collisions(pretrained):
    root, result = pretrained
    inter, _ = read_inter(root / "a+b" / "a+b.inter")
    assert set(inter["user_id"].str.split("|").str[0]) == {"a", "b"}
    assert inter["item_id"].nunique() == 60  # 30 items per source, the same raw ids kept apart
    assert set(result["test_result_by_source"]) == {"a", "b"}
    for source_result in result["test_result_by_source"].values():
        assert 0.0 <= source_result["ndcg@5"] <= 1.0
    manifest = load_checkpoint(result["saved_model_file"])["other_parameter"]["transfer_manifest"]
    assert manifest["source_datasets"] == ["a", "b"]
    assert manifest["item_modalities"] == ["text", "image"]
    assert manifest["architecture"]["hidden_size"] == 32
    assert set(manifest["components"]) == set(COMPONENTS)
    # the walk is learnable from content: the pre-trained model ranks far better than chance
    assert result["test_result"]["hit@5"] > 0.5


def test_per_source_ranking_only_scores_that_source(pretrained, tiny_bert, tiny_clip, tmp_path):
    root, result = pretrained
    config, model = build_model(tiny_config(root, tiny_bert, tiny_clip, tmp_path), dataset="a,b")
    candidates = torch.zeros(model.n_items, dtype=torch.bool)
    candidates[1:5] = True
    model.eval()
    interaction = {model.ITEM_SEQ: torch.tensor([[1, 2, 0]]), model.ITEM_SEQ_LEN: torch.tensor([2])}
    with ranking_only(model, candidates):
        scores = model.full_sort_predict(interaction)
    assert torch.isinf(scores[0, ~candidates]).all() and torch.isfinite(scores[0, candidates]).all()
    assert torch.isfinite(model.full_sort_predict(interaction)[0, 1:]).all()  # restored


def test_component_subset_loads_exactly_those_components(pretrained, tiny_bert, tiny_clip, tmp_path):
    root, result = pretrained
    write_tiny_dataset(root, name="target", seed=3)
    checkpoint = result["saved_model_file"]
    config, model = build_model(target_config(
        root, tiny_bert, tiny_clip, tmp_path, transfer_from=checkpoint, transfer=["fusion", "user_encoder"]
    ))
    assert config["hidden_size"] == 32  # inherited from the checkpoint, not the YAML's 768
    for name in ("fusion", "user_encoder"):
        assert same(component_state(model, name), checkpoint_state(checkpoint, name))
    for name in ("text_encoder", "image_encoder"):
        fresh, saved = component_state(model, name), checkpoint_state(checkpoint, name)
        assert not torch.equal(fresh["proj.weight"], saved["proj.weight"])


def test_transfer_all_into_a_text_only_target_then_fine_tune(pretrained, tiny_bert, tiny_clip, tmp_path):
    root, result = pretrained
    write_tiny_dataset(root, name="textonly", seed=4, with_images=False)
    checkpoint = result["saved_model_file"]
    config, model = build_model(
        target_config(root, tiny_bert, tiny_clip, tmp_path, transfer_from=checkpoint, item_modalities=["text"]),
        dataset="textonly",
    )
    assert model.item_encoder.image_encoder is None
    for name in ("text_encoder", "user_encoder"):
        assert same(component_state(model, name), checkpoint_state(checkpoint, name))
    fine_tuned = run_recbole(
        model="PMMRec",
        dataset="textonly",
        config_dict=target_config(root, tiny_bert, tiny_clip, tmp_path, transfer_from=checkpoint,
                                  item_modalities=["text"], **FAST),
    )
    assert fine_tuned["test_result"]["hit@5"] > 0.5


def test_zero_shot_evaluates_a_checkpoint_on_an_unseen_dataset(pretrained, tiny_bert, tiny_clip, tmp_path):
    root, result = pretrained
    write_tiny_dataset(root, name="zs", seed=5)
    base = target_config(root, tiny_bert, tiny_clip, tmp_path, epochs=0)
    zero_shot = run_recbole(model="PMMRec", dataset="zs",
                            config_dict={**base, "transfer_from": result["saved_model_file"]})
    assert zero_shot["saved_model_file"] is None and zero_shot["train_epoch_seconds"] == []
    untrained = run_recbole(model="PMMRec", dataset="zs",
                            config_dict=tiny_config(root, tiny_bert, tiny_clip, tmp_path, epochs=0))
    # same content rules, new users and item ids: the checkpoint ranks without any training
    assert zero_shot["test_result"]["ndcg@5"] > untrained["test_result"]["ndcg@5"] + 0.3


def test_shape_mismatch_names_the_component_and_the_setting(pretrained, tiny_bert, tiny_clip, tmp_path):
    root, result = pretrained
    write_tiny_dataset(root, name="target", seed=3)
    checkpoint = result["saved_model_file"]
    with pytest.raises(TransferError, match=r"component user_encoder .*position_embedding.weight: "
                                            r"checkpoint \[10, 32\], target \[5, 32\].*MAX_ITEM_LIST_LENGTH"):
        build_model(target_config(root, tiny_bert, tiny_clip, tmp_path, transfer_from=checkpoint,
                                  transfer="user_encoder", MAX_ITEM_LIST_LENGTH=5))
    with pytest.raises(TransferError, match=r"component text_encoder does not match.*hidden_size=32 vs 16"):
        build_model(target_config(root, tiny_bert, tiny_clip, tmp_path, transfer_from=checkpoint,
                                  hidden_size=16, inner_size=32))


def test_encoder_and_component_presence_errors(pretrained, tiny_bert, tiny_clip, tmp_path):
    root, result = pretrained
    write_tiny_dataset(root, name="target", seed=3)
    other_bert = write_tiny_bert(tmp_path / "other-bert")
    checkpoint = result["saved_model_file"]
    with pytest.raises(TransferError, match=r"component text_encoder: the checkpoint's text_encoder is"):
        build_model(target_config(root, tiny_bert, tiny_clip, tmp_path, transfer_from=checkpoint,
                                  text_encoder=str(other_bert)))
    with pytest.raises(TransferError, match=r"component image_encoder is not in the target model"):
        build_model(target_config(root, tiny_bert, tiny_clip, tmp_path, transfer_from=checkpoint,
                                  item_modalities=["text"], transfer=["image_encoder"]))
    with pytest.raises(TransferError, match=r"unknown component\(s\) \['item_embedding'\]"):
        build_model(target_config(root, tiny_bert, tiny_clip, tmp_path, transfer_from=checkpoint,
                                  transfer=["item_embedding"]))
    with pytest.raises(TransferError, match="checkpoint not found"):
        build_model(target_config(root, tiny_bert, tiny_clip, tmp_path, transfer_from=str(tmp_path / "no.pth")))


def test_cold_start_items_are_only_last_interactions(tmp_path):
    write_tiny_dataset(tmp_path, name="warm", n_users=40, seed=6)
    cold = make_cold_start_dataset(tmp_path, "warm", cold_ratio=0.2, by="random", seed=1)
    inter, _ = read_inter(tmp_path / "warm-cold" / "warm-cold.inter")
    inter["t"] = inter["timestamp"].astype(float)
    last = inter.sort_values("t").groupby("user_id").tail(1)
    assert cold and set(inter.loc[inter["item_id"].isin(cold), "t"]) <= set(last["t"])
    assert inter["item_id"].isin(cold).sum() == last["item_id"].isin(cold).sum() > 0


def test_unseen_test_items_with_pmmrec_and_sasrec(tmp_path, make_config):
    write_tiny_dataset(tmp_path, name="warm", n_users=80, seed=7)
    cold = make_cold_start_dataset(tmp_path, "warm", cold_ratio=0.2, by="time")
    config = build_config("PMMRec", "warm-cold", config_dict=make_config(tmp_path))
    dataset = create_dataset(config)
    train_data, _, test_data = data_preparation(config, dataset)
    unseen, n_rows = unseen_target_loader(unseen_items(train_data._dataset), test_data)
    tokens = dataset.field2id_token[dataset.iid_field]
    all_targets = test_data._dataset.inter_feat[dataset.iid_field].tolist()
    assert {tokens[i] for i in unseen._dataset.inter_feat[dataset.iid_field].tolist()} <= cold
    assert n_rows == sum(tokens[i] in cold for i in all_targets) > 0
    results = {}
    for model in ("PMMRec", "SASRec"):
        overrides = {"loss_type": "CE"} if model == "SASRec" else {}
        results[model] = run_recbole(model=model, dataset="warm-cold",
                                     config_dict=make_config(tmp_path, test_items="unseen", **FAST, **overrides))
    assert results["PMMRec"]["test_rows"] == results["SASRec"]["test_rows"] == n_rows
    for result in results.values():
        # fewer candidates, the same targets: ranking among the unseen items can only help
        among_unseen, among_all = result["test_result_among_unseen"], result["test_result"]
        assert among_unseen["hit@5"] >= among_all["hit@5"] and among_unseen["mrr@5"] >= among_all["mrr@5"]
    assert 0.0 <= results["SASRec"]["test_result"]["ndcg@5"] <= 1.0


def test_transfer_split_shares_no_user_and_no_item(tmp_path):
    write_tiny_dataset(tmp_path, name="whole", n_users=90, seed=8)
    sources, target = make_transfer_split(tmp_path, "whole", n_sources=2)
    frames = {name: read_inter(tmp_path / name / f"{name}.inter")[0] for name in (*sources, target)}
    source_users = set(pd.concat([frames[s] for s in sources])["user_id"])
    source_items = set(pd.concat([frames[s] for s in sources])["item_id"])
    assert not source_users & set(frames[target]["user_id"])
    assert not source_items & set(frames[target]["item_id"])
    assert all(len(f) > 0 for f in frames.values())


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


def test_merged_dataset_is_rebuilt_only_when_a_source_changes(tmp_path):
    write_tiny_dataset(tmp_path, name="a", n_users=5, seed=1, with_images=False)
    write_tiny_dataset(tmp_path, name="b", n_users=5, seed=2)
    folder = merge_sources(tmp_path, ["a", "b"], "a+b")
    content = [json.loads(line) for line in (folder / "a+b.content.jsonl").read_text().splitlines()]
    images = [row["image"] for row in content if row.get("image")]
    assert images and all(row["item_id"].startswith("b|") for row in content if row.get("image"))
    assert all((folder / image).is_file() for image in images)  # rebased onto the sources' folders
    stamp = (folder / "a+b.inter").stat().st_mtime_ns
    merge_sources(tmp_path, ["a", "b"], "a+b")
    assert (folder / "a+b.inter").stat().st_mtime_ns == stamp
    time.sleep(0.01)
    write_tiny_dataset(tmp_path, name="b", n_users=7, seed=2)
    merge_sources(tmp_path, ["a", "b"], "a+b")
    inter, _ = read_inter(folder / "a+b.inter")
    assert inter["user_id"].nunique() == 12
    with pytest.raises(ValueError, match="at least two distinct datasets"):
        merge_sources(tmp_path, ["a", "a"], "a+a")


def test_command_line_transfer_subset_and_zero_shot(pretrained, tiny_bert, tiny_clip, tmp_path, monkeypatch, capsys):
    root, result = pretrained
    write_tiny_dataset(root, name="zs", seed=5)
    config_file = tmp_path / "target.yaml"
    config_file.write_text(yaml.safe_dump(target_config(root, tiny_bert, tiny_clip, tmp_path)), encoding="utf-8")
    argv = ["--model=PMMRec", "--dataset=zs", f"--config_files={config_file}",
            f"--transfer_from={result['saved_model_file']}", "--transfer=[text_encoder,user_encoder]", "--epochs=0"]
    monkeypatch.setattr(sys, "argv", ["run_recbole", *argv])
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "test result: {'hit@5'" in out and "saved model" not in out
    assert parse_components("[text_encoder,user_encoder]") == parse_components(["text_encoder", "user_encoder"])
    assert parse_components("all") is None and parse_components("fusion") == ["fusion"]


def test_an_unknown_test_items_value_fails_before_training(tiny_data, make_config):
    with pytest.raises(ValueError, match="test_items must be 'all' or 'unseen', got 'cold'"):
        run_recbole(model="PMMRec", dataset="tiny", config_dict=make_config(tiny_data, test_items="cold"))
