"""Shared pytest fixtures: tiny networks built without downloads."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

# progressbar maps fd=sys.stderr to the stream it saw when progressbar.utils was first imported (lazily,
# on first use): import it now, so that this is the session's stream and not one test's capsys stream,
# which is closed after that test (util/download.py's bar would then write to a closed file).
import progressbar.utils  # noqa: E402,F401


@pytest.fixture(scope="session")
def stcn_net():
    """A randomly initialised multi-object STCN in eval mode (shared; do not modify)."""
    from model import STCN

    torch.manual_seed(0)
    return STCN(pretrained=False).eval()


@pytest.fixture(scope="session")
def released_checkpoint(tmp_path_factory, stcn_net):
    """A random network saved exactly as the released stcn.pth (plain state_dict)."""
    path = tmp_path_factory.mktemp("ckpt") / "stcn.pth"
    torch.save(stcn_net.state_dict(), path)
    return path
