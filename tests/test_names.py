"""Names become folders, files, table cells and plot labels: they match one safe pattern, and a
suite cannot hold two cards under one name (results are keyed by name)."""

from __future__ import annotations

import pytest
from conftest import TINY_CARDS, TINY_SUITE, run_cli

import bench
from bench.cards import load_suite_card
from bench.errors import CardError


def suite_with(cards, models: list[str], name: str = "twins") -> None:
    (cards / "suites" / f"{name}.toml").write_text(TINY_SUITE.replace('"tiny-none", "tiny-pixel"', str(models)[1:-1]))


def test_the_tiny_suite_lists_its_models_where_the_tests_replace_them():
    assert '"tiny-none", "tiny-pixel"' in TINY_SUITE


def test_one_card_listed_twice_is_a_card_error(cards):
    suite_with(cards, ["tiny-none", "models/tiny-none.toml"])
    with pytest.raises(CardError, match="is the card 'tiny-none' again; list it once"):
        load_suite_card("twins")


def test_two_cards_with_one_name_are_a_card_error_before_any_work(cards):
    (cards / "other").mkdir()
    (cards / "other" / "tiny-none.toml").write_text(TINY_CARDS["tiny-none"].replace("width = 4", "width = 8"))
    suite_with(cards, ["tiny-none", "other/tiny-none.toml"])
    code, out, err = run_cli("run", "twins", "--device", "cpu")
    assert code == 2 and "two cards named 'tiny-none'" in err and "rename one" in err
    assert not (cards / ".bench").exists() and not (cards / "reports" / "twins").exists()


@pytest.mark.parametrize("name", [".", "..", "_hidden", "$x^2$", "a b", "-dash", "x" * 101])
def test_unsafe_card_names_are_refused(cards, name):
    (cards / "models" / f"{name}.toml").write_text(TINY_CARDS["tiny-none"])
    suite_with(cards, [name], name="named")
    with pytest.raises(CardError, match="name .* is not allowed"):
        load_suite_card("named")
    (cards / "suites" / f"{name}.toml").write_text(TINY_SUITE)
    code, out, err = run_cli("run", "--device", "cpu", "--", name)
    assert code == 2 and "is not allowed" in err


@pytest.mark.parametrize("name", ["../x", "a/b", "_x", "$x$"])
def test_bench_evaluate_refuses_unsafe_names(cards, name):
    import torch

    with pytest.raises(CardError, match="is not allowed"):
        bench.evaluate(torch.nn.Linear(784, 10), "tiny", name=name, device="cpu")


HOSTILE = 'Robust? <script>alert(1)</script> | # heading $x^2$ ~{a}_b & 50% \\\\ "q" ```\n## injected\n=cmd'


def test_escapers_make_hostile_text_literal():
    from bench.report.escape import csv_safe, latex_text, markdown_text

    md = markdown_text(HOSTILE)
    assert "\n" not in md and "<script>" not in md and "\\|" in md and "\\#\\# injected" in md
    tex = latex_text(HOSTILE)
    assert "\n" not in tex and r"\$x\textasciicircum{}2\$" in tex and r"\textasciitilde{}\{a\}\_b" in tex
    assert r"50\%" in tex and r"\&" in tex and r"\textbackslash{}" in tex
    import pandas as pd

    safe = csv_safe(pd.DataFrame({"note": ["=1+1", "+SUM(A1)", "-2", "@x", "plain"], "n": [1, 2, 3, 4, 5]}))
    assert list(safe["note"]) == ["'=1+1", "'+SUM(A1)", "'-2", "'@x", "plain"] and list(safe["n"]) == [1, 2, 3, 4, 5]


@pytest.mark.slow
def test_a_hostile_description_is_printed_as_text_in_every_format(cards):
    import html
    import json

    suite = TINY_SUITE.replace('description = "test suite"', f"description = {json.dumps(HOSTILE)}")
    (cards / "suites" / "hostile.toml").write_text(suite)
    card = TINY_CARDS["tiny-none"]
    (cards / "models" / "tiny-none.toml").write_text(f"description = {json.dumps(HOSTILE)}\n" + card)
    code, out, err = run_cli("run", "hostile", "--device", "cpu")
    assert code == 0, err
    report = cards / "reports" / "hostile"
    board = (report / "leaderboard.md").read_text()
    assert "<script>" not in board and "\n## injected" not in board and "\\<script\\>" in board
    page = (report / "models" / "tiny-none-seed0.md").read_text()
    text, card = page.split("## Card as validated")
    assert "<script>" not in text and "\\<script\\>" in text  # shown as text; verbatim in the card's code block
    assert card.strip().startswith("````json\n") and "\n````" in card  # a fence the description cannot close
    tex = (report / "leaderboard.tex").read_text()
    assert all(line.startswith(("\\", "%")) or "&" in line for line in tex.splitlines() if line)
    from bench.io import current_umask

    assert report.stat().st_mode & 0o777 == 0o777 & ~current_umask()  # not mkdtemp's 0700
    page = (report / "index.html").read_text()
    assert "<script>alert" not in page and html.escape("<script>alert(1)") in page


def test_two_evaluations_reporting_one_metric_are_a_card_error(cards):
    twice = '\n[[evaluations]]\nkind = "noise"\nnoise = "gaussian"\nlevels = [0.0, 0.2]\n'
    (cards / "suites" / "twice.toml").write_text(TINY_SUITE + twice)
    with pytest.raises(CardError, match="'evaluations\\[4\\]' reports 'noise-gaussian', which an earlier"):
        load_suite_card("twice")
