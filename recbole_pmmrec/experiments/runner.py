"""One ``run_recbole`` in its own spawned process (so its peak RSS is its own), and its
result as a flat row."""

import multiprocessing
import resource
import shlex
import traceback
import warnings
from logging import getLogger


def command_line(name, dataset, config_files, config_dict):
    """The ``run_recbole`` command that reproduces one run."""
    args = ["run_recbole", f"--model={name}", f"--dataset={dataset}", f"--config_files={' '.join(config_files)}"]
    args += [f"--{k}={v}" for k, v in config_dict.items()]
    return " ".join(shlex.quote(a) for a in args)


def _log_file():
    files = [h.baseFilename for h in getLogger().handlers if hasattr(h, "baseFilename")]
    return files[0] if files else ""


def _child(function, args, threads, conn):
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole\.")  # pandas/amp deprecations
    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
        result = function(*args)
    except Exception as error:  # reported to the caller, which goes on
        traceback.print_exc()
        result = {"error": f"{type(error).__name__}: {error}".strip()}
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    conn.send(result)


def in_own_process(function, *args, threads=None):
    """``function(*args)`` (a module-level function returning a dict) in a spawned process,
    so that its peak RSS (``peak_rss_mb``) and its torch threads are its own; its result, or
    ``{"error": message}`` if it raised or the process died."""
    context = multiprocessing.get_context("spawn")
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(function, args, threads, writer))
    process.start()
    writer.close()
    try:
        result = reader.recv()
    except EOFError:
        result = None
    process.join()
    return result or {"error": f"the process died (exit code {process.exitcode})"}


def _run_recbole(name, dataset, config_files, config_dict):
    from recbole_pmmrec.quick_start import run_recbole

    try:
        result = run_recbole(name, dataset, config_files, {"console_log": "epochs", **(config_dict or {})})
    except Exception as error:  # reported in the model's row, with its log file
        traceback.print_exc()
        return {"error": f"{type(error).__name__}: {error}".strip(), "log_file": _log_file()}
    result = {k: (dict(v) if k.endswith("result") else v) for k, v in result.items()}
    return {**result, "log_file": _log_file()}


def run_isolated(name, dataset, config_files=None, config_dict=None, threads=None):
    """``run_recbole`` in a spawned process; its result dict plus ``peak_rss_mb`` and
    ``log_file``, or ``{"error": message}`` if it raised or died. The console shows the
    run's epoch and result lines only (``console_log: epochs``) unless ``config_dict``
    says otherwise."""
    return in_own_process(_run_recbole, name, dataset, config_files, config_dict, threads=threads)


def best_epoch(result):
    """The epoch (counted from 1) whose model was saved and tested: the last evaluated epoch
    with the best valid score (RecBole keeps a later epoch that equals the best); None when
    the run evaluated no epoch."""
    scores = result["valid_score_by_epoch"]
    return max((e + 1 for e, s in scores.items() if s == result["best_valid_score"]), default=None)


def run_row(result):
    """One run's result dict -> a flat CSV row (metrics as valid_*/test_*; ``epochs`` is the
    number of epochs run, ``fit_s`` their time with validation)."""
    if "error" in result:
        return {"status": f"failed: {result['error']}", "log_file": result.get("log_file", "")}
    epochs = result["train_epoch_seconds"]
    row = {
        "status": "ok",
        "epochs": len(epochs),
        "best_epoch": best_epoch(result),
        "s_per_epoch": sum(epochs) / max(len(epochs), 1),
        "eval_s": result["test_seconds"],
        "n_test_rows": result["test_rows"],
        "fit_s": result["fit_seconds"],
        "peak_rss_mb": result["peak_rss_mb"],
        "params_total": result["total_parameters"],
        "params_trainable": result["trainable_parameters"],
    }
    row.update({f"valid_{k}": v for k, v in result["best_valid_result"].items()})
    row.update({f"test_{k}": v for k, v in result["test_result"].items()})
    row.update({f"test_{k}_among_unseen": v for k, v in (result.get("test_result_among_unseen") or {}).items()})
    row.update(log_file=result["log_file"], saved_model_file=result["saved_model_file"] or "")
    return row


def run_curve(result):
    """One run's rows per epoch (counted from 1): training loss and seconds, and the valid
    score where the epoch was evaluated (else None)."""
    scores, losses = result["valid_score_by_epoch"], sorted(result["train_loss_by_epoch"].items())
    return [{"epoch": e + 1, "train_loss": float(loss), "train_s": seconds,
             "valid_score": float(scores[e]) if e in scores else None}
            for (e, loss), seconds in zip(losses, result["train_epoch_seconds"])]
