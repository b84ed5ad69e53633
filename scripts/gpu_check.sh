#!/usr/bin/env bash
# GPU checks of issue 16, for a session that is lent a GPU (at most 535 s of timeouts, < 9 minutes, on an H100/H200 class GPU).
#   bash scripts/gpu_check.sh OUTDIR
# Writes to OUTDIR: env.txt (GPU, versions), pytest.txt (the suite's CUDA paths: tests/test_cuda.py,
# then the whole suite, which runs its "auto" device tests on CUDA), devices.txt (CUDA fp32 masks
# against CPU masks on the synthetic DAVIS set: pixel agreement, goal >= 0.9995), and
# fps_fp32_fp16.md, fps_bf16.md, fps_compile.md (480p FPS for 1, 2 and 4 objects from
# scripts/benchmark_inference.py: fp32, fp16 and bf16 autocast, and --compile with 2 objects;
# the issue's goal: >= 150 FPS at 480p with 2 objects under AMP), fps_video_batch.md (issue 14: throughput
# and peak memory of 1, 2 and 4 videos per batch, 2 objects, fp16 autocast). Weights: saves/stcn.pth if present,
# else random (speed does not depend on them; random weights make near-tie pixels, see devices.txt).
# Needs a Python with the project's requirements (torch with CUDA); each step has its own timeout,
# so one failing or slow step does not stop the others.
set -u
OUT="${1:?usage: scripts/gpu_check.sh OUTDIR}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
MODEL_ARG=()
[ -f saves/stcn.pth ] && MODEL_ARG=(--model saves/stcn.pth)
export STCN_CHECK_MODEL="${MODEL_ARG[1]:-}"

{ nvidia-smi || true
  "$PY" -c "import torch, sys; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda,
            torch.cuda.is_available() and torch.cuda.get_device_name(0))"
  "$PY" -m pip list 2>/dev/null | grep -i -E "^(torch|torchvision|onnx|onnxruntime|openvino|numpy|pillow|av) " || true
} >"$OUT/env.txt" 2>&1

timeout 45 "$PY" -m pytest -q tests/test_cuda.py -p no:cacheprovider >"$OUT/pytest.txt" 2>&1
timeout 100 "$PY" -m pytest -q tests -p no:cacheprovider --maxfail 5 >>"$OUT/pytest.txt" 2>&1

timeout 75 "$PY" - <<'PYEOF' >"$OUT/devices.txt" 2>&1
import os, sys, tempfile
from pathlib import Path
import numpy as np, torch
from PIL import Image
sys.path.insert(0, ".")
import eval_davis
from tests.eval_fixtures import make_davis
torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # fp32 proper
tmp = Path(tempfile.mkdtemp())
model = os.environ.get("STCN_CHECK_MODEL") or None
if model is None:
    from model import STCN
    torch.manual_seed(0)
    model = tmp / "random.pth"
    torch.save(STCN(pretrained=False).state_dict(), model)
data = make_davis(tmp / "davis")
for name, dev in (("cpu", "cpu"), ("cuda", os.environ.get("STCN_CHECK_DEVICE", "cuda"))):
    assert eval_davis.main(["--model", str(model), "--davis_path", str(data / "2017"), "--output", str(tmp / name),
                            "--device", dev]) == 0
same = total = 0
for png in sorted((tmp / "cpu").rglob("*.png")):
    a, b = np.array(Image.open(png)), np.array(Image.open(tmp / "cuda" / png.relative_to(tmp / "cpu")))
    same += int((a == b).sum()); total += a.size
print(f"CUDA fp32 vs CPU fp32 pixel agreement: {same / total:.6f} over {total} pixels (goal >= 0.9995)")
PYEOF

BENCH=("$PY" scripts/benchmark_inference.py "${MODEL_ARG[@]}" --device cuda --height 480 --lengths 40 --objects 1 2 4)
timeout 90 "${BENCH[@]}" --precision fp32 amp --amp_dtype float16 >"$OUT/fps_fp32_fp16.md" 2>&1
timeout 45 "${BENCH[@]}" --precision amp --amp_dtype bfloat16 >"$OUT/fps_bf16.md" 2>&1
timeout 180 "$PY" scripts/benchmark_inference.py "${MODEL_ARG[@]}" --device cuda --height 480 --lengths 40 \
    --objects 2 --precision fp32 amp --amp_dtype float16 --compile --warmup 5 >"$OUT/fps_compile.md" 2>&1
timeout 60 "$PY" scripts/benchmark_inference.py "${MODEL_ARG[@]}" --device cuda --height 480 --lengths 20 \
    --objects 2 --precision amp --amp_dtype float16 --video_batch 1 2 4 >"$OUT/fps_video_batch.md" 2>&1
echo "done; tables in $OUT" | tee -a "$OUT/env.txt"
