"""Transfer: multi-source pre-training, component-subset loading, single-modality targets,
zero-shot evaluation and cold-start splits, on tiny generated datasets."""

import pytest
import torch
import yaml
from recbole.data import data_preparation

from recbole_pmmrec.checkpoint import CheckpointError, load_checkpoint
from recbole_pmmrec.config import Config
from recbole_pmmrec.data.derived import make_cold_start_dataset, read_inter
from recbole_pmmrec.evaluation import unseen_items, unseen_target_loader
from recbole_pmmrec.quick_start import main, run_recbole
from recbole_pmmrec.registry import create_dataset, get_model
from recbole_pmmrec.transfer import COMPONENTS, TransferError, parse_components
from recbole_pmmrec.validation import COMPONENT_NAMES, SettingsError
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
    config = Config(model, dataset, config_dict=config_dict)
    data = create_dataset(config)
    train_data, _, _ = data_preparation(config, data)
    return config, get_model(model)(config, train_data._dataset)


def component_state(model, name):
    prefix = COMPONENTS[name].prefix
    return {k[len(prefix):]: v for k, v in model.state_dict().items() if k.startswith(prefix)}


def checkpoint_state(path, name):
    prefix = COMPONENTS[name].prefix
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
    runs = {}
    for name, start in (("fine-tuned", {"transfer_from": checkpoint}), ("scratch", {})):
        settings = target_config(root, tiny_bert, tiny_clip, tmp_path, item_modalities=["text"], **FAST, **start)
        runs[name] = run_recbole(model="PMMRec", dataset="textonly", config_dict=settings)["test_result"]["hit@5"]
    # two epochs from the text+image checkpoint beat two epochs from scratch (and chance, ~0.17)
    assert runs["fine-tuned"] > runs["scratch"] + 0.1, runs


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
    with pytest.raises(SettingsError, match=r"MAX_ITEM_LIST_LENGTH=20: the user encoder of transfer_from .* has 10 "
                                            r"positions; use at most 10"):  # fails at the settings, before data
        build_model(target_config(root, tiny_bert, tiny_clip, tmp_path, transfer_from=checkpoint,
                                  MAX_ITEM_LIST_LENGTH=20))
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
    with pytest.raises(SettingsError, match=r"transfer=\['item_embedding'\]: expected all, or a list of"):
        build_model(target_config(root, tiny_bert, tiny_clip, tmp_path, transfer_from=checkpoint,
                                  transfer=["item_embedding"]))
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        build_model(target_config(root, tiny_bert, tiny_clip, tmp_path, transfer_from=str(tmp_path / "no.pth")))


def test_unseen_test_items_with_pmmrec_and_sasrec(tmp_path, make_config):
    write_tiny_dataset(tmp_path, name="warm", n_users=80, seed=7)
    cold = make_cold_start_dataset(tmp_path, "warm", cold_ratio=0.2, by="time")
    config = Config("PMMRec", "warm-cold", config_dict=make_config(tmp_path))
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


def test_command_line_transfer_subset_and_zero_shot(pretrained, tiny_bert, tiny_clip, tmp_path, capsys):
    root, result = pretrained
    write_tiny_dataset(root, name="zs", seed=5)
    config_file = tmp_path / "target.yaml"
    config_file.write_text(yaml.safe_dump(target_config(root, tiny_bert, tiny_clip, tmp_path)), encoding="utf-8")
    argv = ["--model=PMMRec", "--dataset=zs", f"--config_files={config_file}",
            f"--transfer_from={result['saved_model_file']}", "--transfer=[text_encoder,user_encoder]", "--epochs=0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "test result: {'hit@5'" in out and "saved model" not in out
    assert parse_components("[text_encoder,user_encoder]") == parse_components(["text_encoder", "user_encoder"])
    assert parse_components("all") is None and parse_components("fusion") == ["fusion"]
    assert tuple(COMPONENTS) == COMPONENT_NAMES  # the settings rule knows every component


def test_an_unknown_test_items_value_fails_before_training(tiny_data, make_config):
    with pytest.raises(SettingsError, match=r"test_items='cold': expected one of \['all', 'unseen'\]"):
        run_recbole(model="SASRec", dataset="tiny", config_dict=make_config(tiny_data, test_items="cold"))


def test_a_transfer_reads_the_checkpoint_once(pretrained, tiny_bert, tiny_clip, tmp_path, monkeypatch):
    import recbole_pmmrec.checkpoint as checkpoint_module

    root, result = pretrained
    write_tiny_dataset(root, name="target", seed=3)
    reads = []
    load = checkpoint_module.load_checkpoint
    monkeypatch.setattr(checkpoint_module, "load_checkpoint", lambda *a, **k: reads.append(a[0]) or load(*a, **k))
    config, model = build_model(target_config(root, tiny_bert, tiny_clip, tmp_path,
                                              transfer_from=result["saved_model_file"]))
    assert [str(r) for r in reads] == [result["saved_model_file"]]  # settings and weights: one read
    assert same(component_state(model, "user_encoder"), checkpoint_state(result["saved_model_file"], "user_encoder"))
