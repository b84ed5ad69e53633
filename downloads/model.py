"""The released models: where each is published, its sha256, and `ensure_model`, which returns
the path of an intact checkpoint, downloading it when needed. Besides STCN's two, the interactive
networks of MiVOS-STCN: scribble-to-mask (`s2m`) and the difference-aware fusion for STCN (`fusion_stcn`).

A file already present is kept when it is the expected network (the released keys and tensor shapes)
and matches the sha256 recorded in ``<file>.sha256`` at its first download; anything else is reported
and replaced only with --force. A downloaded file is checked the same way before it is kept.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from downloads.fetch import (
    DownloadError,
    Fetcher,
    check_free_space,
    download,
    format_gb,
    sha256_file,
    sidecar_path,
    source_url,
    verify_file,
    write_sidecar,
)

if TYPE_CHECKING:  # torch and the network are imported where used: `download_model.py --help` stays instant
    import torch


@dataclass(frozen=True)
class ModelSpec:
    gdrive_id: str
    default_path: str
    description: str
    sha256: str | None = None  # no official hash is published; the sidecar records the first one
    network: str = 'stcn'  # whose layout the file has: 'stcn', or an interactive network (model.checkpoint.RELEASED)
    label: str = 'STCN model'  # in "not the released <label>"
    use: str = 'python eval_davis.py --model {path} --output ../output/d17'  # a command that reads it


MODELS = {
    's012': ModelSpec('1mRrE0uCI2ktdWlUgapJI_KmgeIiF2eOm', 'saves/stcn.pth',
                      'static + BL30K + main training (the better one)'),
    's03': ModelSpec('1JllXPJZola0G-g1aUQfXe9nLMBioj-aH', 'saves/stcn_s03.pth',
                     'static + main training, no BL30K'),
    's2m': ModelSpec('1HKwklVey3P2jmmdmrACFlkXtcvNxbKMM', 'saves/s2m.pth',
                     'interactive: the scribble-to-mask network (MiVOS)', network='s2m',
                     label='scribble-to-mask model s2m.pth',
                     use='python eval_interactive_davis.py --s2m_model {path}'),
    'fusion_stcn': ModelSpec('1MAbWHrOjlze9vPQdW-HxMnvjPpaZlfLv', 'saves/fusion_stcn.pth',
                             "interactive: the difference-aware fusion network for STCN's masks (MiVOS-STCN)",
                             network='fusion_stcn', label='fusion model fusion_stcn.pth',
                             use='python eval_interactive_davis.py --fusion_model {path}'),
}
DEFAULT_MODEL = 's012'
# 54,469,310 float32 values (the released state dict's 405 tensors) plus zip overhead and room for the .part copy
MODEL_NEEDED_BYTES = 300 * 10**6


def released_layout(network: str = 'stcn') -> dict[str, torch.Tensor]:
    """The released checkpoint's keys and shapes: the state dict of the network it holds (`ModelSpec.network`).

    Built on the meta device (shapes only: no memory, no weights, no download). STCN's s012 and s03
    share one (405 tensors, 54,469,310 values; the tests hold the recorded lists of keys and shapes).
    """
    import torch

    from model.fusion import FusionNet
    from model.network import STCN
    from model.s2m import S2M

    build = {'stcn': lambda: STCN(single_object=False, pretrained=False), 's2m': S2M, 'fusion_stcn': FusionNet}
    with torch.device('meta'):
        return build[network]().state_dict()


def model_problem(path: Path, network: str = 'stcn') -> str | None:
    """Why ``path`` is not a released-format ``network`` model (None when its keys and shapes match).

    Read with ``weights_only=True`` (no code from the file runs) and memory-mapped: only the
    tensor shapes are looked at.
    """
    import torch

    from model.checkpoint import RELEASED, contract_problem
    from model.network import CheckpointMismatchError, check_state_dict

    try:
        state = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception as exc:  # torch raises many kinds for a foreign or damaged file
        return f'cannot be read as a PyTorch state dict ({type(exc).__name__})'
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return f'not a state dict (a plain dict of tensors, as the released {RELEASED[network].file})'
    if network != 'stcn':
        return contract_problem(state, released_layout(network), network)
    try:
        check_state_dict(state, released_layout())
    except CheckpointMismatchError as exc:
        return exc.problem
    return None


def _check_checkpoint(path: Path, fix: str, expected_sha256: str | None = None, what: str | None = None,
                      spec: ModelSpec = MODELS[DEFAULT_MODEL]) -> None:
    """Reject what is not the released model of ``spec`` (keys and shapes) or has the wrong hash.

    ``what`` names the file in the message (default: its path); ``fix`` ends it.
    """
    what = what or str(path)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise DownloadError(what, 'not a PyTorch checkpoint (not a zip archive)', fix)
    problem = model_problem(path, spec.network)
    if problem:
        raise DownloadError(what, f'not the released {spec.label} ({problem})', fix)
    if expected_sha256 is not None and sha256_file(path) != expected_sha256:
        raise DownloadError(what, f'does not have the published sha256 {expected_sha256}', fix)


def ensure_model(path: str | Path | None = None, model: str = DEFAULT_MODEL, *,
                 source: str | None = None, force: bool = False,
                 fetcher: Fetcher | None = None) -> Path:
    """Return the path of an intact ``model`` checkpoint, downloading it if needed.

    ``source`` overrides the Google Drive id (an id or an http(s) URL, e.g. a mirror).
    Raises `DownloadError` with a message fit for the user.
    """
    if model not in MODELS:
        raise DownloadError('--model', f'unknown model {model!r}', f'choose one of {", ".join(MODELS)}')
    spec = MODELS[model]
    path = Path(path or spec.default_path)
    url = source_url(source or spec.gdrive_id)

    if path.is_file() and not force:
        intact = verify_file(path)
        if intact is False:
            raise DownloadError(path, f'does not match the checksum recorded in {sidecar_path(path)} (damaged '
                                'or replaced)', 'rerun with --force to download it again (the current file is '
                                'kept until the new one is complete)')
        # a recorded hash proves only that the file is unchanged since it was recorded, not what it holds
        _check_checkpoint(path, f'move it away, or rerun with --force to replace it with {url}', spec.sha256,
                          spec=spec)
        if intact is None:  # placed by hand, without a recorded hash: checked above, record it
            write_sidecar(path)
            print(f'{path} is present; recorded its sha256 in {sidecar_path(path)}')
        else:
            print(f'{path} is present and intact; nothing to download')
        return path
    if path.exists() and not path.is_file():
        raise DownloadError(path, 'exists and is not a file', 'move it away or choose --output')

    check_free_space(path.parent, MODEL_NEEDED_BYTES, 'choose another --output')
    expected = spec.sha256 if source is None else None  # a mirror may hold another build
    download(source or spec.gdrive_id, path, fetcher=fetcher,
             validate=lambda part: _check_checkpoint(
                 part, f'nothing was saved to {path}; check --source', expected, what=f'the file sent by {url}',
                 spec=spec))
    digest = write_sidecar(path)
    print(f'saved the {model} model ({format_gb(path.stat().st_size)}) to {path}; '
          f'sha256 {digest} recorded in {sidecar_path(path)}')
    return path
