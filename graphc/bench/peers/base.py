"""What a peer is: a framework configuration the benchmark compares graphc against, and how
its outputs become numpy arrays. Kept apart from the peer families so that each family's
module (and tests that add fake peers) import only this."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Peer:
    """One framework configuration the benchmark compares against."""

    name: str
    module: str  # top-level module that must be importable
    builders: dict = field(default_factory=dict)  # workload id -> builder

    def available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def version(self) -> str | None:
        if not self.available():
            return None
        try:
            return str(importlib.import_module(self.module).__version__)
        except Exception:  # noqa: BLE001 - a broken install is reported as "not importable"
            return None


def to_numpy(value) -> np.ndarray:
    """A peer's output as a numpy array (torch tensors, jax arrays, numpy scalars...)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)
