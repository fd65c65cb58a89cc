"""Models trained elsewhere: external cards, their input contract, their loaders, their checks."""

from bench.external.card import ExternalCard, module_card, parse_external_card
from bench.external.contract import ContractModel, InputContract
from bench.external.sources import SOURCES, SourceSpec

__all__ = [
    "SOURCES",
    "ContractModel",
    "ExternalCard",
    "InputContract",
    "SourceSpec",
    "module_card",
    "parse_external_card",
]
