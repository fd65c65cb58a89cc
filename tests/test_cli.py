import re

import pytest
import torch
from conftest import run_cli


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_unknown_suite_lists_valid_names_and_exits_2(cards):
    code, out, err = run_cli("run", "nope", "--workdir", str(cards / "w"))
    assert code == 2
    line = one_error_line(err)
    assert "unknown suite 'nope'" in line and "quick" in line and "tiny" in line
    assert not (cards / "w").exists() and not (cards / "reports").exists()  # nothing written


def test_unknown_model_lists_valid_names(cards):
    code, _, err = run_cli("zoo", "show", "nope")
    assert code == 2 and "tiny-pixel" in one_error_line(err)


def test_ill_typed_card_names_file_key_and_type(cards):
    (cards / "models" / "bad.toml").write_text('arch = "resnet18"\ndataset = "fmnist-mini"\nwidth = 4.5\n')
    code, _, err = run_cli("zoo", "train", "bad", "--workdir", str(cards / "w"))
    line = one_error_line(err)
    assert code == 2 and "bad.toml" in line and "key 'width' must be an integer (got float 4.5)" in line


def test_malformed_suite_toml_exits_2_and_writes_nothing(cards):
    (cards / "suites" / "broken.toml").write_text("version = 1\n[[evaluations]\n")
    code, _, err = run_cli("run", "broken", "--workdir", str(cards / "w"))
    assert code == 2 and "broken.toml: not valid TOML" in one_error_line(err)
    assert not (cards / "w").exists()


def test_export_of_an_untrained_model_says_how_to_train_it(cards, tmp_path):
    code, _, err = run_cli("zoo", "export", "tiny-none", "--seed", "3", "--to", str(tmp_path / "m.pt"))
    assert code == 2 and "bench zoo train tiny-none --seed 3" in one_error_line(err)
    assert not (tmp_path / "m.pt").exists()


def test_report_without_a_store_exits_2(cards):
    code, _, err = run_cli("report", "tiny", "--workdir", str(cards / "empty"))
    assert code == 2 and "no results store" in one_error_line(err)


def test_bad_device_exits_2(cards):
    code, _, err = run_cli("zoo", "train", "tiny-none", "--device", "tpu", "--workdir", str(cards / "w"))
    assert code == 2 and "expected auto, cpu or cuda" in one_error_line(err)


def test_usage_errors_exit_2(cards):
    code, _, _ = run_cli("frobnicate")
    assert code == 2


def test_zoo_list_and_show(cards):
    code, out, _ = run_cli("zoo", "list")
    assert code == 0 and "tiny-shuffle" in out and "shuffle" in out and "quick-none" in out
    code, out, _ = run_cli("zoo", "show", "tiny-pixel")
    assert code == 0 and '"threshold": 0.5' in out and "pixel-threshold" in out


@pytest.mark.slow  # numba compiles Brendel-Bethge's solver: about 40 s
def test_perf_measures_every_regularizer_kind_and_attack_and_estimates_paper_table1(cards):
    small = ["--device", "cpu", "--width", "4", "--size", "16", "--batch", "8"]
    code, out, err = run_cli("perf", *small, "--processes", "2")
    assert code == 0, err
    rates = {}
    for line in out.splitlines():
        parts = line.split("  ")
        if line.startswith(("train ", "evaluate ")):
            rates[parts[0].strip()] = float([p for p in parts[1:] if p.strip()][0].replace(",", ""))
    assert {"train baseline", "train pixel", "train neural", "train baseline, 2 processes at once"} <= set(rates)
    assert "x one process" in out
    assert sum(k.startswith("evaluate ") for k in rates) == 7 and all(v > 0 for v in rates.values())
    assert re.search(r"brendel-bethge .* \d+% of it in the CPU solver", out)
    assert "FLOP ratio 2.16" in out and "paper-table1 training here" in out and " h" in out
    assert re.search(r"paper-table1 evaluation here: at most about [\d.]+ h per model seed .*\): \d+% minimal/", out)
    assert "not estimated" not in out  # every attack of the card was timed
    assert run_cli("perf", "--width", "0")[0] == 2
    assert run_cli("perf", "--processes", "0")[0] == 2


def test_the_evaluation_estimate_scales_each_attack_by_its_whole_schedule(cards):
    """Each attack's measured seconds per image and iteration times the iterations the card asks
    for: PGD-search probes the running best and bisects, HopSkipJump's gradient estimates grow
    as Foolbox grows them, epsilon 0 costs nothing; an attack without a rate is named."""
    from bench.cards import load_suite_card
    from bench.perf import Rate, evaluation_estimate

    suite = load_suite_card("paper-table1")  # 1,000 images; PGD at 4 epsilons above 0 + the sanity probe, 50 steps
    one_second = [Rate("", 0.0, attack=a, iteration_s=1.0) for a in ("pgd", "deepfool", "fmn", "brendel-bethge")]
    one_second.append(Rate("", 0.0, attack="boundary", iteration_s=2.0))
    estimate = evaluation_estimate(suite, one_second)
    s = estimate.seconds
    assert s["pgd/pgd"] == 1000 * 5 * 50
    # both norms, each run in full and again at half its steps (the convergence check); BIM timed as PGD
    assert s["minimal/pgd"] == s["minimal/bim"] == 1000 * 2 * (1 + 10) * (50 + 25)
    assert s["minimal/brendel-bethge"] == 1000 * 2 * ((1000 + 10) + (500 + 10))
    assert s["minimal/boundary"] == 2.0 * 1000 * (5000 + 2500)  # L2 only
    assert "minimal/hopskipjump" not in s and estimate.not_estimated == ("minimal/hopskipjump",)
    with_hsj = evaluation_estimate(suite, one_second + [Rate("", 0.0, attack="hopskipjump", iteration_s=1.0)])
    per_norm = sum(int(min(100 * (step + 1) ** 0.5, 1000)) for steps in (40, 20) for step in range(steps))
    assert with_hsj.seconds["minimal/hopskipjump"] == 1000 * 2 * per_norm and not with_hsj.not_estimated
    assert with_hsj.shares().startswith(f"{with_hsj.seconds['minimal/hopskipjump'] / with_hsj.seconds_per_model:.0%}")


def test_a_failing_concurrent_training_process_is_an_error_not_a_hang():
    from bench.errors import BenchError
    from bench.perf import Shapes, concurrent_training_rate

    with pytest.raises(BenchError, match="a training process failed: KeyError"):
        concurrent_training_rate("no-such-kind", Shapes(width=4, size=16, batch=8), torch.device("cpu"), 2)
