"""Derived seeds: a parent seed and any JSON-able parts (a suite, an evaluation, a level, an image
index) give a child seed, so adding a level, an image or a model never changes another draw."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def sub_seed(seed: int | str, *parts: Any) -> int:
    digest = hashlib.sha256(json.dumps([seed, *parts], sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1
