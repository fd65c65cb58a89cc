"""The similarity regularizer (method.md §3): EMA-centred cosine similarity at the five taps,
mixed by softmax(theta) with trainable theta initialised at 0, and the eps-guarded atanh loss.

Pure functions for the loss so it can be checked against a direct formula."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

# 'code': log(1+x+eps) - log(1-x+eps) = 2 atanh(x), the inherited implementation (alpha = 10
#         in the follow-up); 'paper': atanh(x) itself. The squared loss differs by 4x.
LossConvention = Literal["code", "paper"]
ATANH_SCALE = {"code": 2.0, "paper": 1.0}


def guarded_atanh(x: torch.Tensor, eps: float) -> torch.Tensor:
    return 0.5 * (torch.log(1 + x + eps) - torch.log(1 - x + eps))


def similarity_loss(
    s_cnn: torch.Tensor, s_target: torch.Tensor, convention: LossConvention = "code", eps: float = 1e-5
) -> torch.Tensor:
    """Mean over pairs of (c*atanh(S_cnn) - c*atanh(S_target))^2, c = 2 ('code') or 1 ('paper')."""
    c = ATANH_SCALE[convention]
    return (c * (guarded_atanh(s_cnn, eps) - guarded_atanh(s_target, eps))).pow(2).mean()


class SimilarityHead(nn.Module):
    """Maps the tap features of two stimulus batches (the pair halves) to S_cnn per pair."""

    def __init__(self, channels: list[int], beta: float = 0.9):
        super().__init__()
        self.beta = beta
        self.theta = nn.Parameter(torch.zeros(len(channels)))
        for tap, c in enumerate(channels):
            self.register_buffer(f"mu{tap}", torch.zeros(c))

    def means(self) -> list[torch.Tensor]:
        return [getattr(self, f"mu{tap}") for tap in range(len(self.theta))]

    @property
    def layer_weights(self) -> torch.Tensor:
        return F.softmax(self.theta.detach(), dim=0)

    def forward(self, feats_a: list[torch.Tensor], feats_b: list[torch.Tensor]) -> torch.Tensor:
        sims = []
        for mu, fa, fb in zip(self.means(), feats_a, feats_b):
            fa, fb = fa.float(), fb.float()
            if self.training:  # running mean from the current pair batch, before use, no gradient
                with torch.no_grad():
                    mu.mul_(self.beta).add_((1 - self.beta) * torch.cat([fa, fb]).mean(dim=(0, 2, 3)))
            m = mu[:, None, None]
            sims.append(F.cosine_similarity((fa - m).flatten(1), (fb - m).flatten(1), dim=1))
        return (torch.stack(sims, dim=1) * F.softmax(self.theta, dim=0)).sum(dim=1)
