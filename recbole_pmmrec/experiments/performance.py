"""``pmmrec-performance``: what PMMRec's training and evaluation cost here, measured in one run.

    pmmrec-performance [--data_path=dataset/] [--mm_dataset=ml-100k-mm] [--output=bench_out/performance]

Every measurement runs in its own spawned process (its peak RSS is its own) on the bundled
``ml-100k-text`` (and, where given, a multi-modal dataset), one after the other, and the
report gives ratios taken within this one run (this machine is noisy):

- a training step with the top K text blocks trained (K = 1, 2; MiniLM, 6 blocks, and a
  12-block encoder of MiniLM's shape with random weights: timing does not depend on them),
  with the boundary cache vs recomputing the frozen blocks, beside the floor (the top K
  blocks alone, forward and backward, on the batch's unique items); the cache's build time
  and bytes per item;
- images per second of the image pipeline (decoding, resizing, cropping);
- text + image (frozen encoders, cached) vs text only, per training step;
- a training step in float32 vs bfloat16 autocast;
- training samples per second with 1 vs 2 processes;
- a full-ranking test pass, PMMRec vs SASRec;
- a synthetic catalogue of 200,000 items written through the same cache writer, above the
  RAM budget (read from disk per batch): the training steps' peak RSS against the budget
  plus the model;
- recommendation latency per query over 10,000 and 1,000,000 catalogue items (synthetic
  vectors), with 1 thread and all threads.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from dataset_converters.atomic import write_text
from recbole_pmmrec.experiments.report import write_csv
from recbole_pmmrec.experiments.runner import in_own_process

DEFAULT_DATASET = "ml-100k-text"
RESULT_KEYS = ("hit@10", "ndcg@10")


# --- helpers run inside the measuring process ------------------------------------------

def _trainer(dataset, settings):
    """Config, PMMRec, its trainer and the training batches for ``settings``."""
    import torch
    from recbole.data import data_preparation

    from recbole_pmmrec.config import Config
    from recbole_pmmrec.registry import create_dataset, get_model, get_trainer

    config = Config("PMMRec", dataset, config_dict={"state": "WARNING", "show_progress": False, **settings})
    data = create_dataset(config)
    train, _, _ = data_preparation(config, data)
    torch.manual_seed(0)
    model = get_model("PMMRec")(config, train._dataset)
    return config, model, get_trainer(config["MODEL_TYPE"], "PMMRec")(config, model), list(train)


def _median_step(trainer, batches, steps, autocast=False):
    """Median wall time of a training step (losses, backward, optimiser step) and the last loss."""
    import torch

    times, loss = [], None
    trainer.model.train()
    for step in range(steps + 2):  # two warm-up steps
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            losses = trainer.training_losses(batches[step % len(batches)])
        loss = sum(losses) if isinstance(losses, tuple) else losses
        trainer.optimizer.zero_grad()
        loss.backward()
        trainer.optimizer.step()
        if step >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times), float(loss)


PRECISION_STEPS = 4  # timed steps of the float32 / bfloat16 comparison (bfloat16 is emulated, slow, on some CPUs)
CPU_WIDTH = {"hidden_size": 128, "inner_size": 512, "fusion_n_heads": 4}  # the cpu overlay's width
# the text + image fusions measured: label -> (fusion, its settings)
FUSIONS = {
    "merge_attention over every token": ("merge_attention", {}),
    "merge_attention, image grid 2": ("merge_attention", {"fusion_image_grid": 2}),
    "merge_attention, image grid 2, text runs 4": ("merge_attention", {"fusion_image_grid": 2, "fusion_text_tokens": 4}),
    "sum": ("sum", {}),
}


def text_blocks(data_path, encoder, trainable, cached, steps):
    """With the top ``trainable`` text blocks trained and the boundary cache on or off: the
    item-tower step (the batch's unique items through the text encoder, forward and
    backward: what the cache changes), the whole training step (the cpu overlay's width),
    and with the cache its build time, bytes per item and the floor."""
    cache_dir = tempfile.mkdtemp(prefix="pmmrec-cache-")
    settings = {"data_path": data_path, "item_modalities": ["text"], "text_encoder": encoder,
                "text_trainable_layers": trainable, "cache_frozen_item_features": cached,
                "feature_cache_dir": cache_dir, **CPU_WIDTH}
    _, model, trainer, batches = _trainer(DEFAULT_DATASET, settings)
    result = {}
    if cached:
        start = time.perf_counter()
        cache = model.item_encoder.feature_cache("text")
        result["cache_build_s"] = time.perf_counter() - start
        result["cache_bytes_per_item"] = cache.nbytes / model.n_items
        result["cache_bytes_per_value"] = cache.itemsize
    result["items_s"], result["unique_items"] = _item_tower_step(model, batches, steps, top_only=False)
    if cached:
        result["floor_s"], _ = _item_tower_step(model, batches, steps, top_only=True)
    result["step_s"], _ = _median_step(trainer, batches, steps)
    return result


def _item_tower_step(model, batches, steps, top_only):
    """Median time of the batch's unique items through the text tower, forward and backward
    (``top_only``: the trainable top blocks alone on their cached input, in the same groups of
    similar text length as the item encoder: the floor)."""
    import torch

    from recbole_pmmrec.model.item_encoder import LENGTH_GROUPS

    item_encoder, times, sizes = model.item_encoder, [], []
    model.train()
    for step in range(steps + 2):
        batch = batches[step % len(batches)]
        ids = torch.unique(torch.cat([batch[model.ITEM_SEQ].flatten(), batch[model.POS_ITEM_ID]]))
        ids = ids[ids > 0]
        groups = [ids[g] for g in torch.argsort(item_encoder.text_mask[ids].sum(dim=1)).tensor_split(LENGTH_GROUPS)]
        inputs = [_cached_input(item_encoder, group) for group in groups] if top_only else None
        start = time.perf_counter()
        if top_only:
            encoder = item_encoder.text_encoder
            out = sum(encoder.proj(encoder.top(hidden, mask)).sum() for hidden, mask in inputs)
        else:
            out = item_encoder(ids).fused.sum()
        out.backward()
        if step >= 2:
            times.append(time.perf_counter() - start)
            sizes.append(len(ids))
    return statistics.median(times), statistics.median(sizes)


def _cached_input(item_encoder, ids):
    """The cached boundary states of ``ids`` and their token mask, up to their longest text."""
    mask = item_encoder.text_mask[ids]
    width = int(mask.sum(dim=1).max())
    return item_encoder.feature_cache("text").rows(ids, width).float(), mask[:, :width]


def precision(data_path, autocast, steps):
    """Step time and loss with the top 2 MiniLM blocks trained (cpu overlay's width), fp32 or
    bf16 autocast."""
    settings = {"data_path": data_path, "item_modalities": ["text"], "text_trainable_layers": 2, **CPU_WIDTH}
    _, _, trainer, batches = _trainer(DEFAULT_DATASET, settings)
    step, loss = _median_step(trainer, batches, steps, autocast=autocast)
    return {"step_s": step, "loss": loss}


def modalities_step(data_path, dataset, modalities, fusion, steps, fusion_settings=None):
    """Step time with frozen, cached encoders (the cpu overlay's width) for ``modalities``
    (with the fusion's ``fusion_settings``)."""
    settings = {"data_path": data_path, "item_modalities": modalities, "fusion": fusion,
                "text_trainable_layers": 0, "image_trainable_layers": 0, **CPU_WIDTH, **_dataset_settings(dataset),
                **(fusion_settings or {})}
    _, _, trainer, batches = _trainer(dataset, settings)
    step, _ = _median_step(trainer, batches, steps)
    return {"step_s": step, "steps_per_epoch": len(batches)}


def image_pipeline(data_path, dataset, n_images):
    """Images per second of the data layer's decoding, resizing and cropping."""
    from recbole_pmmrec.data.content import content_file, read_content_file
    from recbole_pmmrec.data.images import decode_images

    folder = Path(data_path) / dataset
    rows = [r for r in read_content_file(content_file(folder, dataset)).values() if r[1]][:n_images]
    start = time.perf_counter()
    decode_images([(folder / image, f"line {line}") for _, image, line in rows], 224)
    return {"images": len(rows), "images_per_s": len(rows) / (time.perf_counter() - start)}


def large_catalogue(n_items, tokens, ram_mb, steps):
    """A synthetic catalogue of ``n_items`` written through the boundary-cache writer, then
    training steps of the top text block over random batches of it (their peak RSS is
    compared across catalogue sizes: the catalogue on disk must not show in it)."""
    import resource

    import torch

    from recbole_pmmrec.model.feature_cache import build_or_load
    from recbole_pmmrec.pretrained import resolve_text_encoder
    from recbole_pmmrec.model.modality_encoders import TextEncoder, TextEncoderSettings

    encoder = TextEncoder(TextEncoderSettings(resolve_text_encoder(None), tokens, 1, 128))
    model_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    folder = Path(tempfile.mkdtemp(prefix="pmmrec-large-"))
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    cache = build_or_load(folder / "text.npy", (n_items, tokens, encoder.hidden_size),
                          lambda ids: torch.randn(len(ids), tokens, encoder.hidden_size, generator=generator),
                          n_items, 1024, ram_mb * 2**20, desc="synthetic catalogue")
    build_s = time.perf_counter() - start
    optimizer = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad])
    mask = torch.ones(1024, tokens, dtype=torch.long)
    for _ in range(steps):
        ids = torch.randint(1, n_items, (1024,))
        loss = encoder.proj(encoder.top(cache.rows(ids).float(), mask)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for path in folder.iterdir():
        path.unlink()
    return {"cache_gb": cache.nbytes / 2**30, "on_disk": cache.on_disk, "build_s": build_s,
            "model_rss_mb": model_rss, "budget_mb": ram_mb}


def cpu_bfloat16():
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), as a phrase."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "(bfloat16 support unknown)"
    native = sorted(flags & {"avx512_bf16", "amx_bf16"})
    return f"has native bfloat16 ({', '.join(native)})" if native else "has no native bfloat16 (no AVX512-BF16 or AMX)"


def _dataset_settings(dataset):
    from recbole_pmmrec.config import properties_dir

    file = properties_dir() / "dataset" / f"{dataset}.yaml"
    return yaml.safe_load(file.read_text(encoding="utf-8")) if file.is_file() else {}


def twelve_block_encoder(folder):
    """A 12-block BERT of MiniLM's shape, random weights, with MiniLM's tokenizer (for timing)."""
    from transformers import AutoConfig, AutoTokenizer, BertModel

    from recbole_pmmrec.pretrained import resolve_text_encoder

    minilm = resolve_text_encoder(None)
    config = AutoConfig.from_pretrained(minilm)
    config.num_hidden_layers = 12
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm).save_pretrained(folder)
    return str(folder)


# --- the report ------------------------------------------------------------------------

def measure(data_path, mm_dataset, output, steps=20, threads=2):
    """Run every measurement (each in its own process) and write ``performance.md``/``.csv``."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    data_path = str(Path(data_path).resolve()) + "/"
    rows, lines, unique = [], [], 0

    def record(name, function, *args, **kwargs):
        print(f"measuring {name} ...", flush=True)
        result = in_own_process(function, *args, threads=kwargs.pop("threads", threads))
        rows.append({"measurement": name, **result})
        if "error" in result:
            print(f"  {name}: {result['error']}", flush=True)
        return result

    from recbole_pmmrec.pretrained import resolve_text_encoder

    encoders = {"MiniLM (6 blocks)": resolve_text_encoder(None),
                "12-block BERT": twelve_block_encoder(output / "bert-12")}
    for label, encoder in encoders.items():
        for k in (1, 2):
            cached = record(f"{label}, top {k} trained, boundary cache", text_blocks, data_path, encoder, k, True, steps)
            full = record(f"{label}, top {k} trained, recomputed", text_blocks, data_path, encoder, k, False, steps)
            if "error" not in cached and "error" not in full:
                lines.append(f"| {label}, top {k} | {cached['items_s']:.3f} s | {full['items_s']:.3f} s | "
                             f"**{full['items_s'] / cached['items_s']:.2f}x** | {cached['floor_s']:.3f} s | "
                             f"**{cached['items_s'] / cached['floor_s']:.2f}x** | "
                             f"{full['items_s'] / cached['floor_s']:.2f}x | "
                             f"{cached['step_s']:.2f} s / "
                             f"{full['step_s']:.2f} s ({full['step_s'] / cached['step_s']:.2f}x) | "
                             f"{cached['cache_build_s']:.0f} s, {cached['cache_bytes_per_item'] / 1024:.0f} KB/item, "
                             f"{cached['cache_bytes_per_value']} B/value | {cached['peak_rss_mb']:.0f} / "
                             f"{full['peak_rss_mb']:.0f} MB |")
                unique = cached["unique_items"]
    report = ["# PMMRec performance on this machine", "",
              f"The text tower of a training step (the batch's {unique:.0f} unique items of ml-100k-text, forward "
              f"and backward), and the whole step at the cpu overlay's width:", "",
              "| text encoder | item tower, boundary cache | recomputed | speed-up | floor (top blocks alone) "
              "| cache / floor | best possible speed-up | whole step, cache / recomputed | cache build, size "
              "| peak MB (cache / recomputed) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |", *lines, "",
              "Best possible speed-up: recomputed / floor. A step with the cache cannot cost less than "
              "its trainable blocks alone, so no cache of the frozen blocks can beat this ratio; only "
              "cheaper trainable blocks can.",
              ""]

    precision_steps = min(steps, PRECISION_STEPS)
    fp32 = record("float32 step (top 2 MiniLM blocks trained)", precision, data_path, False, precision_steps)
    bf16 = record("bfloat16 autocast step", precision, data_path, True, precision_steps)
    if "error" not in fp32 and "error" not in bf16:
        report += [f"- float32 vs bfloat16 autocast: {fp32['step_s']:.2f} s vs {bf16['step_s']:.2f} s per step "
                   f"(**{fp32['step_s'] / bf16['step_s']:.2f}x**), loss after {precision_steps + 2} steps "
                   f"{fp32['loss']:.4f} vs {bf16['loss']:.4f}; this CPU {cpu_bfloat16()}"]

    runs = {}
    for nproc in (1, 2):
        runs[nproc] = record(f"{nproc} process(es), one epoch", _one_epoch, data_path, nproc, threads=1)
    if all("error" not in r for r in runs.values()):
        report += [f"- training samples per second, 1 vs 2 processes (1 thread each): "
                   f"{runs[1]['samples_per_s']:.0f} vs {runs[2]['samples_per_s']:.0f} "
                   f"(**{runs[2]['samples_per_s'] / runs[1]['samples_per_s']:.2f}x**)"]

    evals = {name: record(f"{name}: one epoch and a test pass", _one_epoch_model, data_path, name)
             for name in ("PMMRec[cpu]", "SASRec")}
    if all("error" not in r for r in evals.values()):
        pmm, sas = evals["PMMRec[cpu]"], evals["SASRec"]
        report += [f"- full-ranking test pass (943 users, 1,682 items): PMMRec[cpu] {pmm['test_s']:.2f} s, "
                   f"SASRec {sas['test_s']:.2f} s (**{pmm['test_s'] / sas['test_s']:.2f}x**); peak "
                   f"{pmm['peak_rss_mb']:.0f} vs {sas['peak_rss_mb']:.0f} MB"]

    if "error" not in evals["PMMRec[cpu]"]:
        latency = {(n, t): record(f"recommend, {n:,} items, {t} thread(s)", recommend_latency,
                                  evals["PMMRec[cpu]"]["checkpoint"], n, threads=t)
                   for n in (10_000, 1_000_000) for t in (1, threads)}
        if all("error" not in r for r in latency.values()):
            report += ["", "Recommendation latency per query (a 20-item history, top 10, `Recommender`):", "",
                       "| catalogue | 1 thread | all threads | peak MB |", "| --- | --- | --- | --- |"]
            report += [f"| {n:,} items | {latency[(n, 1)]['query_s'] * 1000:.1f} ms | "
                       f"{latency[(n, threads)]['query_s'] * 1000:.1f} ms ({threads} threads) | "
                       f"{latency[(n, threads)]['peak_rss_mb']:.0f} |" for n in (10_000, 1_000_000)]
            report += [""]

    mm_folder = Path(data_path) / mm_dataset
    if (mm_folder / f"{mm_dataset}.content.jsonl").is_file():
        images = record("image pipeline", image_pipeline, data_path, mm_dataset, 500)
        text = record("text only, frozen + cached", modalities_step, data_path, mm_dataset, ["text"], "sum", steps)
        both = {label: record(f"text + image ({label}), frozen + cached", modalities_step, data_path, mm_dataset,
                              ["text", "image"], fusion, steps, extra) for label, (fusion, extra) in FUSIONS.items()}
        if "error" not in images:
            report += [f"- image pipeline: {images['images_per_s']:.0f} images/s ({images['images']} posters)"]
        if "error" not in text:
            for label, result in both.items():
                if "error" not in result:
                    report += [f"- text + image ({label}) vs text only, frozen and cached, per step: "
                               f"{result['step_s']:.2f} s vs {text['step_s']:.2f} s "
                               f"(**{result['step_s'] / text['step_s']:.2f}x**)"]
    else:
        report += [f"- (no multi-modal dataset `{mm_dataset}` under {data_path}: its measurements were skipped)"]

    small = record("synthetic catalogue of 2,000 items", large_catalogue, 2_000, 32, 512, steps)
    large = record("synthetic catalogue of 200,000 items", large_catalogue, 200_000, 32, 512, steps)
    if "error" not in large and "error" not in small:
        report += [f"- a synthetic catalogue of 200,000 items through the same cache writer: {large['cache_gb']:.1f} GB "
                   f"written in {large['build_s']:.0f} s, read from disk ({large['on_disk']}) above the "
                   f"{large['budget_mb']} MB RAM budget; peak RSS of {steps} training steps of the top MiniLM block "
                   f"over it {large['peak_rss_mb']:.0f} MB, vs {small['peak_rss_mb']:.0f} MB over 2,000 items held "
                   f"in RAM ({small['cache_gb'] * 1024:.0f} MB): the catalogue adds "
                   f"{large['peak_rss_mb'] - small['peak_rss_mb']:.0f} MB"]

    text = "\n".join(report) + "\n"
    write_text(output / "performance.md", text)
    write_csv(output / "performance.csv", rows)
    print("\n" + text)
    return rows


def _one_epoch(data_path, nproc):
    """Training samples per second of one PMMRec[cpu] epoch with ``nproc`` processes."""
    from recbole_pmmrec.config import properties_dir
    from recbole_pmmrec.quick_start import run_processes, run_recbole

    files = [str(properties_dir() / "overlays" / "cpu.yaml")]
    settings = {"data_path": data_path, "epochs": 1, "state": "WARNING", "show_progress": False}
    if nproc == 1:
        result = run_recbole("PMMRec", DEFAULT_DATASET, files, settings)
    else:
        os.environ["OMP_NUM_THREADS"] = "1"  # read by the spawned processes: one thread each
        overrides = [f"--{k}={v}" for k, v in settings.items()]
        result = run_processes(nproc, ("PMMRec", DEFAULT_DATASET, files, overrides), port=_free_port())
    rows = 943  # one training window per user of ml-100k-text (train_rows: window, 20 items)
    return {"epoch_s": result["train_epoch_seconds"][0], "samples_per_s": rows / result["train_epoch_seconds"][0]}


def _one_epoch_model(data_path, spec):
    from recbole_pmmrec.experiments.benchmark import parse_model

    name, files = parse_model(spec)
    settings = {"data_path": data_path, "epochs": 1, "state": "WARNING", "show_progress": False}
    if name == "SASRec":
        settings["train_neg_sample_args"] = None
    from recbole_pmmrec.quick_start import run_recbole

    result = run_recbole(name, DEFAULT_DATASET, files, settings)
    return {"test_s": result["test_seconds"], "checkpoint": result["saved_model_file"],
            **{k: float(result["test_result"][k]) for k in RESULT_KEYS}}


def recommend_latency(checkpoint, n_items, queries=50):
    """Median seconds per query (a history of 20 items -> top 10) of :class:`Recommender`
    over a catalogue of ``n_items`` synthetic vectors, in this process's torch threads."""
    import torch

    from recbole_pmmrec.recommend import Recommender

    recommender = Recommender.from_checkpoint(checkpoint)
    generator = torch.Generator().manual_seed(0)
    width = recommender.vectors.shape[1]
    recommender.set_catalogue(range(n_items), torch.randn(n_items, width, generator=generator))
    times = []
    for query in range(queries + 3):
        history = torch.randint(0, n_items, (20,), generator=generator).tolist()
        start = time.perf_counter()
        recommender.recommend(history, k=10)
        if query >= 3:
            times.append(time.perf_counter() - start)
    return {"query_s": statistics.median(times), "threads": torch.get_num_threads()}


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="pmmrec-performance", description=__doc__.splitlines()[0])
    parser.add_argument("--data_path", default="dataset/")
    parser.add_argument("--mm_dataset", default="ml-100k-mm", help="a multi-modal dataset under data_path")
    parser.add_argument("--output", default="bench_out/performance")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per measurement")
    args = parser.parse_args(argv)
    measure(args.data_path, args.mm_dataset, args.output, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
