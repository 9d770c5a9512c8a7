"""The frozen part of an encoder, computed once per catalogue and kept on disk.

For each modality, the hidden states entering the encoder's first trainable block (its
output when it is frozen; their masked mean when a pooled fusion only needs that) are
computed once for every item, in chunks, and written as ``float16`` to a ``.npy`` file:

- the file name is a hash of everything the values depend on (the frozen weights, the split
  block, pooling, and the items' inputs: token ids, or the pixels' source files), so a
  change of text, encoder, split or length builds a new file and nothing stale is read;
- a second run with the same data and encoder reads the file instead of encoding;
- a file up to ``feature_cache_ram_mb`` is loaded into RAM; a larger one is memory-mapped,
  so its rows are read from disk as batches need them.

Files are written through a temporary file renamed into place: a kill during the build
never leaves a file that a later run trusts.
"""

import hashlib
import os
import uuid
from logging import getLogger
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

FORMAT = 1  # bump when what is stored changes


def cache_key(*parts):
    """A short hash of ``parts`` (anything with a stable ``str``)."""
    return hashlib.sha1("\x00".join(map(str, (FORMAT, *parts))).encode()).hexdigest()[:20]


def tensors_digest(named_tensors):
    """A hash of ``(name, tensor)`` pairs: names, dtypes, shapes and values."""
    digest = hashlib.sha1()
    for name, tensor in named_tensors:
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def frozen_digest(network):
    """A hash of ``network``'s frozen tensors (those that decide its cached boundary)."""
    named = list(network.named_parameters()) + list(network.named_buffers())
    return tensors_digest((name, t) for name, t in named if not t.requires_grad)


class FeatureCache:
    """Rows of one modality's cached states: ``rows(ids)`` -> ``float16`` tensor on the CPU."""

    def __init__(self, array, path=None):
        self.array = array  # numpy array in RAM or memory-mapped
        self.path = path

    @property
    def memory_mapped(self):
        return isinstance(self.array, np.memmap)

    @property
    def nbytes(self):
        return self.array.nbytes

    def rows(self, ids):
        return torch.from_numpy(np.ascontiguousarray(self.array[ids.cpu().numpy()]))


def build_or_load(path, shape, encode_chunk, n_items, chunk_size, ram_budget_bytes, desc):
    """The cache at ``path`` (``.npy``, ``float16``, ``shape``), built first if absent by
    ``encode_chunk(ids) -> tensor`` over ``n_items`` in chunks; in RAM if it fits
    ``ram_budget_bytes``, else memory-mapped."""
    path = Path(path)
    if not path.is_file():
        _build(path, shape, encode_chunk, n_items, chunk_size, desc)
    else:
        getLogger().info(f"{desc}: read from {path}")
    array = np.load(path, mmap_mode="r")
    if tuple(array.shape) != tuple(shape):
        raise ValueError(f"{path}: cached shape {array.shape}, expected {shape}; delete the file to rebuild it")
    if array.nbytes <= ram_budget_bytes:
        array = np.array(array)
    return FeatureCache(array, path)


def _build(path, shape, encode_chunk, n_items, chunk_size, desc):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.npy")
    getLogger().info(f"{desc}: computing {n_items} items into {path}")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=tuple(shape))
        ids = torch.arange(n_items)
        for chunk in tqdm(ids.split(chunk_size), desc=desc, leave=False):
            values = encode_chunk(chunk)
            out[chunk[0].item(): chunk[-1].item() + 1, ...] = values.to(torch.float16).cpu().numpy()
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
