"""Checkpoints: plain data loaded with weights_only, crafted pickles refused and never run,
atomic writes, runs that resume after a kill, and the same seed giving the same metrics."""

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from recbole_pmmrec import load_data_and_model, run_recbole
from recbole_pmmrec.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tests.conftest import write_tiny_dataset

TEXT_ONLY = {"item_modalities": ["text"], "epochs": 2}


class RunsCode:
    """Unpickling this object runs a shell command (what a crafted checkpoint could do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_checkpoints_hold_only_tensors_and_plain_data(tiny_data, make_config):
    result = run_recbole("PMMRec", "tiny", config_dict=make_config(tiny_data, **TEXT_ONLY))
    checkpoint = torch.load(result["saved_model_file"], weights_only=True)  # never runs code
    assert checkpoint["format"] == "recbole-pmmrec/1"
    assert checkpoint["settings"]["model"] == "PMMRec" and checkpoint["settings"]["dataset"] == "tiny"
    assert checkpoint["config"]["item_modalities"] == ["text"] and checkpoint["config"]["device"] == "cpu"
    assert "transfer_manifest" in checkpoint["other_parameter"]
    assert not Path(result["saved_model_file"]).with_suffix(".resume.pth").exists()  # finished runs leave none


def test_a_crafted_pickle_is_refused_by_default_and_never_executed(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "crafted.pth"
    torch.save({"config": RunsCode(marker), "state_dict": {}}, path)
    for load in (lambda: load_checkpoint(path), lambda: load_data_and_model(path)):
        with pytest.raises(CheckpointError, match="would run code from the file.*trust_checkpoint=True"):
            load()
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="trust_checkpoint"):
        run_recbole("PMMRec", "tiny", config_dict={"transfer_from": str(path), "data_path": str(tmp_path)})
    assert not marker.exists()
    load_checkpoint(path, trust=True)  # the explicit option does unpickle it
    assert marker.exists()


def test_a_killed_write_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "model.pth"
    save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    writer = (
        "import sys, torch\n"
        "from recbole_pmmrec.checkpoint import save_checkpoint\n"
        "save_checkpoint({'state_dict': {'w': torch.zeros(300_000_000, dtype=torch.uint8)}}, sys.argv[1])\n"
    )
    process = subprocess.Popen([sys.executable, "-c", writer, str(path)])
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".model.pth.*.tmp")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL  # killed while writing, not finished
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.ones(3))


def _run_command(config_file, checkpoint_dir, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="2")
    return [sys.executable, "-m", "recbole_pmmrec", "--model=PMMRec", "--dataset=tiny",
            f"--config_files={config_file}", f"--checkpoint_dir={checkpoint_dir}", *extra], env


def _test_result(stdout):
    line = next(line for line in stdout.splitlines() if line.startswith("test result:"))
    return ast.literal_eval(line.split(":", 1)[1].strip())


def test_a_run_killed_mid_training_resumes_to_the_uninterrupted_result(tmp_path, make_config):
    write_tiny_dataset(tmp_path, n_users=200)
    config = make_config(tmp_path, item_modalities=["text"], epochs=6, train_batch_size=8)
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")

    command, env = _run_command(config_file, tmp_path / "whole")
    whole = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]

    command, env = _run_command(config_file, tmp_path / "killed")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path)
    writes, last = 0, None
    deadline = time.monotonic() + 600
    while writes < 3 and process.poll() is None and time.monotonic() < deadline:  # epoch 2 has started
        files = list((tmp_path / "killed").glob("*.resume.pth"))
        stamp = files[0].stat().st_mtime_ns if files else None
        if stamp is not None and stamp != last:
            writes, last = writes + 1, stamp
        time.sleep(0.01)
    time.sleep(0.3)  # into the epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    resume_file = next((tmp_path / "killed").glob("*.resume.pth"))
    assert load_checkpoint(resume_file)["epoch"] >= 2

    command, env = _run_command(config_file, tmp_path / "killed", f"--resume_from={resume_file}")
    resumed = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _test_result(resumed.stdout) == pytest.approx(_test_result(whole.stdout), abs=1e-6)
    assert not resume_file.exists()


def test_resuming_with_other_settings_is_refused(tmp_path, make_config):
    write_tiny_dataset(tmp_path)
    path = tmp_path / "state.resume.pth"
    state = {"settings": {"model": "PMMRec", "dataset": "tiny", "config_dict": {"hidden_size": 64}}, "rng": {}}
    save_checkpoint(state, path)
    with pytest.raises(CheckpointError, match=r"settings differ: .*hidden_size: 64 vs 32"):
        run_recbole("PMMRec", "tiny", config_dict=make_config(tmp_path, resume_from=str(path), **TEXT_ONLY))


@pytest.mark.parametrize("model", ["PMMRec", "SASRec", "GRU4Rec"])
def test_the_same_seed_gives_the_same_metrics(tiny_data, make_config, model):
    overrides = {"item_modalities": ["text", "image"]} if model == "PMMRec" else {"loss_type": "CE"}
    results = [run_recbole(model, "tiny", config_dict=make_config(tiny_data, epochs=2, **overrides))
               for _ in range(2)]
    assert results[0]["test_result"] == results[1]["test_result"]
    assert results[0]["train_loss_by_epoch"] == results[1]["train_loss_by_epoch"]


def test_the_best_model_of_a_run_is_restored_without_reading_its_frozen_encoder(tiny_data, make_config):
    from recbole_pmmrec.registry import get_trainer
    from tests.conftest import build_model

    config, model, train, valid, test = build_model(make_config, tiny_data, item_modalities=["text"],
                                                    text_trainable_layers=1)
    trainer = get_trainer(config["MODEL_TYPE"], "PMMRec")(config, model)
    trainer.fit(train, valid, verbose=False, saved=True)
    saved = load_checkpoint(trainer.saved_model_file)["state_dict"]  # the best epoch's weights
    in_memory = {k: v.clone() for k, v in model.state_dict().items()}
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert frozen and trainable
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.add_(1.0)
    trainer.load_weights(trainer.saved_model_file)
    state = model.state_dict()
    for name in trainable:  # restored from the file
        assert torch.equal(state[name], saved[name]), name
    for name in frozen:  # frozen weights are the run's own, never read back (here: visibly changed)
        assert torch.equal(saved[name], in_memory[name]) and torch.equal(state[name], saved[name] + 1.0), name
    other = Path(trainer.saved_model_file).with_name("copy.pth")
    other.write_bytes(Path(trainer.saved_model_file).read_bytes())
    trainer.load_weights(str(other))  # any other file is loaded whole
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
