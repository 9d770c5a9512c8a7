"""Two processes on the CPU (gloo): the gathered objectives and their gradients equal one
process on the concatenated batch, and a run_recbole --nproc=2 run trains and evaluates
like one process."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from recbole_pmmrec import load_data_and_model
from recbole_pmmrec.quick_start import main
from recbole_pmmrec.registry import get_trainer
from tests.conftest import build_model, tiny_config, write_tiny_dataset

NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0}
ALL_OBJECTIVES = {"nicl_weight": 1.0, "nid_weight": 1.0, "rcl_weight": 1.0}


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _losses_and_grads(config, data_path, interaction, noisy_seq, noise_labels):
    """Loss terms and gradients of PMMRecTrainer's objective on ``interaction`` (eval mode:
    no dropout, so every process computes the same vectors for the same item)."""
    torch.manual_seed(0)
    config, model, *_ = build_model(lambda path, **o: config, data_path)
    trainer = get_trainer(config["MODEL_TYPE"], "PMMRec")(config, model)
    model.eval()
    losses = trainer.objective_losses(interaction, noisy_seq, noise_labels)
    sum(losses).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return [float(x.detach()) for x in losses], grads


def _rank(local_rank, port, config, data_path, interaction, noisy_seq, noise_labels, results_file):
    dist.init_process_group("gloo", init_method=f"tcp://localhost:{port}", rank=local_rank, world_size=2)
    torch.set_num_threads(1)
    half = len(interaction) // 2
    rows = slice(local_rank * half, (local_rank + 1) * half)
    losses, grads = _losses_and_grads(config, data_path, interaction[rows], noisy_seq[rows], noise_labels[rows])
    for grad in grads.values():  # what DDP does: the mean over processes
        dist.all_reduce(grad)
        grad /= 2
    summed = torch.tensor(losses)
    dist.all_reduce(summed)
    if local_rank == 0:
        torch.save(((summed / 2).tolist(), grads), results_file)
    dist.destroy_process_group()


def test_two_processes_train_one_processs_objective_on_the_concatenated_batch(tmp_path, tiny_bert, tiny_clip):
    write_tiny_dataset(tmp_path)
    config = tiny_config(tmp_path, tiny_bert, tiny_clip, tmp_path, **NO_DROPOUT, **ALL_OBJECTIVES)
    config_obj, model, train, *_ = build_model(lambda path, **o: config, tmp_path)
    trainer = get_trainer(config_obj["MODEL_TYPE"], "PMMRec")(config_obj, model)
    interaction = next(iter(train))
    torch.manual_seed(1)
    noisy_seq, noise_labels = trainer.corrupt(interaction)
    one_losses, one_grads = _losses_and_grads(config, tmp_path, interaction, noisy_seq, noise_labels)

    results_file = tmp_path / "rank0.pt"
    mp.spawn(_rank, args=(_free_port(), config, tmp_path, interaction, noisy_seq, noise_labels, results_file),
             nprocs=2, join=True)
    two_losses, two_grads = torch.load(results_file)
    assert len(one_losses) == 4  # rec, NICL, NID, RCL
    assert two_losses == pytest.approx(one_losses, rel=1e-5, abs=1e-6)
    assert two_grads.keys() == one_grads.keys()
    for name, grad in one_grads.items():
        assert torch.allclose(two_grads[name], grad, rtol=1e-4, atol=1e-6), name


def test_a_two_process_run_trains_and_evaluates_like_one_process(tmp_path, make_config, capsys):
    import yaml

    write_tiny_dataset(tmp_path, n_users=80)
    config = make_config(tmp_path, item_modalities=["text"], epochs=4)
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    args = ["--model=PMMRec", "--dataset=tiny", f"--config_files={config_file}"]
    results = {}
    for nproc in (1, 2):
        assert main(args + [f"--nproc={nproc}", f"--port={_free_port()}"]) == 0
        out = capsys.readouterr().out
        results[nproc] = eval(out.split("test result: ", 1)[1].splitlines()[0])
        saved = out.split("saved model: ", 1)[1].splitlines()[0]
    # the saved two-process model, evaluated by one process, gives the reported result
    config, model, _, _, _, test_data = load_data_and_model(saved)
    trainer = get_trainer(config["MODEL_TYPE"], "PMMRec")(config, model)
    assert dict(trainer.evaluate(test_data, load_best_model=False)) == pytest.approx(results[2], abs=1e-4)
    # both learn the walk (random: hit@5 ~0.17) and land close to each other
    assert min(results[1]["hit@5"], results[2]["hit@5"]) > 0.4
    assert abs(results[1]["hit@5"] - results[2]["hit@5"]) < 0.15, results


def test_torchrun_starts_a_distributed_run(tmp_path, make_config):
    import os
    import subprocess
    import sys

    import yaml

    write_tiny_dataset(tmp_path)
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(make_config(tmp_path, item_modalities=["text"], epochs=1)), encoding="utf-8")
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    out = subprocess.run(
        [torchrun, "--nproc_per_node=2", f"--master_port={_free_port()}", "-m", "recbole_pmmrec",
         "--model=PMMRec", "--dataset=tiny", f"--config_files={config_file}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("test result:") == 1  # printed by rank 0 only
    assert len(list((tmp_path / "log" / "PMMRec").glob("*.log"))) == 2  # one RecBole log per process
