"""This process, one unit of work after another: the default, and what a one-core machine gets.
Trainings and cells run in place (no cell files), with progress per training step and per
evaluation unit."""

from __future__ import annotations

import torch

from bench.cards import ModelCard
from bench.executors import Executor
from bench.plan import Plan


class SerialExecutor(Executor):
    def check(self) -> None:
        if self.options.threads:  # asked for (a card or --threads); else torch's default: every core
            torch.set_num_threads(self.options.threads)

    def train(self, missing: list[tuple[ModelCard, int]]) -> None:
        from bench.compute import ensure_trained

        for card, seed in missing:
            ensure_trained(self.run, card, seed, self.progress)

    def evaluate(self, plan: Plan, store) -> int:
        from bench.compute import CellComputer

        pending = plan.pending
        self.progress.start(f"evaluate {plan.run.suite.name}", sum(c.evaluation.work(c.n_images) for c in pending))
        computer = CellComputer(plan.run, plan.checkpoints, plan.subsets, self.progress)
        for cell in pending:
            meta, output = computer.compute(cell)
            store.write_cell(cell.key, output=output, **meta)
        return len(pending)
