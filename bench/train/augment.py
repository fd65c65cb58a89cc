"""Batched random crop (reflect padding, as the follow-up code) and horizontal flip, driven by
an explicit generator so that training order and augmentation are reproducible and resumable."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    b, _, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # b x h x 1
    cols = dx[:, None] + torch.arange(w, device=x.device)  # b x w
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, :]  # b x 1 x w
    out = padded[torch.arange(b, device=x.device)[:, None, None], :, rows, cols]  # b x h x w x c
    return out.permute(0, 3, 1, 2).contiguous()
