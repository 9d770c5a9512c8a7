"""Recommendations from a checkpoint: the same top-K as full_sort_predict, new items and
another dataset's catalogue without retraining, the command, and bad input."""

import json

import pytest
import torch

from recbole_pmmrec import load_data_and_model, run_recbole
from recbole_pmmrec.checkpoint import CheckpointError
from recbole_pmmrec.data.content import ContentError
from recbole_pmmrec.recommend import Recommender, RecommendError, _top_k, main
from tests.conftest import write_tiny_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert, tiny_clip):
    """A text+image PMMRec trained on the tiny walk dataset, and that dataset's folder."""
    from tests.conftest import tiny_config

    root = tmp_path_factory.mktemp("recommend")
    write_tiny_dataset(root)
    result = run_recbole("PMMRec", "tiny", config_dict=tiny_config(root, tiny_bert, tiny_clip, root))
    return result["saved_model_file"], root / "tiny"


@pytest.fixture
def recommender(trained):
    checkpoint, folder = trained
    rec = Recommender.from_checkpoint(checkpoint)
    rec.add_items(folder, progress=False)
    return rec


def test_recommend_ranks_exactly_as_full_sort_predict(trained):
    checkpoint, folder = trained
    config, model, dataset, _, _, test_data = load_data_and_model(checkpoint)
    interaction = next(iter(test_data))[0]
    expected = model.full_sort_predict(interaction)[:, 1:].topk(10, dim=1).indices + 1
    tokens = dataset.field2id_token[dataset.iid_field]
    rec = Recommender.from_checkpoint(checkpoint)
    rec.add_items(folder, progress=False)
    histories = [[tokens[i] for i in row[:length]] for row, length in
                 zip(interaction["item_id_list"].tolist(), interaction["item_length"].tolist())]
    got = rec.recommend_batch(histories, k=10, exclude_history=False)
    assert [[item for item, _ in row] for row in got] == [[tokens[i] for i in row] for row in expected.tolist()]


def test_items_added_after_training_are_recommended_without_retraining(recommender, trained):
    _, folder = trained
    history = ["i3", "i4", "i5"]  # the walk goes on with i6
    before = recommender.recommend(history, k=30)
    assert "i6" in [item for item, _ in before[:5]] and len(before) == 30 - 3  # history items excluded
    # a new item: the same text and image as i6, under a new id
    row = next(json.loads(line) for line in (folder / "tiny.content.jsonl").read_text().splitlines()
               if json.loads(line)["item_id"] == "i6")
    recommender.add_items([{**row, "item_id": "brand-new", "image": str(folder / row["image"])}])
    scores = dict(recommender.recommend(history, k=31))
    assert scores["brand-new"] == pytest.approx(scores["i6"], rel=1e-4)
    # a history item given by its content only (not in the catalogue)
    as_content = recommender.recommend(["i3", "i4", {"text": row["text"].replace("6", "5"), "image": None}], k=3)
    assert as_content and all(item != "i3" for item, _ in as_content)


def test_a_checkpoint_recommends_over_another_datasets_catalogue(trained, tmp_path):
    checkpoint, folder = trained
    other = write_tiny_dataset(tmp_path, name="other", n_items=40, seed=9)
    away = folder.rename(folder.with_name("tiny-away"))  # the training data is not needed
    try:
        rec = Recommender.from_checkpoint(checkpoint)
        assert rec.add_items(other / "other.content.jsonl", progress=False) == 40
        top = rec.recommend(["i10", "i11", "i12"], k=5)
    finally:
        away.rename(folder)
    assert "i13" in [item for item, _ in top]  # the walk learnt on one catalogue, applied to another
    assert len({item for item, _ in top}) == 5 and all(item.startswith("i") for item, _ in top)


def test_the_catalogue_is_saved_once_and_loaded_by_the_same_checkpoint_only(recommender, tmp_path, trained):
    path = tmp_path / "catalogue.pt"
    recommender.save_catalogue(path)
    again = Recommender.from_checkpoint(trained[0])
    again.load_catalogue(path)
    assert again.recommend(["i1", "i2"], k=5) == recommender.recommend(["i1", "i2"], k=5)
    other = Recommender(again.config, {k: v + 1 if k.startswith("item_encoder.") and v.is_floating_point() else v
                                       for k, v in again._state.items()}, {"item_modalities": ["text", "image"]})
    with pytest.raises(RecommendError, match="encoded with another checkpoint"):
        other.load_catalogue(path)


def test_bad_input_is_named(recommender, trained, tmp_path, make_config, caplog):
    with pytest.raises(RecommendError, match=r"not in the catalogue: \['nope', 'gone'\]"):
        recommender.recommend(["i1", "nope", "gone"])
    assert recommender.recommend(["i1", "nope"], skip_unknown=True)
    assert "1 unknown item(s) skipped: ['nope']" in caplog.text
    with pytest.raises(RecommendError, match="history 0 is empty"):
        recommender.recommend([])
    with pytest.raises(RecommendError, match=r"none of the checkpoint's modalities .*\['bare'\]"):
        recommender.add_items([{"item_id": "bare"}])
    with pytest.raises(RecommendError, match=r"candidate\(s\) not in the catalogue: \['x'\]"):
        recommender.recommend(["i1"], candidates=["i2", "x"])
    write_tiny_dataset(tmp_path, name="plain")
    sasrec = run_recbole("SASRec", "plain", config_dict=make_config(tmp_path, epochs=1, loss_type="CE"))
    with pytest.raises(CheckpointError, match="is not a PMMRec checkpoint"):
        Recommender.from_checkpoint(sasrec["saved_model_file"])


def test_content_a_text_only_checkpoint_cannot_use_is_named(tmp_path, tiny_bert, tiny_clip, caplog):
    from tests.conftest import tiny_config

    folder = write_tiny_dataset(tmp_path)
    result = run_recbole("PMMRec", "tiny", config_dict=tiny_config(tmp_path, tiny_bert, tiny_clip, tmp_path,
                                                                   item_modalities=["text"], epochs=1))
    rec = Recommender.from_checkpoint(result["saved_model_file"])
    assert rec.add_items(folder, progress=False) == 30
    assert "trained on ['text']: the items' ['image'] are ignored" in caplog.text
    with pytest.raises(RecommendError, match=r"none of the checkpoint's modalities \['text'\]: \['pic'\]"):
        rec.add_items([{"item_id": "pic", "image": str(folder / "images" / "i1.png")}])
    with pytest.raises(ContentError, match=r"\['i1'\] appear more than once"):
        rec.add_items([{"item_id": "i1", "text": "a"}, {"item_id": "i1", "text": "b"}])


def test_candidates_restrict_the_ranking(recommender):
    top = recommender.recommend(["i1", "i2"], k=5, candidates=["i9", "i3", "i20"])
    assert [item for item, _ in top][0] == "i3" and {item for item, _ in top} == {"i9", "i3", "i20"}


def test_chunked_top_k_equals_a_full_sort():
    torch.manual_seed(0)
    states, vectors = torch.randn(4, 8), torch.randn(103, 8)
    excluded = [[5, 60], [], [102], [0, 1, 2]]
    scores, rows = _top_k(states, vectors, 10, excluded=excluded, chunk=7)
    full = states @ vectors.T
    for row, items in enumerate(excluded):
        full[row, items] = float("-inf")
    assert torch.equal(rows, full.topk(10, dim=1).indices) and torch.allclose(scores, full.topk(10, dim=1).values)


def test_the_command_recommends_for_one_history_and_for_a_file(trained, tmp_path, capsys):
    checkpoint, folder = trained
    catalogue = tmp_path / "catalogue.pt"
    assert main(["--checkpoint", checkpoint, "--items", str(folder), "--save-catalogue", str(catalogue),
                 "--history", "i3,i4,i5", "-k", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and "i6" in [line.split("\t")[0] for line in lines]
    requests = tmp_path / "histories.jsonl"
    requests.write_text(json.dumps({"user": "u1", "history": ["i3", "i4", "i5"]}) + "\n"
                        + json.dumps({"user": "u2", "history": ["i10"]}) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["--checkpoint", checkpoint, "--catalogue", str(catalogue), "--histories", str(requests),
                 "--output", str(out), "-k", "5"]) == 0
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["user"] for r in results] == ["u1", "u2"] and "i6" in results[0]["items"]
    assert len(results[1]["scores"]) == 5 and results[1]["scores"] == sorted(results[1]["scores"], reverse=True)
    assert main(["--checkpoint", checkpoint, "--catalogue", str(catalogue), "--history", "zzz"]) == 2
    assert "not in the catalogue: ['zzz']" in capsys.readouterr().err
    assert main(["--checkpoint", checkpoint, "--catalogue", str(catalogue), "--history", ""]) == 2
    assert "history 0 is empty" in capsys.readouterr().err
    valid = requests.read_text() + "\n" + json.dumps({"user": "u3", "history": ["zzz"]}) + "\n"
    for text, message in ((valid + "{bad\n", "line 5: not valid JSON"),
                          (valid, "line 4: item(s) not in the catalogue")):
        requests.write_text(text)  # errors name the line of the file (line 3 is blank)
        assert main(["--checkpoint", checkpoint, "--catalogue", str(catalogue), "--histories", str(requests)]) == 2
        assert f"{requests}, {message}" in capsys.readouterr().err
