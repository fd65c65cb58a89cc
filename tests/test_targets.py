import itertools

import pytest
import torch

from bench.targets import build_target, pair_rank, pair_unrank, validate_target_spec
from bench.targets.base import CosineTarget, ShuffledEntries, ShuffledIds, n_pairs, unit_rows
from bench.targets.pixel import threshold
from bench.train.pairs import PairSampler


@pytest.mark.parametrize("n", [2, 3, 7, 64])
def test_pair_rank_unrank_round_trip_in_row_major_order(n):
    pairs = list(itertools.combinations(range(n), 2))
    i = torch.tensor([p[0] for p in pairs])
    j = torch.tensor([p[1] for p in pairs])
    assert torch.equal(pair_rank(i, j, n), torch.arange(len(pairs)))
    ui, uj = pair_unrank(torch.arange(len(pairs)), n)
    assert torch.equal(ui, i) and torch.equal(uj, j)


def test_unrank_is_exact_at_row_boundaries_for_large_n():
    n = 5000
    i = torch.tensor([0, 1, 2, 2499, 4997, 4998])
    m = torch.cat([pair_rank(i, i + 1, n), pair_rank(i, i + 1, n) - 1]).clamp_min(0)
    ui, uj = pair_unrank(m, n)
    assert torch.equal(pair_rank(ui, uj, n), m) and torch.all(ui < uj)


def _random_target(n=12, d=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g)
    return x, CosineTarget(torch.zeros(n, 1, 1, 1), unit_rows(x), {"kind": "test"})


def test_cosine_target_is_centred_cosine_over_images():
    x, t = _random_target()
    c = x.double() - x.double().mean(0)
    direct = (c @ c.T) / (c.norm(dim=1)[:, None] * c.norm(dim=1)[None, :])
    assert torch.allclose(t.matrix().double(), direct, atol=1e-6)


def test_threshold_maps_to_three_values_and_keeps_diagonal_at_top():
    _, base = _random_target(n=40, d=5)  # few dimensions: strong similarities of both signs
    t = CosineTarget(base.images, base.vectors, {}, threshold(0.3, 1e-3))
    m, raw = t.matrix(), base.matrix()
    top = torch.tensor(0.999)
    assert torch.all(torch.isclose(m[raw > 0.3], top))
    assert torch.all(torch.isclose(m[raw < -0.3], -top))
    assert torch.all(m[raw.abs() <= 0.3] == 0)
    assert (raw < -0.3).any() and (raw.abs() <= 0.3).any()  # all three branches exercised
    assert torch.all(torch.isclose(m.diagonal(), top))


def test_shuffle_ids_permutes_rows_and_columns_together_keeping_the_spectrum():
    _, base = _random_target()
    s = ShuffledIds(base, seed=3)
    m, b = s.matrix(), base.matrix()
    p = s.perm
    assert torch.allclose(m, b[p][:, p])
    assert torch.allclose(torch.linalg.eigvalsh(m.double()), torch.linalg.eigvalsh(b.double()), atol=1e-5)
    assert not torch.allclose(m, b)


def test_shuffle_entries_keeps_symmetry_diagonal_and_value_distribution():
    _, base = _random_target()
    s = ShuffledEntries(base, seed=3)
    m, b = s.matrix(), base.matrix()
    assert torch.allclose(m, m.T) and torch.allclose(m.diagonal(), b.diagonal())
    iu = torch.triu_indices(12, 12, 1)
    assert torch.allclose(m[iu[0], iu[1]].sort().values, b[iu[0], iu[1]].sort().values)
    assert not torch.allclose(m, b)


def test_pixel_target_from_a_card_table_and_shuffle_wrapping():
    spec = validate_target_spec(
        {
            "kind": "pixel-threshold",
            "stimuli": "fmnist-mini",
            "n_stimuli": 20,
            "threshold": 0.5,
            "shuffle": "ids",
            "seed": 1,
        },
        "card.toml",
        "regularizer.target",
    )
    t = build_target(spec)
    assert t.images.shape == (20, 1, 28, 28) and 0 <= t.images.min() and t.images.max() <= 1
    assert t.description["shuffle"] == "shuffle-ids"
    assert torch.allclose(build_target(spec).matrix(), t.matrix())  # seeded


def test_pair_sampler_visits_every_pair_once_per_pass_and_resumes_exactly():
    s = PairSampler(6, 3, seed=0)
    seen = [tuple(p) for _ in range(5) for p in torch.stack(s.next(), 1).tolist()]
    assert sorted(seen) == list(itertools.combinations(range(6), 2))
    state = s.state_dict()
    after = [torch.stack(s.next(), 1) for _ in range(7)]
    r = PairSampler(6, 3, seed=99)
    r.load_state_dict(state)
    assert all(torch.equal(a, torch.stack(r.next(), 1)) for a in after)
    with pytest.raises(ValueError):
        PairSampler(3, 4, seed=0)
    assert n_pairs(6) == 15


def test_validation_images_are_never_stimuli_and_held_out_stimuli_are_disjoint_from_training_ones():
    """The defect of the first version: stimuli and the validation split came from one seeded
    permutation, so every validation image of the quick cards was a regularizer input."""
    from bench.cards import load_model_card
    from bench.data import load_dataset, train_val_split
    from bench.targets.card import card_target
    from bench.targets.pixel import stimulus_indices

    for name in ("quick-pixel-threshold", "quick-shuffle", "ci-pixel-threshold"):
        card = load_model_card(name)
        ds = load_dataset(card.dataset)
        _, val = train_val_split(len(ds.train_y), card.trainer.val_fraction, card.trainer.split_seed)
        params, spec = card.regularizer.target.params, card.regularizer.target
        idx = stimulus_indices(len(ds.train_y), params.n_stimuli + spec.heldout, spec.seed, val)
        assert not set(idx.tolist()) & set(val.tolist())
        assert (
            len(
                set(stimulus_indices(len(ds.train_y), params.n_stimuli + spec.heldout, spec.seed).tolist())
                & set(val.tolist())
            )
            > 0
        )  # without the exclusion they would overlap
        target = card_target(card, seed=0)
        assert torch.equal(target.images, ds.train_x[idx].float() / 255)
        assert target.training_stimuli == params.n_stimuli and len(target.heldout_indices()) == spec.heldout


def test_a_shuffle_control_draws_its_own_permutation_per_training_seed_and_reports_what_it_changed():
    from bench.cards import load_model_card
    from bench.targets.card import card_target

    card = load_model_card("quick-shuffle")
    a, b = card_target(card, seed=0), card_target(card, seed=1)
    assert torch.equal(a.images, b.images) and not torch.equal(a.perm, b.perm)
    assert 0 < a.description["pairs_changed"] < 0.2  # a mostly-zero thresholded target: few pairs change
    assert card_target(load_model_card("quick-none"), seed=0) is None


def test_similarity_evaluation_scores_a_matching_representation_high_and_a_shuffled_one_low():
    from bench.evals.base import EvalContext
    from bench.evals.similarity import Similarity, SimilarityParams, Targets

    gen = torch.Generator().manual_seed(0)
    images = torch.rand(60, 1, 8, 8, generator=gen)
    images[:, :, :4] += torch.rand(60, 1, 1, 1, generator=gen)  # shared structure to be similar about
    target = CosineTarget(images.clamp(0, 1), unit_rows(images.clamp(0, 1).flatten(1)), {"kind": "pixel"})
    target.n_train = 30
    shuffled = ShuffledIds(target, seed=3)
    shuffled.n_train = 30

    class PixelModel(torch.nn.Module):  # its one 'tap' is the image itself
        def features(self, x):
            return [x]

    def score(t):
        resources = {"targets": Targets(lambda name: t, "m", [], ["pixels"])}
        out = Similarity(SimilarityParams()).run(
            PixelModel(),
            images[:1],
            torch.zeros(1, dtype=torch.long),
            EvalContext(torch.device("cpu"), 0, resources=resources),
        )
        return {m.param: m.value for m in out.metrics}

    matched, mismatched = score(target), score(shuffled)
    assert matched[None] > 0.95 and matched[0.0] == matched[None]  # one tap: the mix is that tap
    assert abs(mismatched[None]) < 0.3


def pixel_table(**extra) -> dict:
    return {"kind": "pixel-threshold", "stimuli": "fmnist-mini", "n_stimuli": 120, "threshold": 0.5, **extra}


def test_a_constant_target_holds_one_value_on_the_pixel_targets_own_stimuli():
    spec = validate_target_spec({"kind": "constant", "stimuli": "fmnist-mini", "n_stimuli": 120}, "card", "target")
    zero = build_target(spec)
    pixel = build_target(validate_target_spec(pixel_table(), "card", "target"))
    assert torch.equal(zero.images, pixel.images) and torch.equal(zero.labels, pixel.labels)
    assert set(zero.matrix().flatten().tolist()) == {0.0} and zero.description["kind"] == "constant"
    half = build_target(validate_target_spec({"kind": "constant", "stimuli": "fmnist-mini", "value": -0.5}, "c", "t"))
    assert set(half.lookup(torch.tensor([0, 3]), torch.tensor([1, 9])).tolist()) == {-0.5}
    with pytest.raises(Exception, match="value"):
        validate_target_spec({"kind": "constant", "stimuli": "fmnist-mini", "value": 2.0}, "card", "target")


def test_a_within_class_shuffle_permutes_identities_only_inside_each_label():
    base = build_target(validate_target_spec(pixel_table(), "card", "target"))
    shuffled = build_target(
        validate_target_spec(pixel_table(shuffle="within-class"), "card", "target"), training_seed=4
    )
    perm = shuffled.perm
    assert torch.equal(base.labels[perm], base.labels) and not torch.equal(perm, torch.arange(base.n))
    assert torch.equal(shuffled.matrix(), base.matrix()[perm][:, perm])
    assert 0 < shuffled.description["pairs_changed"] < 1 and shuffled.description["shuffle"] == "shuffle-within-class"
    # an identity shuffle mixes classes; a within-class one keeps every same-class pair same-class
    ids = build_target(validate_target_spec(pixel_table(shuffle="ids"), "card", "target"), training_seed=4)
    assert not torch.equal(base.labels[ids.perm], base.labels)


def test_a_within_class_shuffle_of_a_target_without_labels_is_an_error():
    from bench.errors import BenchError
    from bench.targets.base import ShuffledWithinClass

    images = torch.rand(6, 1, 4, 4)
    target = CosineTarget(images, unit_rows(images.flatten(1)), {"kind": "neural"})
    with pytest.raises(BenchError, match="needs class labels"):
        ShuffledWithinClass(target, 0)
