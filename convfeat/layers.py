"""Layer selection: which conv blocks make up a multi-layer feature (torch-free)."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from .constants import LAYER_NAMES
from .errors import InputError


def parse_layers(layers: str | Iterable[int] = "12345") -> list[str]:
    """Layer selection → ordered list of layer names.

    ``"12345"`` (all five blocks, the study's 160-d feature), ``"5"``,
    ``"135"`` or an iterable of 1-based block numbers.  Blocks are returned in
    ascending order, so ``"51"`` and ``"15"`` name the same feature.
    """
    if isinstance(layers, str):
        text = layers.strip().lower()
        if text == "all":
            text = "12345"
        if not text or not text.isdigit():
            raise InputError(f"layers must be digits 1-5 such as '12345' or '135', got {layers!r}")
        numbers = [int(c) for c in text]
    else:
        numbers = [int(n) for n in layers]
    if not numbers or any(n < 1 or n > 5 for n in numbers) or len(set(numbers)) != len(numbers):
        raise InputError(f"layers must name distinct blocks among 1-5, got {layers!r}")
    return [LAYER_NAMES[n - 1] for n in sorted(numbers)]


def concat_layers(outputs: dict, layers: str | Iterable[int] = "12345") -> np.ndarray:
    """Concatenate per-layer arrays ``(n, 32)`` of the selected blocks → ``(n, 32 * k)``."""
    names = parse_layers(layers)
    return np.concatenate([np.asarray(outputs[name], dtype=np.float32) for name in names], axis=-1)
