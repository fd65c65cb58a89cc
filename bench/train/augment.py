"""Batched random crop (reflect padding, as the follow-up code) and horizontal flip. The draws
and the crop are separate so that an epoch's draws can be made up front on the CPU generator
(same generator, same order as one step at a time) and uploaded to the device once."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def draw_crop_flip(gen: torch.Generator, b: int, pad: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row offsets, column offsets, flips) of one batch, in the order the trainer has always drawn them."""
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    flip = torch.rand(b, generator=gen) < 0.5
    return dy, dx, flip


def crop_flip(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int = 4) -> torch.Tensor:
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # b x h x 1
    cols = dx[:, None] + torch.arange(w, device=x.device)  # b x w
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, :]  # b x 1 x w
    out = padded[torch.arange(b, device=x.device)[:, None, None], :, rows, cols]  # b x h x w x c
    return out.permute(0, 3, 1, 2).contiguous()
