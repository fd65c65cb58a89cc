import pytest

from bench.cards import load_model_card, load_suite_card
from bench.errors import BenchError, CardError, UnknownName


def write(cards, folder, name, text):
    (cards / folder / f"{name}.toml").write_text(text)


def test_tiny_cards_load_with_labels_and_stable_hashes(cards):
    none, pixel, shuffle = (load_model_card(n) for n in ("tiny-none", "tiny-pixel", "tiny-shuffle"))
    assert (none.regularizer_label, pixel.regularizer_label, shuffle.regularizer_label) == (
        "none",
        "pixel-threshold",
        "shuffle",
    )
    assert pixel.regularizer.target.params.threshold == 0.5 and pixel.regularizer.loss_convention == "code"
    assert len({none.card_hash, pixel.card_hash, shuffle.card_hash}) == 3
    assert load_model_card("tiny-pixel").card_hash == pixel.card_hash


def test_description_does_not_change_the_card_hash(cards):
    h = load_model_card("tiny-none").card_hash
    text = (cards / "models" / "tiny-none.toml").read_text()
    write(cards, "models", "tiny-none", 'description = "new words"\n' + text)
    assert load_model_card("tiny-none").card_hash == h


@pytest.mark.parametrize(
    "text, message",
    [
        (
            'arch = "resnet18"\ndataset = "fmnist-mini"\n[trainer]\nepochs = "four"\n',
            "key 'trainer.epochs' must be an integer (got str 'four')",
        ),
        ('arch = "resnet18"\ndataset = "fmnist-mini"\n[trainer]\nepoch = 4\n', "unknown key 'trainer.epoch'"),
        ('arch = "resnet18"\n', "missing required key 'dataset'"),
        ('arch = "resnet18"\ndataset = "fmnist-mini"\n[trainer]\nepochs = 0\n', "key 'trainer.epochs'"),
        (
            'arch = "resnet99"\ndataset = "fmnist-mini"\n',
            "unknown architecture 'resnet99'; valid names: resnet18, resnet34",
        ),
        ('arch = "resnet18"\ndataset = "mnist"\n', "key 'dataset': unknown dataset 'mnist'"),
        (
            'arch = "resnet18"\ndataset = "fmnist-mini"\n[regularizer]\nalpha = 1.0\n[regularizer.target]\nkind = "brain"\n',
            "unknown target 'brain'; valid names: constant, neural, pixel, pixel-threshold, raw",
        ),
        (
            'arch = "resnet18"\ndataset = "fmnist-mini"\n[regularizer]\nalpha = 1.0\n[regularizer.target]\nkind = "pixel"\nstimuli = "fmnist-mini"\nthreshold = 0.5\n',
            "unknown key 'regularizer.target.threshold'",
        ),
        (
            'arch = "resnet18"\ndataset = "fmnist-mini"\n[regularizer]\nalpha = 1.0\nloss_convention = "mine"\n[regularizer.target]\nkind = "pixel"\nstimuli = "x"\n',
            "key 'regularizer.loss_convention'",
        ),
        ('arch = "resnet18"\ndataset = = "fmnist-mini"\n', "not valid TOML"),
    ],
)
def test_bad_model_cards_name_file_key_and_fix(cards, text, message):
    write(cards, "models", "bad", text)
    with pytest.raises(BenchError) as exc:
        load_model_card("bad")
    assert message in str(exc.value)
    assert str(cards / "models" / "bad.toml") in str(exc.value)
    assert "\n" not in str(exc.value)


def test_suite_card_validates_evaluations_and_models(cards):
    suite = load_suite_card("tiny")
    assert [e.kind for e in suite.evaluations] == ["noise", "noise", "pgd", "minimal"]
    assert suite.evaluations[2].params.epsilons == (0.0, 0.02)
    assert [c.name for c in suite.cards] == ["tiny-none", "tiny-pixel"]
    base = (cards / "suites" / "tiny.toml").read_text()
    write(cards, "suites", "bad", base.replace('kind = "pgd"', 'kind = "cw"'))
    with pytest.raises(
        BenchError,
        match=r"evaluations\[2\].kind': unknown evaluation 'cw'; valid names: autoattack, clean, corruptions, minimal, noise, pgd, similarity, transfer",
    ):
        load_suite_card("bad")
    write(cards, "suites", "bad", base.replace("levels = [0.0, 0.05]", 'levels = [0.0, "high"]'))
    with pytest.raises(CardError, match=r"key 'evaluations\[1\].levels\[1\]' must be a number"):
        load_suite_card("bad")
    write(cards, "suites", "bad", base.replace('"tiny-pixel"]', '"tiny-nope"]'))
    with pytest.raises(CardError, match="key 'models': unknown model 'tiny-nope'"):
        load_suite_card("bad")


def test_suite_and_model_datasets_must_agree(cards):
    base = (cards / "suites" / "tiny.toml").read_text()
    write(cards, "suites", "other", base.replace('dataset = "fmnist-mini"', 'dataset = "fmnist"'))
    with pytest.raises(CardError, match="trained on 'fmnist-mini' but the suite evaluates 'fmnist'"):
        load_suite_card("other")


def test_unknown_names_list_the_valid_ones(cards):
    with pytest.raises(UnknownName, match="unknown suite 'nope'; valid names: .*tiny"):
        load_suite_card("nope")
    with pytest.raises(UnknownName, match="unknown model 'nope'; valid names: .*tiny-none"):
        load_model_card("nope")


def test_shipped_cards_are_valid():
    for suite in ("quick",):
        s = load_suite_card(suite)
        assert s.cards and s.evaluations
