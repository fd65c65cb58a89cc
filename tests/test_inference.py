"""Paired contrasts, endpoints and their verdicts on synthetic results (no training), the endpoint
table of a suite card, and the registration order against git history."""

from __future__ import annotations

import json
import math
import re
import subprocess

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_SUITE, enter, write_card_root
from scipy.stats import t as student_t

from bench.cards import EndpointSpec, load_suite_card
from bench.errors import CardError
from bench.evals.clean import Clean, CleanParams
from bench.evals.minimal import Minimal, MinimalParams
from bench.evals.noise import Noise, NoiseParams
from bench.report.collect import RESULT_COLUMNS
from bench.report.inference import comparison_table, evaluate_endpoints, paired_deltas
from bench.report.registration import endpoint_registration

LEVELS = [0.0, 0.25, 0.5]
SPECS = [
    Clean(CleanParams()).report(),
    Noise(NoiseParams("gaussian", tuple(LEVELS))).report(),
    Minimal(MinimalParams(attacks=("fmn",), norms=("l2",))).report(),
]


def results(effects: dict[str, list[float]], seeds=range(10), median_ratio: float = 1.2) -> pd.DataFrame:
    """Per model, its per-seed shift of every accuracy (and of the minimal median, as a ratio)."""
    rows = []

    def row(model, seed, metric, param, statistic, value):
        rows.append(
            {**{c: None for c in RESULT_COLUMNS}, "model": model, "regularizer": "none", "seed": seed}
            | {"metric": metric, "source": "", "param": param, "statistic": statistic, "attack": "", "value": value}
        )

    for model, shifts in effects.items():
        for s, shift in zip(seeds, shifts):
            row(model, s, "clean", np.nan, "accuracy", 0.8 + shift / 4)
            for level in LEVELS:
                row(model, s, "noise-gaussian", level, "accuracy", 0.8 - level + shift)
            row(model, s, "minimal-l2", np.nan, "median", 0.5 * median_ratio ** (shift != 0) * (1 + s / 100))
    return pd.DataFrame(rows)


def endpoint(**kw) -> EndpointSpec:
    base = dict(model="a", reference="b", evaluation="noise-gaussian", summary="accuracy", param=0.5)
    return EndpointSpec(**{**base, **kw})


rng = np.random.default_rng(0)
NOISE = rng.normal(0, 0.05, 10)


def test_the_endpoint_interval_is_the_seed_level_paired_t_interval():
    res = results({"a": list(0.04 + NOISE), "b": [0.0] * 10})
    (e,) = evaluate_endpoints([endpoint()], res, SPECS)
    d = 0.04 + NOISE  # independently: the per-seed differences at sigma 0.5
    half = student_t.ppf(0.975, 9) * d.std(ddof=1) / math.sqrt(10)
    assert e.interval.estimate == pytest.approx(d.mean(), abs=1e-12)
    assert (e.interval.low, e.interval.high) == (pytest.approx(d.mean() - half), pytest.approx(d.mean() + half))
    assert e.interval.label == "t, df 9" and e.seeds == 10
    assert f"{d.mean() * 100:+.1f} pp 95% CI" in e.line()


def test_verdicts_follow_the_interval():
    big = [0.1 + x / 5 for x in NOISE]
    met, other_side = evaluate_endpoints(
        [endpoint(name="up"), endpoint(name="down", model="b", reference="a")],
        results({"a": big, "b": [0] * 10}),
        SPECS,
    )
    assert met.verdict == "met" and other_side.verdict == "not met" and "other side" in other_side.reason
    (null,) = evaluate_endpoints([endpoint()], results({"a": list(NOISE), "b": [0] * 10}), SPECS)
    assert null.verdict == "inconclusive" and null.interval.low < 0 < null.interval.high
    (equivalent,) = evaluate_endpoints(
        [endpoint(margin=0.2, says={"not met": "no effect that matters"})],
        results({"a": list(NOISE / 5), "b": [0] * 10}),
        SPECS,
    )
    assert equivalent.verdict == "not met" and "equivalent" in equivalent.reason
    assert "no effect that matters" in equivalent.line()
    (unhealthy,) = evaluate_endpoints(
        [endpoint(min_clean_ratio=0.99)], results({"a": big, "b": [0.4] * 10}), SPECS
    )  # a's clean accuracy is far below b's
    assert unhealthy.verdict == "not met" and "not healthy" in unhealthy.reason


def test_a_borderline_p_is_called_so_and_holm_spans_the_endpoints():
    shifts = None
    for scale in np.linspace(0.005, 0.05, 200):  # find an effect whose t test lands between 0.05 and 0.1
        cand = list(scale + NOISE)
        (e,) = evaluate_endpoints([endpoint()], results({"a": cand, "b": [0] * 10}), SPECS)
        if 0.05 < e.p < 0.1:
            shifts = cand
            break
    (e,) = evaluate_endpoints([endpoint()], results({"a": shifts, "b": [0] * 10}), SPECS)
    assert e.verdict == "inconclusive" and e.reason.startswith("borderline")
    strong = [0.2 + x for x in NOISE]
    two = evaluate_endpoints(
        [endpoint(name="one"), endpoint(name="two", model="c")],
        results({"a": strong, "b": [0] * 10, "c": strong}),
        SPECS,
    )
    assert all(x.p_adjusted == pytest.approx(2 * x.p) for x in two)  # equal p: Holm doubles both


def test_minimal_perturbations_compare_by_the_log_ratio_of_medians():
    res = results({"a": [0.1] * 10, "b": [0.0] * 10}, median_ratio=1.3)
    deltas = paired_deltas(res, {}, [("a", "b")], SPECS)
    row = deltas[deltas["summary"] == "log ratio of medians"].iloc[0]
    assert row["delta"] == pytest.approx(math.log(1.3)) and row["sd_seed"] == pytest.approx(0, abs=1e-12)
    table = comparison_table(deltas, SPECS)
    assert table[table["column"] == "minimal-l2 median"]["Δ"].iloc[0] == "+30.0 %"


def test_holm_runs_over_the_table_and_points_have_their_own_family():
    res = results({"a": list(0.03 + NOISE), "b": [0.0] * 10, "c": list(NOISE)})
    deltas = paired_deltas(res, {}, [("a", "b"), ("c", "b")], SPECS)
    effects = deltas[deltas["scope"] == "training procedure"]
    table = effects[effects["family"] == "comparisons table"]
    assert len(table) == 6 and (table["p_holm"] >= table["p_value"]).all()
    points = effects[effects["family"] == "noise-gaussian grid"]
    assert len(points) == 6 and points["param"].notna().all()  # 3 levels per pair (the headline AUC: the table)
    for _, g in points.groupby("model"):  # Holm within each pair's grid
        assert (g["p_holm"] >= g["p_value"]).all() and g["p_holm"].max() <= 1
    primary = paired_deltas(res, {}, [("a", "b")], SPECS, primary={("a", "b", "noise-gaussian", 0.5, "accuracy")})
    row = primary[(primary["param"] == 0.5) & (primary["scope"] == "training procedure")].iloc[0]
    assert row["role"] == "primary" and math.isnan(row["p_holm"])


SUITE_WITH_ENDPOINT = (
    TINY_SUITE.replace("seeds = [0]", "seeds = [0, 1, 2]")
    + """
[[endpoints]]
model = "tiny-pixel"
reference = "tiny-none"
evaluation = "noise-gaussian"
summary = "accuracy"
param = 0.3
"""
)


@pytest.mark.parametrize(
    "change, message",
    [
        ('evaluation = "noise-gaussian"', 'evaluation = "noise-speckle"'),
        ('summary = "accuracy"', 'summary = "median"'),
        ("param = 0.3", "param = -1"),
        ('model = "tiny-pixel"', 'model = "tiny-other"'),
    ],
)
def test_a_wrong_endpoint_is_a_card_error(cards, change, message):
    (cards / "suites" / "tiny.toml").write_text(SUITE_WITH_ENDPOINT.replace(change, message))
    with pytest.raises(CardError, match=r"endpoints\[0\]"):
        load_suite_card("tiny")
    (cards / "suites" / "tiny.toml").write_text(SUITE_WITH_ENDPOINT.replace("param = 0.3\n", ""))
    with pytest.raises(CardError, match="grid point"):
        load_suite_card("tiny")


def _git(root, *args):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(root), *args], check=True, capture_output=True
    )


def _trainings(started: str) -> pd.DataFrame:
    record = {"training": {"started_at": started, "code": [{"commit": "x", "dirty": False, "source": "y"}]}}
    return pd.DataFrame([{"model": "tiny-pixel", "seed": 0, "provenance": json.dumps(record)}])


def test_registration_dates_the_endpoints_from_git_history(tmp_path, monkeypatch):
    root = enter(write_card_root(tmp_path, SUITE_WITH_ENDPOINT), monkeypatch)
    card = root / "suites" / "tiny.toml"
    lines, flags = endpoint_registration(card, _trainings("2000-01-01T00:00:00+00:00"))
    assert flags and "not in a git checkout" in flags[0]
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "endpoints")
    lines, flags = endpoint_registration(card, _trainings("2999-01-01T00:00:00+00:00"))
    assert not flags and "precede the data" in lines[-1]
    lines, flags = endpoint_registration(card, _trainings("2000-01-01T00:00:00+00:00"))
    assert "started before the endpoints were committed" in flags[0]
    card.write_text(SUITE_WITH_ENDPOINT.replace("param = 0.3", "param = 0.1"))  # changed, not committed
    lines, flags = endpoint_registration(card, _trainings("2999-01-01T00:00:00+00:00"))
    assert "not committed" in flags[0]
    _git(root, "commit", "-q", "-am", "moved the endpoint")  # registered by this later commit now
    lines, flags = endpoint_registration(card, _trainings("2999-01-01T00:00:00+00:00"))
    assert not flags and lines[0].startswith("Endpoints committed in")


@pytest.mark.slow
def test_a_report_folder_alone_reproduces_its_intervals(tmp_path, monkeypatch):
    """The published outcomes reproduce every interval, bootstrap included, with no store; a
    changed outcome is caught."""
    from conftest import run_cli

    suite = SUITE_WITH_ENDPOINT.replace(
        "[subset]", '[compare]\ninterval = "crossed-bootstrap"\nresamples = 300\n\n[subset]'
    )
    root = enter(
        write_card_root(
            tmp_path, suite.replace('"tiny-none", "tiny-pixel"', '"tiny-none", "tiny-shuffle", "tiny-pixel"')
        ),
        monkeypatch,
    )
    code, out, err = run_cli("run", "tiny", "--device", "cpu")
    assert code == 0, err
    report = root / "reports" / "tiny"
    assert out.splitlines()[1].startswith("primary endpoint: tiny-pixel vs tiny-none, noise-gaussian accuracy at 0.3")
    deltas = pd.read_csv(report / "deltas.csv")
    boot = deltas[(deltas["scope"] == "training procedure") & deltas["method"].str.startswith("crossed bootstrap")]
    assert len(boot) > 20 and boot["ci_low"].notna().any()
    (root / ".bench").rename(root / "store-gone")  # no store from here on
    code, out, err = run_cli("analyze", "reports/tiny")
    assert code == 0, err
    assert re.search(r"recomputed from the folder: \d+ contrasts reproduce deltas.csv \(0 differ", out), out[:300]
    before = (report / "leaderboard.md").read_text()
    code, out, err = run_cli("analyze", "reports/tiny", "--write")
    assert code == 0, err
    assert (report / "leaderboard.md").read_text() == before  # re-rendered from the folder, the same page
    outcomes = pd.read_csv(report / "outcomes.csv.gz")
    flip = outcomes.index[(outcomes["model"] == "tiny-pixel") & (outcomes["statistic"] == "accuracy")][:5]
    outcomes.loc[flip, "value"] = 1 - outcomes.loc[flip, "value"]
    outcomes.to_csv(report / "outcomes.csv.gz", index=False)
    code, out, _ = run_cli("analyze", "reports/tiny")
    assert "do NOT reproduce" in out


def test_an_endpoints_own_words_are_escaped_for_markdown_and_its_verdict_marked_per_format():
    from bench.report.escape import markdown_text

    res = results({"a": [v + 0.1 for v in NOISE], "b": [0] * 10})
    hostile = endpoint(name="<b>x</b> | #1", says={"met": "it *replicates*"})
    (e,) = evaluate_endpoints([hostile], res, SPECS)
    md = e.line(markdown_text)
    assert "<b>" not in md and "\\<b\\>x\\</b\\> \\| \\#1:" in md and "(it \\*replicates\\*)" in md
    assert f"**{e.verdict}**" in md and "**" not in e.line(strong="")
    assert e.line().startswith("<b>x</b> | #1:")  # plain text where nothing renders markup (the CLI)
