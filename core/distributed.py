"""torchrun / DDP set-up; a plain `python -m core.train` is a world of one."""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class World:
    rank: int
    local_rank: int
    size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_world(device_request: str) -> World:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); pick the device.

    device_request: 'auto' (CUDA when available), 'cpu' or 'cuda'."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_request not in ("auto", "cpu", "cuda"):
        raise ValueError(f"trainer.device={device_request!r}: choose 'auto', 'cpu' or 'cuda'")
    use_cuda = device_request == "cuda" or (device_request == "auto" and torch.cuda.is_available())
    if device_request == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("trainer.device=cuda but no CUDA device is visible; use trainer.device=auto or cpu")
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return World(rank, local_rank, size, device)


def leave_world() -> None:
    """Leave the process group before the interpreter exits: a gloo group left to the exit handlers aborts
    the process now and then ("terminate called without an active exception", SIGABRT) after a finished run."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor, world: World) -> torch.Tensor:
    if world.size > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= world.size
    return value


@torch.no_grad()
def ranks_agree(modules: list[torch.nn.Module], world: World) -> bool:
    """True when every process holds bit-identical parameters and buffers (DDP keeps them so: same
    initial weights, all-reduced gradients, deterministic optimiser steps).

    Compares a float64 (sum, sum of squares) per tensor across processes, gathered to every rank."""
    tensors = [t for module in modules for t in itertools.chain(module.parameters(), module.buffers())]
    fingerprint = torch.stack([torch.stack([t.double().sum(), t.double().square().sum()]) for t in tensors])
    gathered = [torch.empty_like(fingerprint) for _ in range(world.size)]
    dist.all_gather(gathered, fingerprint)
    return all(torch.equal(gathered[0], other) for other in gathered[1:])
