"""Device selection: CUDA when present, else Apple MPS, else CPU."""
from __future__ import annotations

import torch


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(name: str | None) -> torch.device:
    """`None`/"auto" -> default_device(); otherwise torch.device(name), checked to exist."""
    if name in (None, "", "auto"):
        return default_device()
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that a wall-clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def prepare_for_inference(network: torch.nn.Module) -> torch.nn.Module:
    """Eval mode and, on CPU/CUDA, channels-last weights (about 10% faster convolutions on CPU).

    Only the memory layout changes; outputs agree with the default layout to float rounding.
    """
    network.eval()
    device = next(network.parameters()).device
    if device.type in ("cpu", "cuda"):
        network.to(memory_format=torch.channels_last)
    return network


def free_memory_bytes(device: torch.device) -> int | None:
    """Memory a new allocation can still use on `device`, or None when it cannot be told.

    CUDA: the driver's free memory plus what PyTorch's caching allocator holds unused.
    CPU: MemAvailable of /proc/meminfo (Linux).
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None
