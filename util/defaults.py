"""The paper's settings and the commands' fixed choices, without importing torch.

The commands build their `--help` (defaults and choices) from these before any heavy import, so
that `--help` and a mistyped flag are answered at once; the modules that use them (the network,
the inference core, the exporters) import them from here, so each value is written once.
"""
from __future__ import annotations

# --- the network (model/)
STRIDE = 16  # the coarsest feature stride (res4)
TOP_K = 20  # section 4: top-k filtering with k = 20 in all experiments
SIMILARITIES = ("l2", "dot", "cosine")  # the measures of Table 2; "l2" is the paper's (and the default)
KEY_DIMS = (64, 128)  # Table 2's key sizes, the choices of --key_dim
# the key encoder's backbones: the paper's ResNet-50 (section 3.1), and the WideResNet-50 (Zagoruyko and
# Komodakis, 2016; torchvision's wide_resnet50_2) of supplementary E's ensemble, with or without an ASPP
# head on res4. WideResNet-50-2 doubles the bottleneck width, not the block outputs, so its
# res2 / res3 / res4 give the same 256 / 512 / 1024 channels and everything after the trunk is unchanged.
KEY_BACKBONES = ("resnet50", "wrn50", "wrn50_aspp")
EXPORTERS = ("auto", "dynamo", "torchscript")  # the ONNX exporters (torch.export, or the tracing exporter)

# --- inference
MEM_EVERY = 5  # section 3.3 / 4: every 5th frame is memory
KERNEL_SIGMA = 7.0  # kernelized reading: Gaussian std in stride-16 cells (MiVOS's make_gaussian default; KMN [22])
BACKENDS = ("pytorch", "onnxruntime", "openvino")
CACHE_ENV = "STCN_ONNX_CACHE"  # the environment variable naming the cache of exported networks

# --- interactive segmentation
INTERACTIVE_CACHE_MB = 1024.0  # frames' network inputs and key features the interactive core keeps (~20 at 480p)
INTERACTIVE_PROB_MB = 2048.0  # per-frame probabilities it keeps in RAM (~300 frames at 480p, 3 objects); more: disk

# --- frame sizes
EVAL_SHORT_SIDE = 480  # "All evaluations are done in 480p resolution" (STCN README)
MIN_FEATURE_CELLS = 2  # cells of the stride-16 map along the shorter side (see MIN_SHORT_SIDE)
# The smallest shorter side the network is run at. Frames are padded to multiples of STRIDE (16,
# the key encoder's res4), so a side of at most 16 pixels becomes a single cell of the f16 map: the
# memory read then matches each frame as one key (no spatial correspondence is left) and the 3x3
# convolutions of the key projection, value fusion and decoder see only zero padding around it.
# Two cells of real image, 2 x 16 = 32 pixels, is the least where the f16 map still has spatial
# structure; the decoder's f8/f4 stages upsample from it.
MIN_SHORT_SIDE = MIN_FEATURE_CELLS * STRIDE
NATIVE_SIZE = -1  # `--size -1` (the predictor's size=-1): frames at their own size

# --- multi-scale evaluation
# supplementary E: "As we trained our network with 480p images, we additionally employ kernelized
# memory reading in 600p inference": --kernel_sigma applies to the variants whose shorter side exceeds this
KERNEL_ABOVE_SIDE = 480

# --- training
NULL_ID = "NULL"  # the run name that trains without logging or saving (as the original)
