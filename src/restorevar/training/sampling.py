"""Deterministic sampling: the batch of global step s on rank r is drawn from a generator seeded with (seed, s),
so a run resumed at step k replays steps k+1, k+2, ... exactly, with no data-loader state in the checkpoint."""

from __future__ import annotations

import torch


def sampling_weights(labels: list[str], balance: bool) -> torch.Tensor:
    """Per-sample weights: 1/count of its degradation (each type drawn equally often), or uniform."""
    if not balance:
        return torch.ones(len(labels), dtype=torch.float64)
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return torch.tensor([1.0 / counts[label] for label in labels], dtype=torch.float64)


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields the dataset indices of global steps start, start+1, ... for one rank (with replacement)."""

    def __init__(
        self,
        weights: torch.Tensor,
        *,
        batch_per_rank: int,
        rank: int,
        world: int,
        seed: int,
        start_step: int,
        total_steps: int,
    ):
        self.weights, self.batch, self.rank, self.world = weights, batch_per_rank, rank, world
        self.seed, self.start, self.total = seed, start_step, total_steps

    def batch_indices(self, step: int) -> list[int]:
        g = torch.Generator().manual_seed(mix_seed(self.seed, step))
        drawn = torch.multinomial(self.weights, self.batch * self.world, replacement=True, generator=g)
        return drawn[self.rank * self.batch : (self.rank + 1) * self.batch].tolist()

    def __iter__(self):
        for step in range(self.start, self.total):
            yield self.batch_indices(step)

    def __len__(self) -> int:
        return max(self.total - self.start, 0)


def mix_seed(*parts: int) -> int:
    value = 0x9E3779B97F4A7C15
    for p in parts:
        value = (value ^ (p + 0x9E3779B9 + (value << 6) + (value >> 2))) & 0x7FFFFFFFFFFFFFFF
    return value


def dataset_labels(dataset) -> list[str]:
    try:
        from restorevar.data.datasets import degradation_labels

        return list(degradation_labels(dataset))
    except (ImportError, AttributeError, TypeError):
        return [dataset[i]["degradation"] for i in range(len(dataset))]
