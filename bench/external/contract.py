"""The input contract of an outside model: what it expects, declared on its card, and the
wrapper that turns the benchmark's inputs (N x C x H x W in [0,1]) into that."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import ConfigDict, Field, model_validator
from torch import nn

Size = Annotated[int, Field(ge=1, le=4096)]


@dataclass(frozen=True)
class InputContract:
    """``range``: the values the model takes for black and white ([0, 1], [0, 255], [-1, 1]);
    ``mean``/``std``: a per-channel normalization applied after the range, inside the wrapper,
    so attacks still perturb (and clip to) the [0,1] image."""

    __pydantic_config__ = ConfigDict(extra="forbid")
    channels: Annotated[int, Field(ge=1, le=4)]
    size: tuple[Size, Size]  # height, width
    range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] = ()
    std: tuple[Annotated[float, Field(gt=0)], ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> InputContract:
        if not self.range[0] < self.range[1]:
            raise ValueError(f"range {list(self.range)}: the first value (black) must be below the second (white)")
        if len(self.mean) != len(self.std):
            raise ValueError("mean and std must both be given (one value per channel) or both left out")
        if self.mean and len(self.mean) != self.channels:
            raise ValueError(f"mean and std need one value per channel ({self.channels}), got {len(self.mean)}")
        return self

    @property
    def is_identity(self) -> bool:
        return self.range == (0.0, 1.0) and not self.mean


class ContractModel(nn.Module):
    """The outside model behind its declared input mapping. With the identity contract the
    forward pass is the model's own, operation for operation (exported zoo models then give
    bit-identical numbers)."""

    def __init__(self, model: nn.Module, contract: InputContract):
        super().__init__()
        self.model, self.contract = model, contract
        lo, hi = contract.range
        c = contract.channels
        mean = torch.tensor(contract.mean or (0.0,) * c).view(1, c, 1, 1)
        std = torch.tensor(contract.std or (1.0,) * c).view(1, c, 1, 1)
        # y = ((x (hi - lo) + lo) - mean) / std, folded into one scale and shift
        self.register_buffer("scale", (hi - lo) / std, persistent=False)
        self.register_buffer("shift", (lo - mean) / std, persistent=False)

    def train(self, mode: bool = True) -> ContractModel:
        """The wrapped model is put in eval mode once, at load; an exported program refuses
        ``eval()``/``train()`` (its mode was fixed at export), so the call stops here."""
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.contract.is_identity:
            x = x * self.scale + self.shift
        return self.model(x)
