"""A long experiment outlives its machine: the finished seeds of a suite, exported to one file
and merged into a new machine's empty workdir, are read there and not retrained; the run then
does only the seeds still missing, and the merged numbers are the exported ones. A damaged line
is refused with its line number, the rest merged; a training whose cells are not all stored is
retrained rather than left uncomputed."""

from __future__ import annotations

import gzip
import json

import pytest
from conftest import TINY_SUITE, enter, run_cli, write_card_root

from bench.cards import load_suite_card
from bench.plan import RunSpec, plan
from bench.store import ResultStore


@pytest.fixture(scope="module")
def first_machine(tmp_path_factory):
    """Seed 0 of a two-seed suite run on one machine and exported."""
    root = write_card_root(tmp_path_factory.mktemp("export"), TINY_SUITE.replace("seeds = [0]", "seeds = [0, 1]"))
    mp = pytest.MonkeyPatch()
    enter(root, mp)
    code, out, err = run_cli("run", "tiny", "--seeds", "0", "--device", "cpu", "--workdir", "a")
    assert code == 0, err
    code, out, err = run_cli("export", "tiny", "--to", "tiny.jsonl.gz", "--workdir", "a", "--device", "cpu")
    assert code == 0 and "exported 10 of 20 cells of tiny and 2 training records" in out + err, out + err
    yield root
    mp.undo()


def lines(path):
    with gzip.open(path, "rt") as fh:
        return fh.read().splitlines()


def write_lines(path, text):
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(text) + "\n")


def test_an_export_resumes_on_a_new_machine_with_only_the_missing_seeds(first_machine, monkeypatch):
    enter(first_machine, monkeypatch)
    suite = load_suite_card("tiny")
    code, out, err = run_cli("merge", "tiny", "--from", "tiny.jsonl.gz", "--workdir", "b", "--device", "cpu")
    assert code == 0 and "merged 10 cells and 2 training records" in out + err, out + err
    with ResultStore(first_machine / "b" / "results.sqlite") as store:
        resumed = plan(RunSpec(suite, first_machine / "b", device="cpu"), store)
        assert resumed.stored == 10 and sorted((c.name, s) for c, s in resumed.missing) == [
            ("tiny-none", 1),
            ("tiny-pixel", 1),
        ]  # seed 0 is read from its records: no checkpoint, nothing to retrain
    with (
        ResultStore(first_machine / "a" / "results.sqlite") as a,
        ResultStore(first_machine / "b" / "results.sqlite") as b,
    ):
        for cell in resumed.cells:
            if cell.seed == 0:
                assert b.cell_metrics(cell.key.digest) == a.cell_metrics(cell.key.digest)
    code, out, err = run_cli("run", "tiny", "--workdir", "b", "--device", "cpu")
    assert code == 0, err
    assert "trained tiny-none/seed1, tiny-pixel/seed1; evaluated 10 cells, 10 already in the store" in out, out
    # merging again adds nothing; the same results export to the same bytes
    code, out, err = run_cli("merge", "tiny", "--from", "tiny.jsonl.gz", "--workdir", "b", "--device", "cpu")
    assert code == 0 and "merged 0 cells and 0 training records" in out + err and "10 cells were already" in out + err
    code, out, err = run_cli("export", "tiny", "--to", "again.jsonl.gz", "--workdir", "a", "--device", "cpu")
    assert (first_machine / "again.jsonl.gz").read_bytes() == (first_machine / "tiny.jsonl.gz").read_bytes()


def test_a_damaged_export_is_refused_line_by_line(first_machine, monkeypatch):
    enter(first_machine, monkeypatch)
    text = lines(first_machine / "tiny.jsonl.gz")
    cell = next(i for i, line in enumerate(text) if '"neuroreg-bench/cell"' in line and '"clean"' in line)
    doc = json.loads(text[cell])
    doc["metrics"][0][-1] = 1.5  # an accuracy above 1
    text[cell] = json.dumps(doc)
    write_lines(first_machine / "bad.jsonl.gz", text)
    code, out, err = run_cli("merge", "tiny", "--from", "bad.jsonl.gz", "--workdir", "c", "--device", "cpu")
    assert code == 1 and f"line {cell + 1}:" in out and "outside [0, 1]" in out, out
    assert "merged 9 cells and 2 training records" in out + err

    write_lines(first_machine / "other.jsonl.gz", [text[0].replace('"tiny"', '"quick"'), *text[1:]])
    for name, words in (("other.jsonl.gz", "an export of suite 'quick', not 'tiny'"), ("tiny.toml", "not a readable")):
        source = first_machine / ("suites/" + name if name.endswith(".toml") else name)
        code, out, err = run_cli("merge", "tiny", "--from", str(source), "--workdir", "d", "--device", "cpu")
        assert code == 2 and words in err and "Traceback" not in err, err
        assert not (first_machine / "d").exists()  # a wrong file changes nothing


def test_a_training_known_only_from_its_record_is_retrained_when_a_cell_is_missing(first_machine, monkeypatch):
    """Without the checkpoint a cell cannot be computed: the planner must not leave it pending forever."""
    enter(first_machine, monkeypatch)
    text = lines(first_machine / "tiny.jsonl.gz")
    dropped = next(i for i, line in enumerate(text) if '"tiny-pixel"' in line and '"noise"' in line)
    write_lines(first_machine / "partial.jsonl.gz", text[:dropped] + text[dropped + 1 :])
    code, out, err = run_cli("merge", "tiny", "--from", "partial.jsonl.gz", "--workdir", "e", "--device", "cpu")
    assert code == 0, out + err
    with ResultStore(first_machine / "e" / "results.sqlite") as store:
        resumed = plan(RunSpec(load_suite_card("tiny"), first_machine / "e", device="cpu"), store, seeds=(0,))
    assert resumed.stored == 9 and [(c.name, s) for c, s in resumed.missing] == [("tiny-pixel", 0)]
