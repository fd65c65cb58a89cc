"""External model cards: a model trained elsewhere, benchmarked beside the zoo. It has no
training recipe, seeds or layer weights; it is one set of weights, identified by its files'
hashes (or, through ``bench.evaluate``, its weights) and its input contract."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from pydantic import ConfigDict
from torch import nn

from bench.config import identity_hash, parse
from bench.errors import CardError
from bench.external.contract import ContractModel, InputContract
from bench.external.sources import CODE_KINDS, SOURCES, SourceSpec, code_trusted, file_sha256
from bench.io import short_reason


@dataclass(frozen=True)
class ExternalCard:
    __pydantic_config__ = ConfigDict(extra="forbid")
    source: SourceSpec
    input: InputContract
    dataset: str = ""  # empty: any suite whose images fit the input contract
    description: str = ""
    trust_code: bool = False  # kinds that are programs (CODE_KINDS) load only with this or --trust-code
    name: str = ""  # the file's stem (or bench.evaluate's name), set on load
    path: str = ""
    # bench.evaluate: the caller's module, and the identity it was given (not parsed from TOML)
    module: Any = field(default=None, repr=False, compare=False)
    identity: str = field(default="", repr=False)

    external = True
    regularizer_label = "external"
    regularizer = None

    @property
    def arch(self) -> str:
        return f"external:{self.source.kind}"

    def seeds_of(self, seeds: tuple[int, ...]) -> tuple[int, ...]:
        """One set of weights: evaluated once, under the run's first seed (its evaluation
        randomness is shared by every model, so repeating it under other seeds would add copies,
        not replicates)."""
        return seeds[:1]

    @property
    def file(self) -> Path:
        p = Path(self.source.path).expanduser()
        return p if p.is_absolute() else Path(self.path).parent / p

    @cached_property
    def card_hash(self) -> str:
        """What the model is: its files' content (or the caller's module type), its source and
        its input contract; not its name, description or where its files lie."""
        if self.module is not None:
            what = {"module": self.identity}
        else:
            source = self.source
            what = {"kind": source.kind, "sha256": self.file_hash, "factory": source.factory, "kwargs": source.kwargs}
        return identity_hash({**what, "input": self.input})

    @cached_property
    def file_hash(self) -> str:  # once per loaded card: a cell key asks for it per cell
        if not self.file.is_file():
            raise CardError(
                f"{self.path}: key 'source.path': no such file {self.file}; fix the path (relative to the card)"
            )
        return file_sha256(self.file)

    def provenance(self) -> dict:
        if self.module is not None:
            return {"source": "bench.evaluate", "module": self.identity}
        return {
            "source": self.source.kind,
            "file": self.source.path,  # as the card gives it (relative to the card): no machine's paths
            "sha256": self.file_hash,
            **({"factory": self.source.factory} if self.source.factory else {}),
        }

    def load(self, device: str | torch.device = "cpu") -> nn.Module:
        """Eval mode, weights frozen (attacks take input gradients only), behind the contract."""
        if self.module is not None:
            inner = copy.deepcopy(self.module)  # the caller's module keeps its mode and grads
        else:
            _ = self.file_hash  # a missing file is named before a loader's own message
            self.check_trusted()
            inner = SOURCES.get(self.source.kind)(self.source, self.file, self.path)
        if self.source.kind != "exported":  # an exported program's mode is fixed at export
            inner.eval()
        for p in inner.parameters():  # (ScriptModules refuse Module.requires_grad_)
            p.requires_grad_(False)
        return ContractModel(inner, self.input).eval().to(device)

    def check_trusted(self) -> None:
        if self.source.kind in CODE_KINDS and not (self.trust_code or code_trusted()):
            raise CardError(
                f"{self.path}: source kind {self.source.kind!r} is a program, not data: loading it runs code its "
                "author wrote. If you trust the author, add 'trust_code = true' to the card or pass --trust-code; "
                "else ask for a state_dict or a neuroreg-bench export (kind 'checkpoint')"
            )

    def weights_hash(self, model: ContractModel) -> str:
        """The loaded weights' content hash: the same network saved as a checkpoint, TorchScript
        or export has one weights hash."""
        from bench.train.checkpoint import state_hash

        return state_hash(model.model.state_dict())


def parse_external_card(raw: dict, where: str, name: str) -> ExternalCard:
    """``raw`` holds a 'source' table (what makes a card external)."""
    if raw.get("source", {}).get("kind") == "python" and not raw["source"].get("factory"):
        raise CardError(f"{where}: key 'source.factory' is required for kind 'python' ('package.module:function')")
    if raw.get("source", {}).get("kind") not in (None, "python") and raw["source"].get("factory"):
        raise CardError(f"{where}: key 'source.factory' only applies to kind 'python'; remove it")
    for key in ("module", "identity"):
        if key in raw:
            raise CardError(f"{where}: unknown key '{key}'; remove it or check its spelling")
    card = parse(ExternalCard, raw, where)
    return dataclasses.replace(card, name=name, path=where)


def module_card(model: nn.Module, name: str, contract: InputContract, dataset: str = "") -> ExternalCard:
    """The card ``bench.evaluate`` makes for an in-memory module: identified by its type and a
    hash of its weights (buffers included), so the same weights reuse the store."""
    from bench.cards import check_name
    from bench.train.checkpoint import state_hash

    check_name(name, "bench.evaluate", "model")
    if not isinstance(model, nn.Module):
        raise CardError(f"bench.evaluate: model {name!r} is a {type(model).__name__}, not a torch.nn.Module")
    try:
        weights = state_hash(model.state_dict())
    except Exception as exc:
        raise CardError(f"bench.evaluate: model {name!r}: cannot read its state_dict ({short_reason(exc)})") from None
    kind = type(model)
    identity = f"{kind.__module__}.{kind.__qualname__}:{weights}"
    source = SourceSpec(kind="module", path="")  # type: ignore[arg-type]  # not a TOML kind: built here only
    return ExternalCard(
        source, contract, dataset, name=name, path=f"bench.evaluate({name!r})", module=model, identity=identity
    )
