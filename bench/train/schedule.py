"""The cyclic step schedule of method.md §4: lr(e) = lr0 * decay ** ((e mod cycle) // step);
with the defaults (0.1, 0.3, 4, 20) it restarts at 0.1 at epoch 20."""

from __future__ import annotations


def cyclic_step_lr(epoch: int, lr0: float = 0.1, decay: float = 0.3, step: int = 4, cycle: int = 20) -> float:
    return lr0 * decay ** ((epoch % cycle) // step)
