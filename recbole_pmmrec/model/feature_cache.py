"""The frozen part of an encoder, computed once per catalogue and kept on disk.

For each modality, the hidden states entering the encoder's first trainable block (its
output when it is frozen; their masked mean when a pooled fusion only needs that) are
computed once for every item, in chunks, and written as ``float16`` to a ``.npy`` file:

- the file name is a hash of everything the values depend on (the frozen weights, the split
  block, pooling, and the items' inputs: token ids, or the pixels' source files), so a
  change of text, encoder, split or length builds a new file and nothing stale is read;
- a second run with the same data and encoder reads the file instead of encoding;
- a file up to ``feature_cache_ram_mb`` is loaded into RAM; a larger one stays on disk and
  its rows are read as batches need them (positioned reads, not a memory map, whose pages
  would count in the process's resident memory).

Files are written through a temporary file renamed into place: a kill during the build
never leaves a file that a later run trusts.
"""

import hashlib
import os
from logging import getLogger
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dataset_converters.atomic import replace_when_done

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
    """Rows of one modality's cached states: ``rows(ids)`` -> ``float16`` tensor on the CPU.

    Held in RAM (``array``), or, above the RAM budget, left on disk and read row by row with
    positioned reads (``on_disk``): unlike a memory map, pages read this way are the
    operating system's file cache, not the process's resident memory.
    """

    def __init__(self, path, shape, array=None):
        self.path, self.shape, self.array = Path(path), tuple(shape), array
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * 2
        self.offset = _data_offset(self.path)

    @property
    def on_disk(self):
        return self.array is None

    @property
    def nbytes(self):
        return self.shape[0] * self.row_bytes

    @property
    def itemsize(self):
        return 2

    def rows(self, ids, width=None):
        """The rows of ``ids`` (their first ``width`` tokens, for token states)."""
        index = ids.cpu().numpy()
        if self.array is not None:
            rows = self.array[index] if width is None else self.array[index, :width]
            return torch.from_numpy(np.ascontiguousarray(rows))
        out = np.empty((len(index), *self.row_shape), dtype=np.float16)
        with open(self.path, "rb", buffering=0) as f:
            for position, row in enumerate(index.tolist()):
                data = os.pread(f.fileno(), self.row_bytes, self.offset + row * self.row_bytes)
                out[position] = np.frombuffer(data, dtype=np.float16).reshape(self.row_shape)
        return torch.from_numpy(out if width is None else np.ascontiguousarray(out[:, :width]))


def _data_offset(path):
    """Where the values start in a ``.npy`` file (after its header)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        formats = np.lib.format
        (formats.read_array_header_1_0 if version == (1, 0) else formats.read_array_header_2_0)(f)
        return f.tell()


def build_or_load(path, shape, encode_chunk, n_items, chunk_size, ram_budget_bytes, desc):
    """The cache at ``path`` (``.npy``, ``float16``, ``shape``), built first if absent by
    ``encode_chunk(ids) -> tensor`` over ``n_items`` in chunks; in RAM if it fits
    ``ram_budget_bytes``, else read from disk per batch."""
    path = Path(path)
    if not path.is_file():
        _build(path, shape, encode_chunk, n_items, chunk_size, desc)
    else:
        getLogger().info(f"{desc}: read from {path}")
    stored = np.load(path, mmap_mode="r")
    if tuple(stored.shape) != tuple(shape) or stored.dtype != np.float16:
        raise ValueError(f"{path}: cached {stored.dtype} {stored.shape}, expected float16 {shape}; delete the file")
    in_ram = np.array(stored) if stored.nbytes <= ram_budget_bytes else None
    del stored
    return FeatureCache(path, shape, in_ram)


def _build(path, shape, encode_chunk, n_items, chunk_size, desc):
    """Write the cache chunk by chunk (never more than a chunk in memory), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    getLogger().info(f"{desc}: computing {n_items} items into {path}")
    with replace_when_done(path, binary=True) as f:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False,
                  "shape": tuple(shape)}
        np.lib.format.write_array_header_2_0(f, header)
        for chunk in tqdm(torch.arange(n_items).split(chunk_size), desc=desc, leave=False):
            values = encode_chunk(chunk).to(torch.float16).cpu().contiguous()
            if tuple(values.shape[1:]) != tuple(shape[1:]):
                raise ValueError(f"{desc}: encoded rows of shape {tuple(values.shape[1:])}, expected {shape[1:]}")
            f.write(values.numpy().tobytes())
