"""Processes and devices: torchrun's process group, the DDP wrapper, autocast.

Multi-process: `torchrun --nproc_per_node=2 -m restorevar.cli.main train STAGE ...` (gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> Dist:
    """torchrun's env vars → a process group (nccl on CUDA, gloo on CPU); a single process otherwise."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        named = torch.device(device).index if device != "auto" else None
        dev = torch.device("cuda", local_rank if world > 1 else named or 0)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    return Dist(rank, world, dev)


def wrap_ddp(module: nn.Module, env: Dist) -> nn.Module:
    """DDP without `find_unused_parameters`: a stage's trainable module must use every parameter it holds on
    every step (tests/test_ddp_torchrun.py), which also keeps DDP from an extra graph traversal per step."""
    if env.world == 1:
        return module
    ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or amp == "off":
        return None  # CPU autocast is slower than fp32 for these models
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16
