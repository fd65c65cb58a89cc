import torch

from bench.evals.base import EvalContext
from bench.evals.corruptions import CorruptionParams, Corruptions
from bench.evals.image_rng import ImageRNG
from bench.evals.noise import Noise, NoiseParams, add_noise


def rng(seed: int, n: int = 6) -> ImageRNG:
    return ImageRNG.for_images(seed, torch.arange(n))


def images():
    x = torch.rand(6, 1, 8, 8) * 0.4 + 0.2  # each image inside [0.2, 0.6], not spanning [0,1]
    x[0] = 0.5  # a constant image
    return x


def test_gaussian_is_clamped_to_each_images_own_range_not_to_unit_interval():
    x = images()
    noisy = add_noise(x, "gaussian", 0.5, rng(0))
    lo, hi = x.amin(dim=(1, 2, 3)), x.amax(dim=(1, 2, 3))
    assert torch.all(noisy.amin(dim=(1, 2, 3)) >= lo) and torch.all(noisy.amax(dim=(1, 2, 3)) <= hi)
    assert torch.allclose(noisy.amin(dim=(1, 2, 3))[1:], lo[1:])  # large noise reaches the own min
    assert torch.equal(noisy[0], x[0])  # a constant image cannot change
    assert noisy[1:].min() > 0.19 and noisy.max() < 0.61


def test_uniform_is_bounded_by_level_and_level_zero_is_identity():
    x = images()
    noisy = add_noise(x, "uniform", 0.05, rng(1))
    assert (noisy - x).abs().max() <= 0.05 + 1e-6
    assert torch.equal(add_noise(x, "gaussian", 0.0, rng(1)), x)


def test_saltpepper_sets_pixels_to_the_images_own_min_or_max():
    x = images()
    noisy = add_noise(x, "saltpepper", 1.0, rng(2))
    lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    assert torch.all((noisy == lo) | (noisy == hi))
    some = add_noise(x, "saltpepper", 0.1, rng(2))
    changed = (some != x).float().mean().item()
    assert 0.02 < changed < 0.12  # about p of the pixels flip (about half land on a value they had)


def test_noise_points_are_seeded_independently_of_the_rest_of_the_grid():
    class Const(torch.nn.Module):  # a model whose prediction depends on the noise draw
        def forward(self, x):
            return torch.stack([x.flatten(1).sum(1), torch.full((len(x),), 14.0)], 1)

    x, y = images(), torch.zeros(6, dtype=torch.long)
    ctx = EvalContext(torch.device("cpu"), seed=123)
    a = Noise(NoiseParams("gaussian", (0.0, 0.1))).run(Const(), x, y, ctx)
    b = Noise(NoiseParams("gaussian", (0.1, 0.3))).run(Const(), x, y, ctx)
    ea = {e.param: e.values for e in a.examples}
    eb = {e.param: e.values for e in b.examples}
    assert torch.equal(ea[0.1], eb[0.1])
    c = Noise(NoiseParams("gaussian", (0.1,))).run(Const(), x, y, EvalContext(torch.device("cpu"), seed=124))
    assert len(c.examples) == 1


class Recorder(torch.nn.Module):
    """Records every input it is shown; its prediction depends on its own weight."""

    def __init__(self, weight: float):
        super().__init__()
        self.weight, self.seen = weight, []

    def forward(self, x):
        self.seen.append(x.clone())
        return torch.stack([self.weight * x.flatten(1).sum(1), torch.full((len(x),), 14.0)], 1)


def test_every_model_sees_bit_identical_noisy_and_corrupted_images():
    """Common random numbers: the draws depend on the suite seed, the evaluation, the point and
    the image, never on the model (or the training seed, which the context does not carry)."""
    x, y = torch.rand(5, 1, 28, 28), torch.zeros(5, dtype=torch.long)
    ctx = lambda: EvalContext(torch.device("cpu"), seed=7, indices=torch.tensor([3, 9, 11, 40, 41]))  # noqa: E731
    for ev in (
        Noise(NoiseParams("saltpepper", (0.1, 0.3))),
        Corruptions(CorruptionParams(corruptions=("gaussian_noise", "glass_blur", "frost", "fog"), severities=(2,))),
    ):
        a, b = Recorder(1.0), Recorder(-3.0)
        ev.run(a, x, y, ctx())
        ev.run(b, x, y, ctx())
        assert len(a.seen) == len(b.seen) > 2
        assert all(torch.equal(p, q) for p, q in zip(a.seen, b.seen))
        assert not torch.equal(a.seen[-1], a.seen[-2])  # the points draw differently


def test_an_images_draws_do_not_depend_on_the_other_images():
    x = images()
    full = add_noise(x, "gaussian", 0.2, ImageRNG.for_images(5, torch.tensor([10, 11, 12, 13, 14, 15])))
    part = add_noise(x[2:4], "gaussian", 0.2, ImageRNG.for_images(5, torch.tensor([12, 13])))
    assert torch.equal(full[2:4], part)
