"""Recommendations from a PMMRec checkpoint: top-K for any history, over any catalogue.

Items are content, so a checkpoint ranks items it has never seen, from a platform it has
never seen, with no training data::

    from recbole_pmmrec.recommend import Recommender

    rec = Recommender.from_checkpoint("saved/PMMRec-....pth")
    rec.add_items("dataset/ml-100k-text/ml-100k-text.content.jsonl")   # or a folder, or dicts
    rec.save_catalogue("catalogue.pt")          # encoded once; Recommender.load_catalogue later
    rec.recommend(["50", "172", {"text": "A new movie (2026). Genres: Sci-Fi."}], k=10)
    # -> [("181", 12.3), ("174", 11.9), ...]

The catalogue is scored in chunks with a running top-K, so memory stays bounded for a
catalogue of millions of items. Command line: ``pmmrec-recommend`` (see :func:`main`).
"""

import argparse
import json
import sys
import tempfile
from collections import Counter, defaultdict
from logging import getLogger
from pathlib import Path

import torch
from tqdm import tqdm

from recbole_pmmrec.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from recbole_pmmrec.data.content import ContentError, content_file, json_lines, read_content_file
from recbole_pmmrec.data.encoding import item_content
from recbole_pmmrec.model.feature_cache import tensors_digest
from recbole_pmmrec.model.item_encoder import ItemEncoder
from recbole_pmmrec.model.user_encoder import UserEncoder, UserEncoderSettings

SCORE_CHUNK = 65536  # catalogue rows scored at once


class RecommendError(ValueError):
    """A history, an item or a catalogue cannot be used with this checkpoint."""


class Recommender:
    """A trained PMMRec's item and user encoders, and a catalogue of encoded items."""

    def __init__(self, config, state_dict, manifest, cache_dir=None):
        self.config = defaultdict(lambda: None, config)
        # the item encoder's feature caches; a temporary folder is removed with the recommender
        self._temporary = None if cache_dir else tempfile.TemporaryDirectory(prefix="pmmrec-recommend-")
        self.config["feature_cache_dir"] = str(cache_dir or self._temporary.name)
        self.modalities = list(manifest["item_modalities"])
        self.max_length = self.config["MAX_ITEM_LIST_LENGTH"]
        self.chunk_size = self.config["item_encode_batch_size"] or 256
        self._state = state_dict
        self.user_encoder = _with_weights(
            UserEncoder(UserEncoderSettings.from_config(self.config), 0.0, 0.0), state_dict, "user_encoder."
        ).eval()
        self._item_encoder = None
        self.fingerprint = tensors_digest(sorted((k, v) for k, v in state_dict.items() if k.startswith("item_encoder.")))
        self.item_ids, self.index = [], {}
        self.vectors = torch.zeros(0, self.config["hidden_size"])

    @classmethod
    def from_checkpoint(cls, path, cache_dir=None, trust_checkpoint=False):
        """The recommender of the PMMRec checkpoint at ``path`` (its config and weights are
        all it needs)."""
        checkpoint = load_checkpoint(path, map_location="cpu", trust=trust_checkpoint)
        manifest = (checkpoint.get("other_parameter") or {}).get("transfer_manifest")
        config = checkpoint.get("config")
        if manifest is None or not isinstance(config, dict) or "state_dict" not in checkpoint:
            raise CheckpointError(f"{path} is not a PMMRec checkpoint of this plugin (no transfer manifest, "
                                  f"or a RecBole-format file): train one with run_recbole --model=PMMRec")
        return cls(config, checkpoint["state_dict"], manifest, cache_dir)

    # --- items ------------------------------------------------------------------------
    def add_items(self, items, progress=True):
        """Encode ``items`` into the catalogue: a ``content.jsonl`` file, a dataset folder
        (``NAME/NAME.content.jsonl``) or a list of ``{"item_id", "text", "image"}`` dicts
        (image paths relative to the file's folder, or absolute). Items already in the
        catalogue are encoded again (their content may have changed). Returns the count."""
        ids, vectors = self._encode(*_item_rows(items), progress=progress)
        for item_id in ids:
            if item_id not in self.index:
                self.index[item_id] = len(self.item_ids)
                self.item_ids.append(item_id)
        added = len(self.item_ids) - len(self.vectors)
        self.vectors = torch.cat([self.vectors, self.vectors.new_zeros(added, self.vectors.shape[1])])
        self.vectors[[self.index[i] for i in ids]] = vectors
        return len(ids)

    def _encode(self, ids, texts, images, progress=True):
        """Item vectors ``[N, d]`` of items given by their texts and ``(path, where)`` images."""
        self._check_content(ids, texts, images)
        content, problems = item_content([None, *texts], [None, *images], self.config)
        if problems:
            getLogger().warning(f"{len(problems)} image(s) could not be read and are masked, e.g. {problems[0]}")
        encoder = self._encoder(content)
        rows = torch.arange(1, len(ids) + 1)
        with torch.no_grad():
            vectors = [encoder(chunk).fused for chunk in tqdm(rows.split(self.chunk_size), desc="encode items",
                                                               disable=not progress, leave=False)]
        return ids, torch.cat(vectors) if vectors else torch.zeros(0, self.vectors.shape[1])

    def _encoder(self, content):
        """The checkpoint's item encoder over ``content`` (built once, then given new content)."""
        if self._item_encoder is None:
            self._item_encoder = _with_weights(ItemEncoder(self.config, content), self._state, "item_encoder.").eval()
        else:
            self._item_encoder.set_content(content)
        return self._item_encoder

    def _check_content(self, ids, texts, images):
        used = [(i, t if "text" in self.modalities else None, m if "image" in self.modalities else None)
                for i, t, m in zip(ids, texts, images)]
        empty = [i for i, t, m in used if t is None and m is None]
        if empty:
            raise RecommendError(f"{len(empty)} item(s) have none of the checkpoint's modalities "
                                 f"{self.modalities}: {empty[:5]}")
        ignored = [m for m in ("text", "image") if m not in self.modalities
                   and any((t if m == "text" else g) is not None for t, g in zip(texts, images))]
        if ignored:
            getLogger().warning(f"the checkpoint was trained on {self.modalities}: the items' {ignored} are ignored")

    def save_catalogue(self, path):
        """Write the encoded catalogue (ids and vectors) to ``path``."""
        save_checkpoint({"catalogue": {"item_ids": list(self.item_ids), "vectors": self.vectors,
                                       "fingerprint": self.fingerprint}}, path)

    def load_catalogue(self, path):
        """Read a catalogue written by :meth:`save_catalogue` with the same checkpoint."""
        catalogue = load_checkpoint(path)["catalogue"]
        if catalogue["fingerprint"] != self.fingerprint:
            raise RecommendError(f"{path} was encoded with another checkpoint's item encoder; encode the items again")
        self.set_catalogue(catalogue["item_ids"], catalogue["vectors"])

    def set_catalogue(self, item_ids, vectors):
        """Use ``vectors`` ``[N, d]`` (encoded by this checkpoint) as the catalogue ``item_ids``."""
        if len(item_ids) != len(vectors) or vectors.shape[1] != self.vectors.shape[1]:
            raise RecommendError(f"{len(item_ids)} ids for vectors of shape {tuple(vectors.shape)} "
                                 f"(width {self.vectors.shape[1]} expected)")
        self.item_ids = [str(i) for i in item_ids]
        self.index = {item: i for i, item in enumerate(self.item_ids)}
        self.vectors = vectors

    # --- recommendations --------------------------------------------------------------
    def recommend(self, history, k=10, exclude_history=True, candidates=None, skip_unknown=False):
        """The top ``k`` ``(item_id, score)`` of the catalogue for one history: item ids of
        the catalogue and/or content dicts of items not in it, oldest first."""
        return self.recommend_batch([history], k, exclude_history, candidates, skip_unknown)[0]

    def recommend_batch(self, histories, k=10, exclude_history=True, candidates=None, skip_unknown=False,
                        names=None):
        """:meth:`recommend` for several histories at once; errors and warnings call them
        ``names`` (default ``history 0``, ``history 1``, ...)."""
        if not self.item_ids:
            raise RecommendError("the catalogue is empty: add_items() or load_catalogue() first")
        states, known = self.user_states(histories, skip_unknown, names)
        allowed = self._candidate_mask(candidates)
        scores, index = _top_k(states, self.vectors, k, allowed, known if exclude_history else None)
        return [[(self.item_ids[i], float(s)) for s, i in zip(row_s, row_i) if s > float("-inf")]
                for row_s, row_i in zip(scores.tolist(), index.tolist())]

    def user_states(self, histories, skip_unknown=False, names=None):
        """User vectors ``[B, d]`` of ``histories`` and, per history, the catalogue rows in it."""
        rows, new_items, known = [], [], []
        names = names or [f"history {number}" for number in range(len(histories))]
        for name, history in zip(names, histories):
            entries = self._resolve(history, name, skip_unknown)[-self.max_length:]
            rows.append(entries)
            new_items += [e for e in entries if isinstance(e, dict)]
            known.append([e for e in entries if isinstance(e, int)])
        new_vectors = self._encode(*_dict_rows(new_items), progress=False)[1] if new_items else None
        sequences = torch.zeros(len(rows), self.max_length, self.vectors.shape[1])
        item_seq = torch.zeros(len(rows), self.max_length, dtype=torch.long)
        next_new = 0
        for row, entries in enumerate(rows):
            for position, entry in enumerate(entries):
                if isinstance(entry, dict):
                    sequences[row, position], next_new = new_vectors[next_new], next_new + 1
                else:
                    sequences[row, position] = self.vectors[entry]
                item_seq[row, position] = 1  # any non-padding id: the mask is all the encoder needs
        lengths = torch.tensor([len(entries) for entries in rows])
        with torch.no_grad():
            return self.user_encoder(sequences, item_seq, last=lengths - 1), known

    def _resolve(self, history, name, skip_unknown):
        """A history's entries: catalogue rows (int) and content dicts (new items)."""
        if isinstance(history, (str, bytes)) or not history:
            raise RecommendError(f"{name} is empty (or not a list): give at least one item")
        entries, unknown = [], []
        for entry in history:
            if isinstance(entry, dict):
                entries.append(entry)
            elif str(entry) in self.index:
                entries.append(self.index[str(entry)])
            else:
                unknown.append(str(entry))
        if unknown and not skip_unknown:
            raise RecommendError(f"{name}: item(s) not in the catalogue: {unknown[:10]} (add them with "
                                 f"add_items, give their content as dicts, or skip_unknown=True)")
        if unknown:
            getLogger().warning(f"{name}: {len(unknown)} unknown item(s) skipped: {unknown[:10]}")
        if not entries:
            raise RecommendError(f"{name} has no item of the catalogue left")
        return entries

    def _candidate_mask(self, candidates):
        if candidates is None:
            return None
        missing = [c for c in candidates if str(c) not in self.index]
        if missing:
            raise RecommendError(f"candidate(s) not in the catalogue: {missing[:10]}")
        allowed = torch.zeros(len(self.item_ids), dtype=torch.bool)
        allowed[[self.index[str(c)] for c in candidates]] = True
        return allowed


def _top_k(states, vectors, k, allowed=None, excluded=None, chunk=SCORE_CHUNK):
    """``(scores, rows)`` of the ``k`` best catalogue rows per state, scoring the catalogue
    in chunks of ``chunk`` rows and merging each chunk's top k."""
    k = min(k, len(vectors))
    best_scores = torch.full((len(states), k), float("-inf"))
    best_rows = torch.zeros((len(states), k), dtype=torch.long)
    for start in range(0, len(vectors), chunk):
        scores = states @ vectors[start:start + chunk].T
        if allowed is not None:
            scores = scores.masked_fill(~allowed[start:start + chunk], float("-inf"))
        if excluded is not None:
            for row, items in enumerate(excluded):
                local = [i - start for i in items if start <= i < start + chunk]
                scores[row, local] = float("-inf")
        chunk_scores, chunk_rows = scores.topk(min(k, scores.shape[1]), dim=1)
        merged_scores = torch.cat([best_scores, chunk_scores], dim=1)
        merged_rows = torch.cat([best_rows, chunk_rows + start], dim=1)
        best_scores, order = merged_scores.topk(k, dim=1)
        best_rows = merged_rows.gather(1, order)
    return best_scores, best_rows


def _with_weights(module, state_dict, prefix):
    module.load_state_dict({k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}, strict=True)
    return module


def _item_rows(items):
    """``(ids, texts, images)`` of a content file, a dataset folder or a list of dicts."""
    if isinstance(items, (str, Path)):
        path = Path(items)
        if path.is_dir():
            path = content_file(path, path.name)
        rows = read_content_file(path)
        return (list(rows), [r[0] for r in rows.values()],
                [None if r[1] is None else (path.parent / r[1], f"{path}, line {r[2]}") for r in rows.values()])
    ids, texts, images = _dict_rows(items)
    missing = [n for n, item in enumerate(items) if item.get("item_id") in (None, "")]
    if missing:
        raise ContentError(f"item(s) {missing[:5]} of the list have no 'item_id'")
    ids = [str(i) for i in ids]
    repeated = [i for i, count in Counter(ids).items() if count > 1]
    if repeated:
        raise ContentError(f"item_id(s) {repeated[:5]} appear more than once in the list")
    return ids, texts, images


def _dict_rows(items):
    """``(ids, texts, images)`` of content dicts (ids may be absent for new history items)."""
    texts = [item.get("text") or None for item in items]
    images = [None if not item.get("image") else (Path(item["image"]), f"item {item.get('item_id', n)}")
              for n, item in enumerate(items)]
    return [item.get("item_id") for item in items], texts, images


def main(argv=None):
    """``pmmrec-recommend --checkpoint CKPT (--items CATALOGUE | --catalogue FILE)
    (--history "id1,id2,..." | --histories FILE.jsonl) [-k 10] [--save-catalogue FILE]``"""
    parser = argparse.ArgumentParser(prog="pmmrec-recommend", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a PMMRec checkpoint (.pth)")
    parser.add_argument("--items", help="content.jsonl or dataset folder of the catalogue to encode")
    parser.add_argument("--catalogue", help="an encoded catalogue written by --save-catalogue")
    parser.add_argument("--save-catalogue", help="write the encoded catalogue here (encode once, reuse)")
    parser.add_argument("--history", help="comma-separated item ids, oldest first")
    parser.add_argument("--histories", help='JSONL file: {"user": ..., "history": [ids or content dicts]} per line')
    parser.add_argument("--output", help="JSONL output for --histories (default: standard output)")
    parser.add_argument("-k", type=int, default=10, help="recommendations per history (default 10)")
    parser.add_argument("--include-history", action="store_true", help="allow items of the history")
    parser.add_argument("--skip-unknown", action="store_true", help="skip history items not in the catalogue")
    parser.add_argument("--trust-checkpoint", action="store_true", help="load a pickled (RecBole-format) file")
    args = parser.parse_args(argv)
    if (args.items is None) == (args.catalogue is None) or (args.history is None) == (args.histories is None):
        parser.error("give one of --items / --catalogue and one of --history / --histories")
    try:
        recommender = Recommender.from_checkpoint(args.checkpoint, trust_checkpoint=args.trust_checkpoint)
        if args.items:
            recommender.add_items(args.items)
        else:
            recommender.load_catalogue(args.catalogue)
        if args.save_catalogue:
            recommender.save_catalogue(args.save_catalogue)
        options = {"k": args.k, "exclude_history": not args.include_history, "skip_unknown": args.skip_unknown}
        if args.history is not None:
            for item, score in recommender.recommend([h.strip() for h in args.history.split(",") if h.strip()],
                                                     **options):
                print(f"{item}\t{score:.4f}")
            return 0
        _recommend_file(recommender, args.histories, args.output, options)
    except (RecommendError, ContentError, CheckpointError, OSError) as error:
        print(f"pmmrec-recommend: error: {error}", file=sys.stderr)
        return 2
    return 0


def _recommend_file(recommender, path, output, options, batch=256):
    """JSONL in (``{"user", "history"}``), JSONL out (``{"user", "items", "scores"}``)."""
    names, requests = _read_requests(path)
    out = open(output, "w", encoding="utf-8") if output else sys.stdout
    try:
        for start in range(0, len(requests), batch):
            part = requests[start:start + batch]
            results = recommender.recommend_batch([r.get("history") for r in part], names=names[start:start + batch],
                                                  **options)
            for request, result in zip(part, results):
                out.write(json.dumps({"user": request.get("user"), "items": [i for i, _ in result],
                                      "scores": [round(s, 6) for _, s in result]}) + "\n")
    finally:
        if output:
            out.close()


def _read_requests(path):
    """``(names, requests)`` of a histories file: ``"<path>, line N"`` and each line's object."""
    names, requests = [], []
    for _, where, request in json_lines(path, RecommendError):
        if not isinstance(request, dict):
            raise RecommendError(f"{where}: expected an object {{\"user\", \"history\"}}")
        names.append(where)
        requests.append(request)
    return names, requests


if __name__ == "__main__":
    sys.exit(main())
