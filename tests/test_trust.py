"""The trust boundary for outside models: kinds that are programs (python, torchscript, exported)
run only with an explicit opt-in, and an exported archive holding anything torch would unpickle
unsafely is refused before torch reads it, opt-in or not."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
from conftest import enter, run_cli, write_card_root
from test_external import EXT_SUITE, SmallCNN, external_card, save_three_ways

from bench.external.sources import TRUST_VAR, pickled_members


class Payload:
    """Unpickling this writes a file: what a hostile archive does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def outside(tmp_path, monkeypatch):
    monkeypatch.setenv(TRUST_VAR, "0")  # restored after the test: --trust-code sets it
    root = write_card_root(tmp_path / "cards")
    torch.manual_seed(0)
    save_three_ways(SmallCNN().eval(), root / "models", (1, 28, 28))
    enter(root, monkeypatch)
    return root


def suite_of(root, name: str, card: str) -> None:
    (root / "models" / f"{name}.toml").write_text(card)
    (root / "suites" / f"{name}.toml").write_text(
        EXT_SUITE.format(dataset="fmnist-mini", models=[name]).split("[[evaluations]]")[0]
        + '[[evaluations]]\nkind = "noise"\nnoise = "gaussian"\nlevels = [0.0]\n'
    )


def hostile_export(clean, dest, marker) -> None:
    """The clean export with its first weight swapped for a pickle that writes ``marker``."""
    with zipfile.ZipFile(clean) as src, zipfile.ZipFile(dest, "w") as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("weights/model_weights_config.json"):
                config = json.loads(data)
                first = next(iter(config["config"].values()))
                first["use_pickle"] = True
                data = json.dumps(config).encode()
            elif info.filename.endswith("weights/weight_0"):
                import io

                buffer = io.BytesIO()
                torch.save(Payload(marker), buffer)
                data = buffer.getvalue()
            out.writestr(info, data)


@pytest.mark.parametrize(
    ("kind", "file", "factory"),
    [("python", "cnn.pt", "evil_factory:build"), ("torchscript", "cnn.ts", ""), ("exported", "cnn.pt2", "")],
)
def test_a_program_never_loads_without_the_opt_in(outside, monkeypatch, kind, file, factory):
    marker = outside / "ran"
    (outside / "evil_factory.py").write_text(f"open({str(marker)!r}, 'w')\n\ndef build():\n    return None\n")
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("TorchScript loaded"))
    monkeypatch.setattr(torch.export, "load", lambda *a, **k: pytest.fail("export loaded"))
    suite_of(outside, "outside", external_card(kind, file, factory=factory, trust=False))
    for command in ("run", "report", "status"):
        code, out, err = run_cli(command, "outside", "--device", "cpu")
        assert not marker.exists(), command
        if command == "run":
            assert code == 2 and "outside.toml" in err and "trust_code = true" in err and "--trust-code" in err
            assert [line.startswith("error:") for line in err.splitlines() if line.strip()][-1]
            assert "Traceback" not in err and err.count("error:") == 1
            assert not (outside / "reports" / "outside").exists()


def test_with_the_opt_in_a_program_runs(outside):
    suite_of(outside, "outside", external_card("torchscript", "cnn.ts", trust=False))
    code, out, err = run_cli("run", "outside", "--device", "cpu", "--trust-code")
    assert code == 0, err
    assert (outside / "reports" / "outside" / "results.csv").is_file()
    suite_of(outside, "carded", external_card("torchscript", "cnn.ts", trust=True))
    code, out, err = run_cli("run", "carded", "--device", "cpu")
    assert code == 0, err


def test_an_export_with_a_pickled_member_is_refused_before_torch_reads_it(outside):
    assert pickled_members(outside / "models" / "cnn.pt2") == []  # a plain export passes
    marker = outside / "ran"
    hostile_export(outside / "models" / "cnn.pt2", outside / "models" / "evil.pt2", marker)
    assert pickled_members(outside / "models" / "evil.pt2")
    suite_of(outside, "evil", external_card("exported", "evil.pt2", trust=True))  # trusted, still refused
    code, out, err = run_cli("run", "evil", "--device", "cpu", "--trust-code")
    assert code == 2 and "evil.toml" in err and "pickled members" in err
    assert not marker.exists()
    # the payload is real: torch itself would have run it
    try:
        torch.export.load(str(outside / "models" / "evil.pt2"))
    except Exception:
        pass
    assert marker.exists()
