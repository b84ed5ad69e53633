"""The STCN network: one class for training and evaluation.

Glossary (stride suffixes as in the field; spatial sizes at stride s are H/s x W/s):
    f16, f8, f4   key-encoder (ResNet-50) features: 1024, 512, 256 channels
    k16 / qk16    query key = key_proj(f16), C_k = key_dim channels (64, the paper's); reused as a memory key (mk16)
    qv16          query value = key_comp(f16), 512 channels, given to the decoder with the readout
    mk16, mv16    memory keys (B, C_k, T, h, w) and values (B, K, C_v, T, h, w)
    K             number of objects; T number of memory frames

Parameter names follow the released `stcn.pth` (`key_encoder.res2`, `key_proj.key_proj`,
`decoder.up_16_8`, ...), so that checkpoint loads with strict=True.

The network carries the options that its weights only make sense with: the similarity of its
memory read (`similarity`, L2 as the paper) and the key size C_k (`key_dim`). Its state_dict
records both in the state dict's metadata (`state._metadata[""]["stcn"]`, the dict torch keeps per
module for format versions), so the saved file is still the released format (the same 405 tensors,
loadable by the original code) and `state_options` reads them back; a file without them (the
released stcn.pth) means L2, and C_k always comes from the key projection's shape.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.aggregate import aggregate_logits
from model.memory_util import SIMILARITIES, check_similarity, readout, similarity, softmax
from model.modules import F16_DIM, KEY_DIM, VALUE_DIM, Decoder, KeyEncoder, KeyProjection, ValueEncoder
from model.resnet import DEFAULT_KEY_BACKBONE, KEY_BACKBONES, pad_input_channels
from util.errors import UserError

VALUE_CONV1 = "value_encoder.conv1.weight"
KEY_PROJ = "key_proj.key_proj.weight"  # C_k, 1024, 3, 3: the key size of a state dict
WIDTH_PROBE = "key_encoder.res2.0.conv1.weight"  # the key encoder's first bottleneck conv: its width
RESNET50_WIDTH = 64  # ResNet-50's first bottleneck width (WideResNet-50-2: twice that)
META_ENTRY = "stcn"  # the root module's state-dict metadata entry holding the network's options
RELEASED_SIMILARITY = "l2"  # weights without metadata (the released stcn.pth) use L2 (section 4)


class CheckpointMismatchError(UserError, ValueError):
    """A state dict whose keys or shapes are not those of the STCN network (`where` is "state dict";
    a reader that knows the file re-raises it with the path and the fix)."""


class STCN(nn.Module):
    """Key encoder, value encoder, key projection/compression and decoder of STCN.

    single_object=True builds the stage-0 network whose value encoder sees [RGB, mask]
    (4 channels); otherwise it also sees the union of the other objects' masks (5 channels).
    pretrained=True initialises both backbones from torchvision's ImageNet weights (a download
    on first use); pretrained=False downloads nothing (use it when a checkpoint is loaded next).
    similarity: the memory read's similarity, one of SIMILARITIES ("l2", "dot", "cosine"; Table 2);
    key_dim: C_k, the key channels (64 in the paper, 128 in Table 2's other rows).
    backbone: the key encoder's, one of KEY_BACKBONES: "resnet50" (the paper's), "wrn50" or
    "wrn50_aspp" (supplementary E's ensemble members: WideResNet-50-2, with ASPP on its res4 features).
    """

    def __init__(
        self, single_object: bool = False, pretrained: bool = False, similarity: str = "l2", key_dim: int = KEY_DIM,
        backbone: str = DEFAULT_KEY_BACKBONE,
    ) -> None:
        super().__init__()
        if key_dim < 1:
            raise ValueError(f"key_dim must be >= 1, got {key_dim}")
        self.single_object = single_object
        self.similarity = check_similarity(similarity)
        self.key_dim = key_dim
        if backbone not in KEY_BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(KEY_BACKBONES)}, got {backbone!r}")
        self.backbone = backbone
        self.key_encoder = KeyEncoder(pretrained, backbone)
        self.value_encoder = ValueEncoder(1 if single_object else 2, pretrained)
        self.key_proj = KeyProjection(F16_DIM, key_dim)
        self.key_comp = nn.Conv2d(F16_DIM, VALUE_DIM, 3, padding=1)
        self.decoder = Decoder()
        # the public name in recent torch, the private one (same hook signature) in older releases
        getattr(self, "register_state_dict_post_hook", self._register_state_dict_hook)(_record_options)

    def options(self) -> dict[str, Any]:
        """The options stored with the weights (see the module docstring)."""
        return {"similarity": self.similarity, "key_dim": self.key_dim, "backbone": self.backbone}

    # ----------------------------------------------------------------------------------- encoders
    def encode_key(self, frame: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """frame: B, 3, H, W (normalised, sides multiples of 16) -> k16, qv16, f16, f8, f4."""
        f16, f8, f4 = self.key_encoder(frame)
        return self.key_proj(f16), self.key_comp(f16), f16, f8, f4

    def encode_value(self, frame: Tensor, f16: Tensor, masks: Tensor, others: Tensor | None = None) -> Tensor:
        """Memory values of K objects in one batch.

        frame: B, 3, H, W;  f16: B, 1024, h, w (the key encoder's, feature reuse);
        masks: B, K, H, W probabilities.  Returns mv16: B, K, C_v, h, w.
        The multi-object network also receives, per object, the sum of the other objects' masks
        (computed from `masks` unless `others`, B, K, H, W, is given: a batch of a subset of objects).
        """
        b, k, h, w = masks.shape
        parts = [frame.unsqueeze(1).expand(b, k, 3, h, w), masks.unsqueeze(2)]
        if not self.single_object:
            if others is None:
                others = masks.sum(dim=1, keepdim=True) - masks  # zeros when K = 1
            parts.append(others.unsqueeze(2))
        x = torch.cat(parts, dim=2).flatten(0, 1)  # B*K, 3 + masks, H, W
        if b > 1:  # with one frame, f16 stays batch 1: the fusion block computes its half once
            f16 = f16.unsqueeze(1).expand(b, k, *f16.shape[1:]).flatten(0, 1)
        mv16 = self.value_encoder(x, f16)
        return mv16.view(b, k, *mv16.shape[1:])

    # ----------------------------------------------------------------------------------- decoding
    def decode(
        self, readout16: Tensor, qv16: Tensor, f8: Tensor, f4: Tensor, owners: Tensor | None = None
    ) -> Tensor:
        """Per-object logits N, 1, H, W from readouts N, C_v, h, w; qv16/f8/f4 batch N or 1 (shared), or
        batch B (frames) with `owners`: N long indices, the frame of each object (several videos in one
        batch: the frame-level convolutions run once per frame, not per object)."""
        return self.decoder(readout16, qv16, f8, f4, owners)

    def segment(
        self,
        qk16: Tensor,
        qv16: Tensor,
        qf8: Tensor,
        qf4: Tensor,
        mk16: Tensor,
        mv16: Tensor,
        selector: Tensor | None = None,
        top_k: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Read the memory and decode every object of a batch (the training path).

        qk16: B, C_k, h, w;  qv16: B, C_v, h, w;  qf8, qf4: B, ...;
        mk16: B, C_k, T, h, w;  mv16: B, K, C_v, T, h, w;  selector: B, K (1 = real object).
        Returns (logits, prob), both B, K + 1, H, W with the background first; prob sums to 1.
        One affinity per sample serves all of its objects.
        """
        b, k = mv16.shape[:2]
        h, w = qk16.shape[-2:]
        affinity = softmax(similarity(mk16.flatten(2), qk16.flatten(2), self.similarity), top_k)  # B, N, M
        mv = mv16.flatten(3).transpose(0, 1)  # K, B, C_v, N
        read = torch.stack([readout(affinity, mv[i]) for i in range(k)], dim=1)  # B, K, C_v, M
        read = read.view(b * k, -1, h, w)

        def per_object(x: Tensor) -> Tensor:
            return x.repeat_interleave(k, dim=0)

        logits = self.decode(read, per_object(qv16), per_object(qf8), per_object(qf4))
        prob = torch.sigmoid(logits.view(b, k, *logits.shape[-2:]))
        if selector is not None:
            prob = prob * selector[:, :, None, None]
        logits = aggregate_logits(prob, dim=1)
        return logits, F.softmax(logits, dim=1)

    # ---------------------------------------------------------------------------------- weights
    def load_weights(self, state_dict: Mapping[str, Tensor], for_training: bool = False) -> None:
        """Strictly load a released-format state dict (optionally `module.`-prefixed by DDP).

        A stage-0 state dict (4-channel value encoder input) loaded into the multi-object network
        gets its "other objects" channel added: zeros for evaluation (identical outputs), orthogonal
        initialisation to start stage 1/2/3 training. Weights trained with another similarity than
        this network's raise CheckpointMismatchError (build the network from `state_options`).
        """
        theirs = state_options(state_dict)["similarity"]
        if theirs != self.similarity:
            raise CheckpointMismatchError(
                "state dict", f"trained with {theirs} similarity, but the network reads with {self.similarity}"
            )
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}
        own = self.state_dict()
        if VALUE_CONV1 in state and VALUE_CONV1 in own:
            want = own[VALUE_CONV1].shape[1]
            have = state[VALUE_CONV1].shape[1]
            if have < want:
                state[VALUE_CONV1] = pad_input_channels(
                    state[VALUE_CONV1], want, "orthogonal" if for_training else "zeros"
                )
        check_state_dict(state, own)
        self.load_state_dict(state, strict=True)


def _record_options(module: STCN, state: Mapping[str, Tensor], prefix: str, local_metadata: dict) -> None:
    """state_dict hook: the network's options go into its own metadata entry (prefix "" or "module.")."""
    local_metadata[META_ENTRY] = module.options()


def state_options(state: Mapping[str, Tensor]) -> dict[str, Any]:
    """`similarity` and `key_dim` of the network that wrote `state` (STCN(**state_options(state))).

    The similarity from the metadata an STCN's state_dict records (see the module docstring), else
    RELEASED_SIMILARITY (L2); key_dim from the key projection's shape (KEY_DIM if it has none).
    Raises CheckpointMismatchError for a similarity this code does not know.
    """
    metadata = getattr(state, "_metadata", None) or {}
    entry = next((metadata[p][META_ENTRY] for p in ("", "module")
                  if isinstance(metadata.get(p), Mapping) and META_ENTRY in metadata[p]), {})
    kind = entry.get("similarity", RELEASED_SIMILARITY) if isinstance(entry, Mapping) else RELEASED_SIMILARITY
    if kind not in SIMILARITIES:
        raise CheckpointMismatchError("state dict", f"records an unknown similarity {kind!r} (this code knows "
                                      f"{', '.join(SIMILARITIES)})")
    proj = state.get(KEY_PROJ, state.get(f"module.{KEY_PROJ}"))
    key_dim = int(proj.shape[0]) if isinstance(proj, Tensor) and proj.dim() == 4 else KEY_DIM
    return {"similarity": kind, "key_dim": key_dim, "backbone": state_backbone(state)}


def state_backbone(state: Mapping[str, Tensor]) -> str:
    """The key encoder's backbone, from the shapes: WideResNet-50-2's first bottleneck is twice as wide
    (128 channels, ResNet-50's 64), and the ASPP variant has `key_encoder.aspp.*` weights."""
    keys = {k[len("module."):] if k.startswith("module.") else k for k in state}
    first = state.get(WIDTH_PROBE, state.get(f"module.{WIDTH_PROBE}"))
    wide = isinstance(first, Tensor) and first.dim() == 4 and first.shape[0] == 2 * RESNET50_WIDTH
    if not wide:
        return DEFAULT_KEY_BACKBONE
    return "wrn50_aspp" if any(k.startswith("key_encoder.aspp.") for k in keys) else "wrn50"


def check_state_dict(state: Mapping[str, Tensor], own: Mapping[str, Tensor]) -> None:
    """Raise CheckpointMismatchError with a short summary if keys or shapes differ."""
    differences = state_dict_differences(state, own)
    if differences:
        raise CheckpointMismatchError("state dict", "not an STCN checkpoint: " + differences)


def state_dict_differences(state: Mapping[str, Tensor], own: Mapping[str, Tensor]) -> str | None:
    """A short summary of how the keys and shapes of `state` differ from those of `own` (a network's
    state dict: its contract), e.g. "3 missing: a, b, c; 1 wrong shape: d (1,) != (2,)"; None when equal."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    parts = []
    for name, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            parts.append(f"{len(items)} {name}: {', '.join(items[:3])}{more}")
    return "; ".join(parts) or None
