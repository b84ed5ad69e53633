"""Shared pytest fixtures: tiny networks built without downloads."""
from __future__ import annotations

import signal
import sys
from pathlib import Path

import progressbar.utils  # noqa: F401
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
# progressbar keeps, for every later bar given fd=sys.stderr, the sys.stderr of the moment its
# `utils` module is first imported. Imported here, that is pytest's session-long stream; imported
# first inside a test using capsys, it would be that test's stream, closed when the test ends.

# Ctrl-C as in a terminal: a shell starts a background job (`cmd &` without job control) with SIGINT
# ignored, Python then installs no KeyboardInterrupt handler, and the ignored disposition is inherited
# by every subprocess. The interrupt tests send SIGINT, so the suite restores Python's own handler;
# the commands they start then inherit the default disposition (a handled signal is reset on exec).
signal.signal(signal.SIGINT, signal.default_int_handler)


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
