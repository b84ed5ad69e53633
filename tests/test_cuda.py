"""CUDA paths (skipped without a GPU): the core on CUDA against the CPU, fp32 and autocast."""
from __future__ import annotations

import copy

import pytest
import torch

from tests.test_export import assert_same_masks, video_run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_cuda_fp32_masks_match_cpu(stcn_net):
    allow = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # fp32 proper, not TF32
    try:
        cuda = copy.deepcopy(stcn_net).cuda()
        expected = video_run(stcn_net)
        prob, labels = video_run(cuda)
        assert prob.device.type == "cuda"
        assert_same_masks(expected, (prob.cpu(), labels))
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = allow


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_autocast_runs_and_sums_to_one(stcn_net, dtype):
    from inference_core import InferenceCore
    from tests.test_inference_core import moving_squares

    images, labels = moving_squares(frames=6)
    core = InferenceCore(copy.deepcopy(stcn_net).cuda(), amp=True, amp_dtype=dtype)
    for t, img in enumerate(images):
        prob = core.step(img, labels[0] if t == 0 else None)
        assert prob.dtype == torch.float32 and torch.isfinite(prob).all()
        torch.testing.assert_close(prob.sum(0), torch.ones_like(prob[0]), atol=1e-4, rtol=0)
