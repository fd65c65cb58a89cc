"""Trust check: Foolbox's L-inf PGD (as the `pgd` evaluation runs it) agrees with an independent
few-line PGD on a small trained model. The two use different random starts, so they agree
within a tolerance, not exactly: 2 percentage points (4 of 200 images). Measured: 0.460 vs 0.455,
0.345 vs 0.345, 0.055 vs 0.060 at eps 0.01, 0.03, 0.1."""

import pytest
import torch
import torch.nn.functional as F

from bench.cards import load_model_card
from bench.data import eval_subset, load_dataset, to_float
from bench.evals.base import EvalContext
from bench.evals.pgd import PGD, PGDParams
from bench.train.checkpoint import load_model
from bench.train.trainer import train

pytestmark = pytest.mark.slow
TOLERANCE = 0.02


def reference_linf_pgd(model, x, y, eps, steps, rel_stepsize, gen):
    """Madry et al.: uniform random start in the eps-ball, signed-gradient ascent on the
    cross-entropy, projection onto the ball and [0,1]."""
    adv = (x + (2 * torch.rand(x.shape, generator=gen) - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(adv), y), adv)
        adv = adv.detach() + rel_stepsize * eps * grad.sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
    return adv


def test_foolbox_pgd_matches_an_independent_implementation(cards, tmp_path):
    model = load_model(train(load_model_card("tiny-none"), 0, tmp_path, "cpu"))
    ds = load_dataset("fmnist-mini")
    idx, _ = eval_subset(ds.test_x, ds.test_y, 200, seed=0)
    x, y = to_float(ds.test_x[idx]), ds.test_y[idx]
    clean = (model(x).argmax(1) == y).float().mean().item()
    assert clean > 0.3  # a model at chance would make the comparison vacuous
    epsilons = (0.01, 0.03, 0.1)
    out = PGD(PGDParams("linf", epsilons, steps=20, rel_stepsize=0.1)).run(
        model, x, y, EvalContext(torch.device("cpu"), 0)
    )
    foolbox = {m.param: m.value for m in out.metrics}
    gen = torch.Generator().manual_seed(0)
    for eps in epsilons:
        adv = reference_linf_pgd(model, x, y, eps, 20, 0.1, gen)
        ours = (model(adv).argmax(1) == y).float().mean().item()
        print(f"eps {eps}: foolbox {foolbox[eps]:.3f}, reference {ours:.3f}")
        assert abs(foolbox[eps] - ours) <= TOLERANCE, (eps, foolbox[eps], ours)
    assert foolbox[0.1] < clean - 0.1  # the attack does bite


def test_nested_schedule_is_as_strong_and_each_image_is_its_own(cards, tmp_path):
    """The nested schedule attacks an epsilon only on the images no smaller one broke. Its curve
    is monotone and no weaker than the independent one (within the random-start tolerance), the
    large-epsilon probe still runs, and an image's result does not depend on the other images
    evaluated with it (per-image random starts): the first half alone gives the same outcomes."""
    model = load_model(train(load_model_card("tiny-none"), 0, tmp_path, "cpu"))
    ds = load_dataset("fmnist-mini")
    idx, _ = eval_subset(ds.test_x, ds.test_y, 200, seed=0)
    x, y = to_float(ds.test_x[idx]), ds.test_y[idx]
    epsilons = (0.0, 0.01, 0.03, 0.1)

    def run(schedule, rows=slice(None)):
        ctx = EvalContext(torch.device("cpu"), 0, indices=idx[rows])
        params = PGDParams("linf", epsilons, steps=10, schedule=schedule)
        return PGD(params).run(model, x[rows], y[rows], ctx)

    def outcomes(out):
        return {e.param: e.values.bool() for e in out.examples}

    independent, nested = run("independent"), run("nested")
    acc = {m.param: m.value for m in independent.metrics if m.statistic == "accuracy"}
    nest = {m.param: m.value for m in nested.metrics if m.statistic == "accuracy"}
    assert nest[0.0] == acc[0.0]  # clean accuracy, both ways
    assert all(nest[a] >= nest[b] for a, b in zip(epsilons, epsilons[1:]))
    for eps in epsilons[1:]:
        assert nest[eps] <= acc[eps] + TOLERANCE, (eps, nest[eps], acc[eps])
    assert nest[0.1] < nest[0.0] - 0.1  # the attack does bite
    probe = [m for m in nested.metrics if m.statistic == "sanity probe accuracy"]
    assert len(probe) == 1 and probe[0].value <= nest[0.1]
    assert "schedule" in nested.notes and "schedule" not in independent.notes

    half = outcomes(run("nested", slice(0, 100)))
    for eps, full in outcomes(nested).items():
        assert torch.equal(half[eps], full[:100]), eps

    with pytest.raises(ValueError, match="increasing order"):
        PGDParams("linf", (0.03, 0.01), schedule="nested")
