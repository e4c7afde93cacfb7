"""Multi-process training under ``torchrun``: process-group setup and the few collectives the loop needs.

``torchrun --nproc_per_node N -m derain.cli train CONFIG`` (or ``--nnodes``/``--rdzv-endpoint`` for several
machines) sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address; :func:`setup` reads them
and joins the group with NCCL on GPUs and gloo on the CPU. Without those variables everything here is a
no-op for a single process, so the loop calls these helpers unconditionally.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from derain.errors import DerainError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, validates and writes checkpoints; the others wait for it at barriers."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise DerainError(f"environment variable {name}={raw!r} is not an integer") from None


def env_info() -> DistInfo:
    """The rank/world size set by torchrun (or by hand), or a single process when they are absent."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    if world > 1 and not 0 <= rank < world:
        raise DerainError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return DistInfo(rank=rank, world_size=world, local_rank=_env_int("LOCAL_RANK", rank))


def setup(device: str) -> tuple[DistInfo, torch.device, bool]:
    """Join the process group when the environment asks for one; returns (info, device, we_initialised).

    On CUDA each process takes GPU ``LOCAL_RANK`` (modulo the GPUs visible), whatever index ``device``
    names, so one config serves any number of GPUs. ``we_initialised`` tells the caller to tear the group
    down again when training ends (a group made by someone else, e.g. a test harness, is left alone).
    """
    info = env_info()
    dev = torch.device(device)
    if info.enabled and dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DerainError("device is cuda but no GPU is visible")
        dev = torch.device("cuda", info.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    if not info.enabled or dist.is_initialized():
        return info, dev, False
    if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        raise DerainError("WORLD_SIZE > 1 but MASTER_ADDR/MASTER_PORT are not set: launch with torchrun")
    backend = "nccl" if dev.type == "cuda" else "gloo"
    extra: dict[str, Any] = {"device_id": dev} if dev.type == "cuda" else {}
    dist.init_process_group(backend, init_method="env://", rank=info.rank, world_size=info.world_size, **extra)
    return info, dev, True


def teardown(initialised: bool) -> None:
    if initialised and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_object(value: Any, src: int = 0) -> Any:
    """``value`` of rank ``src`` on every rank (the value passed elsewhere is ignored)."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank (a one-element list without a group)."""
    if not active():
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def mean_scalar(value: float, device: torch.device) -> float:
    """Mean of a float over the ranks (e.g. the loss, so every rank sees the same number)."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()
