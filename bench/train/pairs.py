"""k stimulus pairs per step, drawn without replacement from all i < j and reshuffled every
pass over the pairs. Its state is a generator state and a position, so a resumed run draws
exactly the pairs the uninterrupted one would have."""

from __future__ import annotations

import torch

from bench.targets.base import n_pairs, pair_unrank


class PairSampler:
    def __init__(self, n: int, k: int, seed: int):
        if n_pairs(n) < k:
            raise ValueError(f"{n} stimuli give {n_pairs(n)} pairs, fewer than pairs_per_step={k}")
        self.n, self.k = n, k
        self.gen = torch.Generator().manual_seed(seed)
        self._new_pass()

    def _new_pass(self) -> None:
        self.pass_state = self.gen.get_state()
        self.perm = torch.randperm(n_pairs(self.n), generator=self.gen)
        self.pos = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pos + self.k > len(self.perm):
            self._new_pass()
        chunk = self.perm[self.pos : self.pos + self.k]
        self.pos += self.k
        return pair_unrank(chunk, self.n)

    def state_dict(self) -> dict:
        return {"pass_state": self.pass_state, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["pass_state"])
        self._new_pass()
        self.pos = state["pos"]
