"""Device selection (CUDA when present, else Apple MPS, else CPU), CPU features and the autocast dtype."""
from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from util.errors import UserError


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class DeviceError(UserError, ValueError):
    """A device that this machine does not have."""


def resolve_device(name: str | torch.device | None) -> torch.device:
    """`None`/"auto" -> default_device(); otherwise torch.device(name) (a name or a torch.device),
    checked to exist: CUDA present and, for "cuda:i", device i among this machine's GPUs. DeviceError
    otherwise; torch's own RuntimeError for a name it does not know."""
    if name is None or (isinstance(name, str) and name in ("", "auto")):
        return default_device()
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}", "CUDA is not available on this machine", "use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(f"--device {name}", f"CUDA device {device.index} does not exist (this machine has "
                              f"{count}: {', '.join(f'cuda:{i}' for i in range(count))})",
                              "use --device cuda (the first GPU) or one of those")
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


# ------------------------------------------------------------------ CPU features and --amp dtype
CPUINFO = Path("/proc/cpuinfo")
# x86 flag names as the Linux kernel spells them in /proc/cpuinfo ("flags" line)
X86_FLAGS = {"avx2": "avx2", "avx512": "avx512f", "avx512_bf16": "avx512_bf16", "amx": "amx_bf16"}
ARM_BF16_FLAG = "bf16"  # aarch64 BF16 instructions (FEAT_BF16), "Features" line
# torch's own CPU probes (the cpuinfo library), where /proc/cpuinfo is missing (macOS, Windows). Their
# names changed between releases, so each is looked up, never assumed:
# - torch.cpu.get_capabilities() (public, recent torch; 2.14 here): a mapping of these keys (Arm: "bf16")
TORCH_CAPABILITIES = {"avx2": "avx2", "avx512": "avx512_f", "avx512_bf16": "avx512_bf16", "amx": "amx_bf16"}
TORCH_ARM_BF16 = "bf16"
# - else private functions in torch.cpu or torch._C._cpu: _is_cpu_support_* in older releases (no AVX-512
#   BF16 probe; the oldest supported torch has few of them), _is_*_supported in newer; absent: unknown (None)
TORCH_CPU_PROBES = {
    "avx2": ("_is_avx2_supported", "_is_cpu_support_avx2"),
    "avx512": ("_is_avx512_supported", "_is_cpu_support_avx512"),
    "avx512_bf16": ("_is_avx512_bf16_supported",),
    "amx": ("_is_amx_tile_supported", "_is_cpu_support_amx_tile"),  # AMX tiles: every AMX CPU so far has AMX-BF16
}


@dataclass(frozen=True)
class CpuFeatures:
    """What the CPU offers for this network's arithmetic (None: could not be told).

    native_bf16 is the decision behind `--amp` on CPU: bfloat16 autocast pays off only where the
    CPU computes in bf16 itself (x86: AVX-512 BF16 or AMX; Arm: the BF16 extension) and torch's
    oneDNN runs bf16 kernels. Elsewhere oneDNN and torch emulate bf16 through fp32 and every
    convolution slows down (7.7x slower than fp32 was measured on an AVX2-only AMD EPYC).
    """

    model: str
    avx2: bool | None
    avx512: bool | None
    avx512_bf16: bool | None
    amx: bool | None
    arm_bf16: bool | None
    onednn_bf16: bool | None  # torch.ops.mkldnn._is_mkldnn_bf16_supported(), see onednn_bf16_support
    source: str  # where the instruction-set flags came from

    @property
    def native_bf16(self) -> bool:
        hardware = bool(self.avx512_bf16 or self.amx or self.arm_bf16)
        return hardware and self.onednn_bf16 is not False

    def describe(self) -> str:
        """One line: model and features, e.g. 'Intel Xeon; AVX2 yes, AVX-512 yes, ... -> native bf16'."""
        def yn(v: bool | None) -> str:
            return "?" if v is None else ("yes" if v else "no")

        parts = [f"AVX2 {yn(self.avx2)}", f"AVX-512 {yn(self.avx512)}", f"AVX-512 BF16 {yn(self.avx512_bf16)}",
                 f"AMX {yn(self.amx)}"]
        if self.arm_bf16 is not None:
            parts.append(f"Arm BF16 {yn(self.arm_bf16)}")
        if self.onednn_bf16 is False:
            parts.append("torch oneDNN bf16 no")
        verdict = "native bf16" if self.native_bf16 else "no native bf16"
        return f"{self.model}; {', '.join(parts)} ({self.source}) -> {verdict}"


def parse_cpuinfo(text: str) -> tuple[str, set[str]]:
    """(model name, flags) of the first processor in a /proc/cpuinfo text (x86 "flags", Arm "Features")."""
    model, flags = "", set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key in ("model name", "hardware") and not model:  # x86 "model" is a number, not a name
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, flags


def features_from_flags(model: str, flags: set[str], arch: str, onednn_bf16: bool | None,
                        source: str = "/proc/cpuinfo") -> CpuFeatures:
    """CpuFeatures from kernel flag names; `arch` is platform.machine() (x86_64, aarch64, ...)."""
    x86 = arch.lower() in ("x86_64", "amd64", "i386", "i686")
    arm = arch.lower() in ("aarch64", "arm64")
    return CpuFeatures(
        model=model or arch or "unknown CPU",
        **{name: (flag in flags) if x86 else False for name, flag in X86_FLAGS.items()},
        arm_bf16=(ARM_BF16_FLAG in flags) if arm else None,
        onednn_bf16=onednn_bf16, source=source,
    )


def onednn_bf16_support() -> bool | None:
    """Whether torch's oneDNN runs bf16 kernels here, None when torch cannot say.

    `torch.ops.mkldnn._is_mkldnn_bf16_supported()` (private; checked in torch 2.14, looked up
    defensively for other versions) is False without oneDNN (`torch.backends.mkldnn.is_available()`) and on x86
    below AVX-512 (or when ONEDNN_MAX_CPU_ISA caps oneDNN there). It is True on AVX-512 CPUs
    without AVX-512 BF16, where oneDNN emulates bf16, so it is a necessary condition only.
    """
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return None


def _torch_cpu_probe(names: tuple[str, ...]) -> bool | None:
    for holder in (getattr(torch, "cpu", None), getattr(torch._C, "_cpu", None)):
        for name in names:
            fn = getattr(holder, name, None)
            if fn is not None:
                try:
                    return bool(fn())
                except RuntimeError:
                    return None
    return None


def torch_cpu_flags(arch: str, onednn_bf16: bool | None) -> dict[str, bool | None]:
    """The CpuFeatures instruction-set fields as torch reports them (None: torch cannot say).

    torch.cpu.get_capabilities() where it exists, else the private probes of TORCH_CPU_PROBES. Arm
    BF16 without get_capabilities: oneDNN's bf16 check, which on Arm is the BF16 extension itself.
    """
    arm = arch.lower() in ("aarch64", "arm64")
    get_capabilities = getattr(getattr(torch, "cpu", None), "get_capabilities", None)
    try:
        caps = get_capabilities() if get_capabilities is not None else None
    except RuntimeError:
        caps = None
    if caps is not None:
        flags = {name: bool(caps.get(key, False)) for name, key in TORCH_CAPABILITIES.items()}
        return {**flags, "arm_bf16": bool(caps.get(TORCH_ARM_BF16, False)) if arm else None}
    probed = {name: _torch_cpu_probe(names) for name, names in TORCH_CPU_PROBES.items()}
    return {**probed, "arm_bf16": onednn_bf16 if arm else None}


@functools.lru_cache(maxsize=1)
def cpu_features() -> CpuFeatures:
    """Probe this machine once: /proc/cpuinfo on Linux, else what torch reports (torch_cpu_flags).

    The kernel's flags are the first source because their names are stable; torch's probes
    (torch.cpu.get_capabilities, the private torch.cpu._is_avx512_bf16_supported,
    _is_amx_tile_supported, ...) changed names between releases and do not exist in every
    supported torch, so each is looked up and counts as unknown (None) when absent. Unknown
    features are not native bf16, so `--amp` then runs fp32: never the emulated, slow case.
    """
    arch = platform.machine()
    onednn = onednn_bf16_support()
    try:
        model, flags = parse_cpuinfo(CPUINFO.read_text(errors="replace"))
    except OSError:
        flags = set()
    if flags:
        return features_from_flags(model, flags, arch, onednn)
    return CpuFeatures(model=platform.processor() or arch or "unknown CPU", **torch_cpu_flags(arch, onednn),
                       onednn_bf16=onednn, source="torch.cpu")


def cpu_has_native_bf16() -> bool:
    """Whether bfloat16 autocast runs natively on this CPU (see CpuFeatures.native_bf16)."""
    return cpu_features().native_bf16


NO_NATIVE_BF16_NOTE = (
    "note: --amp: this CPU has no native bfloat16 (AVX-512 BF16, AMX or Arm BF16), where bfloat16 autocast "
    "is several times slower than fp32; running in fp32 (--amp_dtype bfloat16 forces autocast)"
)
CPU_FLOAT16_NOTE = (
    "note: --amp_dtype float16 on a CPU: float16 autocast ran slower than fp32 (and than bfloat16) on every CPU "
    "measured (README, Speed); running it as asked (--amp alone picks bfloat16 or fp32)"
)


def choose_amp_dtype(
    device: torch.device, amp: bool, requested: str | None, native_bf16: bool
) -> tuple[torch.dtype | None, str | None]:
    """The autocast dtype of `--amp` (None: run in fp32) and a one-line note for the user, or None.

    requested: `--amp_dtype` (float16/bfloat16), always obeyed; float16 on a CPU with a note (it
    was slower than fp32 on every CPU measured, even with AVX-512 FP16). Otherwise: float16 on CUDA
    (the original's AMP), bfloat16 on a CPU with native bf16 support, fp32 with a note on a CPU
    without it (bf16 emulation is slower than fp32), bfloat16 on other devices (MPS).
    """
    if not amp:
        return None, None
    if requested is not None:
        return getattr(torch, requested), CPU_FLOAT16_NOTE if device.type == "cpu" and requested == "float16" else None
    if device.type == "cuda":
        return torch.float16, None
    if device.type == "cpu" and not native_bf16:
        return None, NO_NATIVE_BF16_NOTE
    return torch.bfloat16, None


def resolve_amp_dtype(device: torch.device, amp: bool, requested: str | None = None
                      ) -> tuple[torch.dtype | None, str | None]:
    """choose_amp_dtype with this machine's CPU probed (only when the answer depends on it)."""
    needs_probe = amp and requested is None and device.type == "cpu"
    return choose_amp_dtype(device, amp, requested, cpu_has_native_bf16() if needs_probe else True)


def precision_label(dtype: torch.dtype | None) -> str:
    """'fp32', 'bf16' or 'fp16': what a run under `dtype` autocast (None: none) computes in."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))
