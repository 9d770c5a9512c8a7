"""Each compatibility patch, tested against the behaviour it fixes."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from recbole_pmmrec import compat
from recbole_pmmrec.config import Config


def test_numpy_aliases_restored_for_recbole_metrics():
    from recbole.evaluator.metrics import NDCG

    compat.apply()
    # RecBole's NDCG uses np.float, which numpy 2 removed
    pos_index = np.array([[True, False, False], [False, False, True]])
    pos_len = np.array([1, 1])
    result = NDCG.__new__(NDCG)
    result.topk = [3]
    values = NDCG.metric_info(result, pos_index, pos_len)
    assert values[0].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert values[1].tolist() == pytest.approx([0.0, 0.0, 0.5])


@pytest.mark.skipif(not compat.numpy_needs_aliases(), reason="numpy 1 has the aliases")
def test_original_config_hook_fails_on_numpy2_and_ours_does_not():
    source = (
        "import numpy as np\n"
        "from recbole.config import Config\n"
        "try:\n"
        "    Config.compatibility_settings(None)\n"
        "except AttributeError as err:\n"
        "    print('FAILS', err)\n"
    )
    out = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True)
    assert "FAILS" in out.stdout  # RecBole alone cannot build a Config on numpy 2
    config = Config(model="SASRec", dataset="ml-100k", config_dict={"train_neg_sample_args": None})
    assert config["model"] == "SASRec"


def test_token_seq_remap_and_nan_fill(tmp_path):
    """RecBole's pandas-dependent paths: token_seq remapping and filling missing floats."""
    from recbole.data.dataset import Dataset

    folder = tmp_path / "feat"
    folder.mkdir()
    (folder / "feat.inter").write_text(
        "user_id:token\titem_id:token\ttimestamp:float\n"
        + "".join(f"u{u}\ti{i}\t{u * 10 + i}\n" for u in range(3) for i in range(4)),
        encoding="utf-8",
    )
    (folder / "feat.item").write_text(
        "item_id:token\ttags:token_seq\tprice:float\n"
        "i0\ta b\t1.0\ni1\tb\t\ni2\tc a\t3.0\ni3\ta\t5.0\n",
        encoding="utf-8",
    )
    config = Config(
        model="SASRec",
        dataset="feat",
        config_dict={"data_path": str(tmp_path), "train_neg_sample_args": None,
                     "load_col": None, "state": "WARNING"},
    )
    dataset = Dataset(config)
    tags = dataset.item_feat["tags"]
    assert list(tags.iloc[1]) == [dataset.token2id("tags", "a"), dataset.token2id("tags", "b")]
    price = dataset.item_feat["price"]
    assert not price.isna().any()  # under pandas 3 the NaN would silently stay
    assert price.iloc[dataset.token2id("item_id", "i1")] == pytest.approx(3.0)  # filled with the mean


def test_pandas_3_is_refused(monkeypatch):
    monkeypatch.setattr(pd, "__version__", "3.0.0")
    with pytest.raises(RuntimeError, match="pandas<3|pandas>=2.2,<3"):
        compat.check_pandas()


def test_recbole_checkpoints_holding_a_config_load_only_when_trusted(tmp_path):
    from recbole_pmmrec.checkpoint import CheckpointError, load_checkpoint

    config = Config(model="SASRec", dataset="ml-100k", config_dict={"train_neg_sample_args": None})
    path = tmp_path / "ckpt.pth"
    torch.save({"config": config, "state_dict": {"w": torch.ones(2)}}, path)
    if torch_needs_trusted_load():
        with pytest.raises(Exception, match="[Ww]eights only load failed"):
            torch.load(path)  # what RecBole's own trainer does
    with pytest.raises(CheckpointError, match="trust_checkpoint=True"):
        load_checkpoint(path, map_location="cpu")
    checkpoint = load_checkpoint(path, map_location="cpu", trust=True)
    assert checkpoint["config"]["model"] == "SASRec"
    assert torch.equal(checkpoint["state_dict"]["w"], torch.ones(2))


def torch_needs_trusted_load():
    major, minor = (int(p) for p in torch.__version__.split(".")[:2])
    return (major, minor) >= (2, 6)


def test_patches_are_applied_by_the_config_not_by_importing_the_package():
    source = (
        "import numpy as np\n"
        "import recbole_pmmrec\n"
        "print('float_' in np.__dict__)\n"
        "recbole_pmmrec.Config(model='SASRec', dataset='ml-100k', config_dict={'train_neg_sample_args': None})\n"
        "print('float_' in np.__dict__)\n"
    )
    out = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after = out.stdout.split()
    assert after == "True" and before == str(not compat.numpy_needs_aliases())


def test_entry_points_do_not_need_ray():
    source = (
        "import sys\n"
        "sys.modules['ray'] = None  # any 'import ray' now raises ImportError\n"
        "import recbole_pmmrec.quick_start, recbole_pmmrec.registry, recbole_pmmrec.experiments.benchmark\n"
        "from recbole_pmmrec.quick_start import run_recbole, load_data_and_model, main\n"
        "print('OK')\n"
    )
    out = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True)
    assert out.stdout.strip() == "OK", out.stderr[-2000:]


def test_recbole_model_lookup_leaves_autograd_out_of_anomaly_mode():
    source = (
        "import torch\n"
        "from recbole.utils import get_model\n"
        "get_model('SASRec')\n"
        "print(torch.is_anomaly_enabled())\n"
        "from recbole_pmmrec.registry import get_model as plugin_get_model\n"
        "plugin_get_model('GRU4Rec')\n"
        "print(torch.is_anomaly_enabled())\n"
    )
    out = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True)
    assert out.stdout.split() == ["True", "False"], out.stderr[-2000:]  # RecBole's import turns it on
