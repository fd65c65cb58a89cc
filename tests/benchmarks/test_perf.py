"""Speed benchmarks (pytest-benchmark). The default test run executes each once as a smoke
test (``--benchmark-disable``); measure with

    pytest tests/benchmarks --benchmark-enable --benchmark-columns=mean,stddev,rounds

Shapes are the quick suite's: ResNet18 width 8, 28x28, batch 64, k = 16 pairs."""

import pytest
import torch
import torch.nn.functional as F

from bench.evals.base import EvalContext
from bench.evals.image_rng import ImageRNG
from bench.evals.noise import add_noise
from bench.evals.pgd import PGD, PGDParams
from bench.models import build_model
from bench.train.pairs import PairSampler
from bench.train.similarity import SimilarityHead, similarity_loss

WIDTH, BATCH, K = 8, 64, 16


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = build_model("resnet18", 10, WIDTH)
    head = SimilarityHead([f.shape[1] for f in model.features(torch.rand(2, 1, 28, 28))])
    opt = torch.optim.SGD(list(model.parameters()) + list(head.parameters()), lr=0.01, momentum=0.9)
    x, y = torch.rand(BATCH, 1, 28, 28), torch.randint(0, 10, (BATCH,))
    stimuli, target = torch.rand(1000, 1, 28, 28), torch.rand(1000, 1000) * 2 - 1
    return model, head, opt, x, y, stimuli, target


def test_bench_baseline_train_step(benchmark, setup):
    model, _, opt, x, y, _, _ = setup

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    benchmark(step)


def test_bench_regularized_train_step(benchmark, setup):
    model, head, opt, x, y, stimuli, target = setup
    sampler = PairSampler(len(stimuli), K, seed=0)

    def step():
        i, j = sampler.next()
        s = head(model.features(stimuli[i]), model.features(stimuli[j]))
        loss = F.cross_entropy(model(x), y) + 10 * similarity_loss(s, target[i, j])
        opt.zero_grad()
        loss.backward()
        opt.step()

    benchmark(step)


def test_bench_noise_eval_batch(benchmark, setup):
    model = setup[0].eval()
    x = torch.rand(250, 1, 28, 28)

    @torch.no_grad()
    def batch():
        # the per-image generators (common random numbers) are part of the cost
        return model(add_noise(x, "gaussian", 0.1, ImageRNG.for_images(0, torch.arange(250)))).argmax(1)

    benchmark(batch)


def test_bench_pgd_batch(benchmark, setup):
    model = setup[0].eval()
    x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    pgd = PGD(PGDParams("linf", (0.02,), steps=10))
    ctx = EvalContext(torch.device("cpu"), seed=0, batch_size=64)
    out = benchmark(pgd.run, model, x, y, ctx)
    assert 0 <= out.metrics[0].value <= 1


def test_bench_neural_target_build_5000_images_8000_neurons(benchmark):
    """Issue 3's scale: 12.5 M pairs from predictions of 8,000 neurons, once predictions exist."""
    import numpy as np

    from bench.neural.target import pairs_from_views, unit_vectors

    rng = np.random.default_rng(0)
    predictions = rng.gamma(2.0, 1.0, (5000, 8000)).astype(np.float32)
    weights = rng.random(8000).astype(np.float32)
    pairs = benchmark.pedantic(lambda: pairs_from_views([unit_vectors(predictions, weights)]), rounds=1, iterations=1)
    assert len(pairs) == 5000 * 4999 // 2


@pytest.mark.parametrize("kind", ["pair-vector", "pixel-cosine"])
def test_bench_target_lookup_per_step(benchmark, kind):
    """Loss-time S[i, j] lookups for one step's k = 16 pairs, from a 5,000-image target."""
    from bench.neural.target import PairTarget
    from bench.targets.base import CosineTarget, n_pairs, unit_rows

    n = 5000
    if kind == "pair-vector":
        target = PairTarget(torch.zeros(n, 1, 1, 1), torch.rand(n_pairs(n)), {})
    else:
        target = CosineTarget(torch.zeros(n, 1, 1, 1), unit_rows(torch.rand(n, 784)), {})
    sampler = PairSampler(n, K, seed=0)
    out = benchmark(lambda: target.lookup(*sampler.next()))
    assert out.shape == (K,)


@pytest.fixture(scope="module")
def trained():
    """A width-8 ResNet18 trained for 300 steps on the embedded Fashion-MNIST (~75% accuracy):
    attacks on an untrained model meet degenerate decision boundaries and time nothing useful."""
    from bench.data import load_dataset, to_float

    torch.manual_seed(0)
    ds = load_dataset("fmnist-mini")
    x, y = to_float(ds.train_x), ds.train_y
    model = build_model("resnet18", 10, WIDTH)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        i = torch.randint(0, len(y), (BATCH,), generator=gen)
        loss = F.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), to_float(ds.test_x[:32]), ds.test_y[:32]


# the battery-quick suite's schedules
BATTERY = {
    "pgd": {"steps": 20, "search_steps": 6},
    "bim": {"steps": 20, "search_steps": 6},
    "deepfool": {"steps": 20},
    "fmn": {"steps": 20},
    "brendel-bethge": {"steps": 50},
    "boundary": {"steps": 200},
    "hopskipjump": {"steps": 5, "gradient_evals": 20},
    "ddn": {"steps": 100},
    "fmn-refine": {"steps": 50},
}


@pytest.mark.parametrize("attack", sorted(BATTERY))
def test_bench_minimal_attack_32_images(benchmark, trained, attack):
    """One ensemble attack alone (both norms it supports) on 32 images: images/second =
    32 x norms / mean time. Decision-based ones start from the nearest other-class image."""
    from bench.evals.attacks import MINIMAL_ATTACKS
    from bench.evals.minimal import Minimal, MinimalParams

    if benchmark.disabled and attack == "brendel-bethge":
        pytest.skip("timed with --benchmark-enable (tox -e perf); test_battery runs it through the CLI")
    model, x, y = trained
    n = 8 if benchmark.disabled else 32  # the default run: each attack once on 8 images, a smoke test
    norms = MINIMAL_ATTACKS.get(attack).norms
    ev = Minimal(MinimalParams(attacks=(attack,), norms=norms, options={attack: BATTERY[attack]}, budget_fractions=()))
    out = benchmark.pedantic(
        lambda: ev.run(model, x[:n], y[:n], EvalContext(torch.device("cpu"), 0, 32)),
        rounds=1,
        warmup_rounds=1 if attack == "brendel-bethge" else 0,
    )  # numba JIT first
    assert all(m.value == m.value for m in out.metrics)


@pytest.mark.parametrize("n", [16, 32])
def test_bench_minimal_ensemble_scales_with_images(benchmark, trained, n):
    """The full ensemble (battery-quick schedules) on n images: time(32) / time(16) ~ 2."""
    from bench.evals.minimal import Minimal, MinimalParams

    if benchmark.disabled and n == 32:  # the default run: n = 16 runs the ensemble once as a smoke test
        pytest.skip("the 32/16 time ratio is measured with --benchmark-enable (tox -e perf)")
    model, x, y = trained
    attacks = ("pgd", "bim", "deepfool", "fmn", "boundary", "hopskipjump")
    ev = Minimal(MinimalParams(attacks=attacks, options={a: BATTERY[a] for a in attacks}))
    benchmark.pedantic(lambda: ev.run(model, x[:n], y[:n], EvalContext(torch.device("cpu"), 0, 32)), rounds=1)


def test_bench_cifar_c_all_corruptions_250_images(benchmark):
    """All 15 corruptions at severity 3 on 250 28x28 images (generation only, no model)."""
    from bench.evals.cifar_c import CIFAR_C, corrupt

    x = torch.rand(250, 1, 28, 28)
    benchmark.pedantic(lambda: [corrupt(x, name, 3, 0) for name in CIFAR_C], rounds=3)
