"""Semi-supervised propagation with STCN, one frame at a time (shared by every evaluation script)."""
from inference_core.core import InferenceCore
from inference_core.memory_bank import MemoryBank

__all__ = ["InferenceCore", "MemoryBank"]
