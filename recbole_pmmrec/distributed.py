"""More than one process: the process group, and objectives over the whole distributed batch.

Processes are started by ``run_recbole --nproc=N`` (torch's ``multiprocessing.spawn``, as
RecBole does), by RecBole's multi-machine keys (``world_size``, ``ip``, ``port``,
``group_offset``), or by ``torchrun`` (its ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/
``MASTER_ADDR`` environment). The backend is ``nccl`` on GPUs and ``gloo`` on the CPU.

Every rank trains on its share of the batch, and DDP averages the gradients. PMMRec's
objectives compare a rank's rows with the items and users of *every* rank: the batch's
candidates (unique items and their vectors) and the users' sequence vectors are gathered
with gradients (:func:`gather_rows`), and each rank's loss is scaled by
:func:`share_of_mean`, so N processes train the same objective, with the same gradients, as
one process on the concatenated batch.
"""

import os

import torch
import torch.distributed as dist


def world_size():
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank():
    return dist.get_rank() if world_size() > 1 else 0


def launch_settings(config_dict, environ=os.environ):
    """``(rank, world_size, local_rank, init_method)`` of this process in a distributed run,
    from RecBole's keys (``local_rank``, ``offset``, ``world_size``, ``ip``, ``port``) or
    torchrun's environment; None for a single-process run."""
    if "local_rank" in config_dict and (config_dict.get("world_size") or 1) > 1:
        local_rank = int(config_dict["local_rank"])
        global_rank = local_rank + int(config_dict.get("offset") or 0)
        init = f"tcp://{config_dict.get('ip') or 'localhost'}:{config_dict.get('port') or 5678}"
        return global_rank, int(config_dict["world_size"]), local_rank, init
    if int(environ.get("WORLD_SIZE", 1)) > 1 and "RANK" in environ:
        return int(environ["RANK"]), int(environ["WORLD_SIZE"]), int(environ.get("LOCAL_RANK", 0)), "env://"
    return None


def init_process_group(global_rank, size, init_method, use_cuda):
    """Join the process group (once per process): ``nccl`` with CUDA, else ``gloo``."""
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", init_method=init_method, rank=global_rank,
                                world_size=size)


def barrier():
    if world_size() > 1:
        dist.barrier()


def from_rank_zero(value):
    """``value`` as rank 0 has it (a picklable object), on every rank."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_rows(tensor):
    """Every rank's ``tensor`` (same shape but for dim 0) concatenated in rank order, with
    gradients flowing back to each rank's own rows; also this rank's first row index."""
    if world_size() == 1:
        return tensor, 0
    sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([len(tensor)], device=tensor.device))
    sizes = [int(s) for s in sizes]
    padded = torch.cat([tensor, tensor.new_zeros((max(sizes) - len(tensor), *tensor.shape[1:]))])
    if tensor.requires_grad:
        from torch.distributed.nn.functional import all_gather

        parts = all_gather(padded)
    else:
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
    offset = sum(sizes[: rank()])
    return torch.cat([part[:size] for part, size in zip(parts, sizes)]), offset


def share_of_mean(loss, n_local):
    """Scale a mean over this rank's ``n_local`` rows so that averaging the gradients over
    ranks (DDP) gives the gradient of the mean over every rank's rows."""
    if world_size() == 1:
        return loss
    total = torch.tensor([float(n_local)], device=loss.device)
    dist.all_reduce(total)
    return loss * (world_size() * n_local / total.item())
