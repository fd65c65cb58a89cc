"""Training speed settings that only a GPU gets: channels_last tensors (Tensor Core friendly
convolutions), cuDNN autotuning for the fixed training shapes, and the fused SGD kernel. None of
them applies on CPU, so CPU weights stay bit-identical and the published CPU numbers keep their
meaning; a CUDA training is its own numerics class (bf16) anyway."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TrainingSpeed:
    channels_last: bool = False
    cudnn_benchmark: bool = False
    fused_sgd: bool = False

    @classmethod
    def for_device(cls, dev: torch.device, deterministic: bool = False) -> TrainingSpeed:
        """All on for CUDA; autotuning off under the deterministic switch (it picks kernels by timing)."""
        cuda = dev.type == "cuda"
        return cls(channels_last=cuda, cudnn_benchmark=cuda and not deterministic, fused_sgd=cuda)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def optimizer_options(self) -> dict:
        return {"fused": True} if self.fused_sgd else {}

    @contextlib.contextmanager
    def backends(self):
        """cuDNN autotuning while training only: evaluation runs many shapes, each would be tuned."""
        saved = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = self.cudnn_benchmark or saved
        try:
            yield
        finally:
            torch.backends.cudnn.benchmark = saved
