"""Reading and writing checkpoints safely.

`atomic_save` writes to a temporary file in the target folder and renames it, so an interrupted
write never leaves a truncated file under the final name. `load_state_dict_file` turns every way a
checkpoint file can be wrong into one `CheckpointError` that names the file and the fix.
`load_released` loads one of the interactive networks' released files (`RELEASED`) strictly, after
checking it against the network's own state dict, and says what a wrong file looks like instead.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from model.network import STCN, CheckpointMismatchError, state_dict_differences, state_options
from util.atomic import atomic_path
from util.errors import UserError

# torch's zip writer (caffe2 inline_container.cc) when a write fails, e.g. on a full disk:
# "... PytorchStreamWriter failed writing file ..." or "... unexpected pos 704 vs 598"
WRITER_FAILURE = ("PytorchStreamWriter failed", "inline_container")
NEARLY_FULL_BYTES = 16 * 2**20  # below this much free space a failed write is taken for a full disk


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file that is missing, unreadable or not the state dict of the expected network."""


@dataclass(frozen=True)
class ReleasedNetwork:
    """A released network file as the user meets it: what it is, its name under saves/, the flag that
    names it, the command that downloads it, and keys that only its state dict has (`looks_like`)."""

    what: str
    file: str
    flag: str
    download: str
    probes: tuple[str, ...]

    def fix(self) -> str:
        return f"pass {self.flag} the released {self.file} (`{self.download}` saves it as saves/{self.file})"


RELEASED = {
    "stcn": ReleasedNetwork("the STCN propagation network", "stcn.pth", "--model", "python download_model.py",
                            ("key_encoder.conv1.weight", "value_encoder.conv1.weight")),
    "s2m": ReleasedNetwork("the scribble-to-mask network", "s2m.pth", "--s2m_model",
                           "python download_model.py --model s2m",
                           ("backbone.conv1.weight", "classifier.aspp.project.0.weight")),
    "fusion_stcn": ReleasedNetwork("the difference-aware fusion network", "fusion_stcn.pth", "--fusion_model",
                                   "python download_model.py --model fusion_stcn",
                                   ("conv1.0.weight", "final_conv.weight")),
}
RESNET_PROBES = ("conv1.weight", "layer1.0.conv1.weight", "fc.weight")  # torchvision's classifiers (ImageNet)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to `path` through a temporary file + rename (`util.atomic`), flushed to disk.

    A failed write (a full disk, ...) raises OSError naming `path`; the file there before is kept.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        try:
            torch.save(obj, f)
        except RuntimeError as exc:  # torch's zip writer reports a failed write as RuntimeError
            if not any(sign in str(exc) for sign in WRITER_FAILURE):
                raise
            raise write_failure(Path(path)) from None
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def write_failure(path: Path) -> OSError:
    """The OSError for a torch.save that failed while writing `path` (torch gives no errno)."""
    try:
        full = shutil.disk_usage(path.parent).free < NEARLY_FULL_BYTES
    except OSError:
        full = False
    if full:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return OSError(errno.EIO, "torch could not write the file (is the disk full?)", str(path))


def _numpy_array_globals() -> list:
    """What pickle needs to rebuild a numpy array: the arrays of a numpy random state, which training
    checkpoints that do not store it as plain numbers hold."""
    reconstruct = np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's array rebuilder, wherever it lives
    # numpy 1 pickles it as numpy.core.multiarray._reconstruct, numpy 2 as numpy._core.multiarray._reconstruct
    names = [(reconstruct, f"{package}.multiarray._reconstruct") for package in ("numpy.core", "numpy._core")]
    return [*names, np.ndarray, np.dtype, type(np.dtype(np.uint32))]  # the state's keys are uint32


def safe_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """torch.load with `weights_only=True` (no code runs while reading), plus exactly the numpy array
    types a training checkpoint may hold, so that every checkpoint this project wrote loads safely."""
    allowed = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    with allowed(_numpy_array_globals()) if allowed else contextlib.nullcontext():
        return torch.load(path, map_location=map_location, weights_only=True)


def load_state_dict_file(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", flag: str = "--model", network: str = "stcn"
) -> dict[str, Tensor]:
    """Read a released-format network state dict (a plain dict of tensors).

    A training checkpoint (`{"network": state_dict, ...}`) is accepted too: its network is returned.
    `flag` is the command-line flag that named the file and `network` the kind of file expected (a key
    of RELEASED), for the messages. The state dict's metadata (the network's options, `state_options`) is kept.
    """
    path = Path(path)
    released = RELEASED[network]
    if not path.is_file():
        raise CheckpointError(
            path,
            "no such checkpoint",
            f"run `{released.download}` (saves/{released.file}) or pass {flag} PATH",
        )
    try:
        obj = safe_load(path, map_location)
    except Exception as exc:  # torch raises many kinds for a corrupt/foreign file
        raise CheckpointError(
            path,
            f"cannot be read as a PyTorch checkpoint ({type(exc).__name__})",
            f"re-download it if it came from download_model.py (--force), or point {flag} at another file",
        ) from None
    if isinstance(obj, Mapping) and "network" in obj and isinstance(obj["network"], Mapping):
        obj = obj["network"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(path, f"not a network state dict (expected a dict of tensors as {released.file})")
    state = OrderedDict(obj)
    if isinstance(getattr(obj, "_metadata", None), Mapping):
        state._metadata = obj._metadata  # the options of the network that wrote it
    return state


def looks_like(state: Mapping[str, Tensor]) -> str | None:
    """What a state dict seems to be, from keys only that network has: one of RELEASED ("the STCN
    propagation network stcn.pth"), a torchvision ResNet, or None (unknown)."""
    keys = {k.removeprefix("module.") for k in state}
    for released in RELEASED.values():
        if keys.issuperset(released.probes):
            return f"{released.what} {released.file}"
    if keys.issuperset(RESNET_PROBES):
        return "a torchvision ResNet classifier"
    return None


def contract_problem(state: Mapping[str, Tensor], own: Mapping[str, Tensor], network: str) -> str | None:
    """Why `state` is not the released `network`'s state dict, whose contract is `own` (its keys and
    shapes): what it looks like instead and how its keys and shapes differ; None when they match."""
    differences = state_dict_differences(state, own)
    if differences is None:
        return None
    seen = looks_like(state)
    released = RELEASED[network]
    if seen is None or seen == f"{released.what} {released.file}":
        return differences
    return f"it looks like {seen}: {differences}"


def load_released(
    path: str | os.PathLike, build: Callable[[], nn.Module], kind: str, device: str | torch.device = "cpu"
) -> nn.Module:
    """Load the released `kind` file (a key of RELEASED other than STCN's, which `load_network` reads)
    into the network `build()` makes, with strict=True after checking the file against the network's own
    state dict; returned in eval mode on `device`. The network is built on the meta device and takes the
    file's tensors (no random initialisation to throw away). Every wrong file raises one CheckpointError
    naming it, what it looks like and the fix."""
    released = RELEASED[kind]
    state = load_state_dict_file(path, flag=released.flag, network=kind)
    with torch.device("meta"):
        network = build()
    problem = contract_problem(state, network.state_dict(), kind)
    if problem:
        raise CheckpointError(path, f"not {released.what} {released.file} ({problem})", released.fix())
    network.load_state_dict(state, strict=True, assign=True)
    return network.eval().to(device)


def load_network(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    for_training: bool = False,
    single_object: bool = False,
) -> STCN:
    """Build an STCN (no download) and load `path` strictly; stage-0 files are converted.

    The network gets the similarity and key size the weights were trained with (`state_options`:
    released weights are L2 with C_k = 64). It is returned in eval mode unless `for_training`.
    """
    state = load_state_dict_file(path)
    try:
        net = STCN(single_object=single_object, pretrained=False, **state_options(state))
        net.load_weights(state, for_training=for_training)
    except CheckpointMismatchError as exc:
        raise CheckpointError(path, exc.problem, "use a released STCN checkpoint (python download_model.py)") from None
    net.train(for_training)
    return net.to(device)
