"""Semi-supervised propagation with STCN, one frame at a time, and the Python API on top of
it (`Predictor`, `Stream`, `InferenceOptions`).

The names are imported on first use, so that `inference_core.options` (torch-free) can be imported by the
commands' flag parsers without loading torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "InferenceCore": "inference_core.core",
    "InteractiveCore": "inference_core.interactive",
    "MemoryBank": "inference_core.memory_bank",
    "ObjectRegistry": "inference_core.objects",
    "Predictor": "inference_core.predictor",
    "PredictorError": "inference_core.options",
    "Stream": "inference_core.predictor",
    "InferenceOptions": "inference_core.options",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'inference_core' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
