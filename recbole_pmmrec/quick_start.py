"""Entry points: ``run_recbole`` (train + test any model), ``load_data_and_model``, the CLI.

They mirror ``recbole.quick_start`` but use this plugin's Config and lookups, and never
import ``ray`` (RecBole's quick_start module imports it at top level).
"""

import argparse
import os
import re
import sys
import time
from logging import StreamHandler, getLogger

import torch
from recbole.data import data_preparation
from recbole.utils import init_logger, init_seed, set_color

from recbole_pmmrec.checkpoint import load_checkpoint, plain
from recbole_pmmrec.config import Config
from recbole_pmmrec.distributed import rank as distributed_rank
from recbole_pmmrec.evaluation import evaluate_by_source, unseen_items, unseen_target_loader
from recbole_pmmrec.registry import create_dataset, get_model, get_trainer

CONSOLE_LOGS = ("all", "epochs")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EPOCH_LINES = re.compile(r"epoch \d+ (training|evaluating)|best valid|test result")


def _epoch_lines_only(record):
    return record.levelno >= 30 or bool(_EPOCH_LINES.search(_ANSI.sub("", str(record.msg))))


def init_logging(config):
    """RecBole's logger; with ``console_log: epochs`` the console shows only epoch and
    result lines and warnings (the log file keeps everything)."""
    if config["console_log"] not in (None, *CONSOLE_LOGS):
        raise ValueError(f"console_log must be one of {CONSOLE_LOGS}, got {config['console_log']!r}")
    # RecBole creates ./log/<model> with a check-then-create that races between processes
    os.makedirs(os.path.join("log", config["model"]), exist_ok=True)
    init_logger(config)
    if config["console_log"] == "epochs":
        for handler in getLogger().handlers:
            if type(handler) is StreamHandler:
                handler.addFilter(_epoch_lines_only)


def _count_parameters(model):
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def build(config):
    """Seed, logger, filtered dataset, RecBole's split dataloaders and the model for
    ``config``: ``(dataset, train_data, valid_data, test_data, model)``."""
    init_seed(config["seed"], config["reproducibility"])
    init_logging(config)
    logger = getLogger()
    logger.info(config)
    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    if not config["single_spec"]:  # every process evaluates every user: results equal one process's
        valid_data, test_data = _whole_eval_loaders(config, (valid_data, test_data))
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(model)
    return dataset, train_data, valid_data, test_data, model


def _whole_eval_loaders(config, loaders):
    """The evaluation ``loaders`` over every user: RecBole shards them by process and pads
    the shards with repeated users, which would change the metrics."""
    config["single_spec"] = True  # read by the loaders as they are built
    try:
        return [type(loader)(config, loader._dataset, loader._sampler, shuffle=False) for loader in loaders]
    finally:
        config["single_spec"] = False


def _fit(trainer, config, train_data, valid_data, saved, on_valid=None):
    """Train (``epochs: 0``: evaluate the model as built, e.g. zero-shot from a checkpoint);
    ``on_valid(epoch, valid_score)`` is called after each evaluated epoch."""
    if config["epochs"] == 0:
        valid_result = trainer.evaluate(valid_data, load_best_model=False, show_progress=config["show_progress"])
        return valid_result[config["valid_metric"].lower()], valid_result, False
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"], callback_fn=on_valid
    )
    return best_valid_score, best_valid_result, saved


def run_recbole(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, argv=()):
    """Train, validate and test ``model`` on ``dataset`` (PMMRec or any RecBole model).

    ``argv`` holds command-line ``--key=value`` overrides (highest precedence). Returns a
    dict with the best valid score/result, the test result (per source too, for a merged
    dataset; among unseen items too, with ``test_items: unseen``), the saved model file,
    parameter counts, wall times, the training loss of each epoch and the valid score of
    each evaluated epoch. With ``epochs: 0`` nothing is trained: the model as built (e.g.
    from ``transfer_from``) is evaluated, zero-shot.
    """
    config = Config(model, dataset, config_file_list, config_dict, argv=argv)
    dataset, train_data, valid_data, test_data, model = build(config)
    logger = getLogger()
    total_params, trainable_params = _count_parameters(model)
    logger.info(
        set_color("parameters", "blue") + f": {total_params} total, {trainable_params} trainable"
    )

    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    if config["exclude_history_items"]:
        trainer.exclude_training_items(train_data._dataset)
    if config["resume_from"]:
        trainer.resume_checkpoint(config["resume_from"], train_data)
    start = time.perf_counter()
    valid_scores = {}  # epoch index (from 0, as logged) -> valid_metric, for each evaluated epoch
    best_valid_score, best_valid_result, trained = _fit(
        trainer, config, train_data, valid_data, saved, valid_scores.__setitem__
    )
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    n_test_rows = len(test_data._dataset)
    unseen = unseen_items(train_data._dataset) if config["test_items"] == "unseen" else None
    if unseen is not None:
        test_data, n_test_rows = unseen_target_loader(unseen, test_data)
        logger.info(f"test_items=unseen: {n_test_rows} test rows whose target is not in the training data")
    test_result = trainer.evaluate(
        test_data, load_best_model=trained, show_progress=config["show_progress"]
    )
    test_seconds = time.perf_counter() - start
    among_unseen = {}
    if unseen is not None:
        among_unseen = trainer.evaluate(test_data, load_best_model=False, candidates=unseen)
        logger.info(set_color("test result, ranking unseen items only", "yellow") + f": {among_unseen}")
    by_source = {}
    if config["source_datasets"]:
        by_source = evaluate_by_source(trainer, dataset, test_data, config["source_datasets"])
        for source, result in by_source.items():
            logger.info(set_color(f"test result [{source}]", "yellow") + f": {result}")

    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "test_rows": n_test_rows,
        "test_result_among_unseen": among_unseen,
        "test_result_by_source": by_source,
        "saved_model_file": trainer.saved_model_file if trained else None,
        "train_users": len(train_data._dataset.inter_feat[train_data._dataset.uid_field].unique()),
        "total_parameters": total_params,
        "trainable_parameters": trainable_params,
        "fit_seconds": fit_seconds,
        "test_seconds": test_seconds,
        "train_loss_by_epoch": dict(trainer.train_loss_dict),
        "valid_score_by_epoch": valid_scores,
        "train_epoch_seconds": list(trainer.epoch_seconds),
    }


def load_data_and_model(model_file, config_dict=None, trust_checkpoint=False):
    """Load a saved model with its filtered dataset and split dataloaders.

    The Config is rebuilt from the settings the checkpoint holds; ``config_dict`` overrides
    some of them (e.g. ``{"data_path": ...}`` when the dataset has moved). A RecBole-format
    checkpoint (a pickled Config) loads only with ``trust_checkpoint=True``.
    Returns ``(config, model, dataset, train_data, valid_data, test_data)``.
    """
    checkpoint = load_checkpoint(model_file, map_location="cpu", trust=trust_checkpoint)
    overrides = {"trust_checkpoint": trust_checkpoint, **(config_dict or {})}
    if "settings" in checkpoint:
        settings = checkpoint["settings"]
        config = Config(settings["model"], settings["dataset"], config_dict={**settings["config_dict"], **overrides})
    else:  # RecBole's format, trusted: its pickled Config
        config = checkpoint["config"]
        config["transfer_from"] = None  # the checkpoint holds every weight already
        for key, value in overrides.items():
            config[key] = value
        if not torch.cuda.is_available():
            config["device"] = torch.device("cpu")
    dataset, train_data, valid_data, test_data, model = build(config)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    model.eval()
    return config, model, dataset, train_data, valid_data, test_data


def _run_process(local_rank, queue, run_args, launch):
    """One process of a ``--nproc`` run; rank 0 sends its result back."""
    model, dataset, config_files, overrides = run_args
    result = run_recbole(model, dataset, config_files, {**launch, "local_rank": local_rank}, argv=overrides)
    if local_rank + launch["offset"] == 0:
        queue.put(plain({k: v for k, v in result.items() if k != "train_loss_by_epoch"}))


def run_processes(nproc, run_args, world_size=None, ip="localhost", port=5678, group_offset=0):
    """``run_recbole`` in ``nproc`` processes of this machine (torch's ``multiprocessing.spawn``,
    as RecBole does), ranks ``group_offset .. group_offset + nproc - 1`` of ``world_size``;
    returns rank 0's result (None on other machines)."""
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    launch = {"nproc": nproc, "world_size": world_size or nproc, "ip": ip, "port": port, "offset": group_offset}
    mp.spawn(_run_process, args=(queue, run_args, launch), nprocs=nproc, join=True)
    return None if queue.empty() else queue.get()


def main(argv=None):
    """``run_recbole --model=NAME --dataset=NAME [--config_files="a.yaml b.yaml"] [--nproc=N] [--key=value ...]``"""
    parser = argparse.ArgumentParser(
        prog="run_recbole",
        description="Train and test PMMRec or any RecBole model. Other --key=value pairs "
        "override config keys (see README).",
    )
    parser.add_argument("--model", "-m", default="PMMRec")
    parser.add_argument("--dataset", "-d", default="ml-100k-text")
    parser.add_argument("--config_files", default=None, help="space-separated YAML files")
    parser.add_argument("--nproc", type=int, default=1, help="processes on this machine (torch.distributed)")
    parser.add_argument("--world_size", type=int, default=None, help="processes on all machines (default nproc)")
    parser.add_argument("--ip", default="localhost", help="address of the machine running rank 0")
    parser.add_argument("--port", type=int, default=5678, help="port of rank 0")
    parser.add_argument("--group_offset", type=int, default=0, help="rank of this machine's first process")
    args, overrides = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    config_files = args.config_files.strip().split() if args.config_files else None
    run_args = (args.model, args.dataset, config_files, overrides)
    if args.nproc > 1 or (args.world_size or 1) > 1:
        result = run_processes(args.nproc, run_args, args.world_size, args.ip, args.port, args.group_offset)
    else:
        result = run_recbole(*run_args[:3], argv=overrides)
    if result is None or distributed_rank() != 0:
        return 0
    print(f"best valid: {plain(result['best_valid_result'])}")
    print(f"test result: {plain(result['test_result'])}")
    for source, source_result in result["test_result_by_source"].items():
        print(f"test result [{source}]: {plain(source_result)}")
    if result["saved_model_file"]:
        print(f"saved model: {result['saved_model_file']}")
    return 0
