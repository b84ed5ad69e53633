"""Semi-supervised propagation with STCN, one frame at a time (shared by every evaluation script), and the
Python API on top of it (`Predictor`, `Stream`: inference_core/predictor.py)."""
from inference_core.core import InferenceCore
from inference_core.memory_bank import MemoryBank
from inference_core.objects import ObjectRegistry
from inference_core.predictor import Predictor, PredictorError, Stream

__all__ = ["InferenceCore", "MemoryBank", "ObjectRegistry", "Predictor", "PredictorError", "Stream"]
