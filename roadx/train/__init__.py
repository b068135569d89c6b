"""Training of road segmentation models: ``fit`` and its ``TrainConfig``.

Layer L3: reads data through :mod:`roadx.io`, builds models through :mod:`roadx.models`,
scores with :mod:`roadx.metrics`. Names are resolved lazily, so importing
``roadx.train.config`` (used by the CLI for its defaults) does not import torch.
"""

from importlib import import_module
from typing import Any

_LAZY = {
    "TrainConfig": "roadx.train.config",
    "load_config": "roadx.train.config",
    "TrainEvent": "roadx.train.loop",
    "TrainInterrupted": "roadx.train.loop",
    "TrainResult": "roadx.train.loop",
    "fit": "roadx.train.loop",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'roadx.train' has no attribute {name!r}")
