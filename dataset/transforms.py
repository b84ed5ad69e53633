"""Image normalisation and the joint image+mask augmentations of supplementary F.3.

Every geometric transform here comes from torchvision `transforms.v2` and is applied to a
`tv_tensors.Image` and a `tv_tensors.Mask` in the same call: v2 draws the random parameters once per
call and applies them to both, interpolating the image bilinearly and the mask with nearest neighbour,
and filling uncovered pixels per type (`JOINT_FILL`: the ImageNet mean colour for images, background 0
for masks). To apply one draw to a whole clip, stack its frames into one `Image` of shape (T, 3, H, W)
and one `Mask` of shape (T, H, W).

Images stay uint8 (0..255) through the augmentations; `to_model_input` converts to the normalised float
tensor the network takes.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from torchvision.transforms import InterpolationMode, v2

# the ImageNet normalisation lives with the inference frame resize (`util.frames`); re-exported here
from util.frames import IMAGENET_MEAN, IMAGENET_STD, im_denormalization, im_normalization

try:  # torchvision >= 0.17
    from torchvision import tv_tensors
except ImportError:  # torchvision 0.15/0.16 (torch 2.0/2.1) called the module `datapoints`
    from torchvision import datapoints as tv_tensors  # type: ignore[no-redef]

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_FILL",
    "JOINT_FILL",
    "tv_tensors",
    "im_normalization",
    "im_denormalization",
    "to_model_input",
    "static_base_transform",
    "static_frame_transform",
    "vos_clip_transform",
    "vos_frame_transform",
]

# uint8 colour used for pixels that an affine/crop/warp uncovers: the mean colour, which normalises to 0.
IMAGE_FILL: tuple[int, int, int] = tuple(round(255 * m) for m in IMAGENET_MEAN)  # (124, 116, 104)
# Fill per tv_tensor type: images get the mean colour, masks the background label.
JOINT_FILL = {tv_tensors.Image: IMAGE_FILL, tv_tensors.Mask: 0}

IMAGE_INTERPOLATION = InterpolationMode.BILINEAR  # masks always use nearest neighbour in v2

# supplementary F.3.1 (static image pre-training)
STATIC_BASE_SCALE = (0.8, 1.5)  # random scaling of the base image
STATIC_BASE_JITTER = (0.1, 0.05, 0.05, 0.05)  # brightness, contrast, saturation, hue
STATIC_FRAME_DEGREES = 20
STATIC_FRAME_SCALE = (0.9, 1.1)
STATIC_FRAME_SHEAR = 10
STATIC_FRAME_JITTER = (0.1, 0.05, 0.05, 0.0)
GRAYSCALE_P = 0.05  # F.3.1 and F.3.2

# supplementary F.3.2 (main training; F.3.3 BL30K changes only the crop scale)
VOS_CROP_SCALE = (0.36, 1.0)
BL30K_CROP_SCALE = (0.25, 1.0)  # F.3.3
VOS_CROP_RATIO = (0.75, 1.25)
VOS_CLIP_JITTER = (0.1, 0.03, 0.03, 0.0)
VOS_FRAME_JITTER = (0.01, 0.01, 0.01, 0.0)
VOS_FRAME_DEGREES = 15
VOS_FRAME_SHEAR = 10

DEFAULT_CROP_SIZE = 384  # F.3.1, F.3.2


def to_model_input(image: Tensor) -> Tensor:
    """uint8 image (..., 3, H, W) -> normalised float32 image as the network expects it."""
    return im_normalization(image.as_subclass(Tensor).float().div(255))


def static_base_transform() -> v2.Compose:
    """F.3.1, applied once to the source image of a static sample (shared by its three frames).

    The random scaling is a zoom about the image centre (an affine with scale only): zooming out by up to
    0.8 shows a border of fill, zooming in by up to 1.5 crops. It changes the object's size relative to
    the 384 crop taken later, which a plain resize would not (that resize undoes any global scale).
    """
    return v2.Compose([
        v2.RandomAffine(degrees=0, scale=STATIC_BASE_SCALE, interpolation=IMAGE_INTERPOLATION, fill=JOINT_FILL),
        v2.RandomHorizontalFlip(),
        v2.ColorJitter(*STATIC_BASE_JITTER),
        v2.RandomGrayscale(GRAYSCALE_P),
    ])


def static_frame_transform(crop_size: int = DEFAULT_CROP_SIZE) -> v2.Compose:
    """F.3.1, drawn anew for each synthetic frame: affine, colour jitter, shorter side to `crop_size`, crop."""
    return v2.Compose([
        v2.RandomAffine(
            degrees=STATIC_FRAME_DEGREES,
            scale=STATIC_FRAME_SCALE,
            shear=STATIC_FRAME_SHEAR,
            interpolation=IMAGE_INTERPOLATION,
            fill=JOINT_FILL,
        ),
        v2.ColorJitter(*STATIC_FRAME_JITTER),
        v2.Resize(crop_size, interpolation=IMAGE_INTERPOLATION, antialias=True),
        v2.RandomCrop(crop_size, pad_if_needed=True, fill=JOINT_FILL),
    ])


def vos_clip_transform(
    crop_size: int = DEFAULT_CROP_SIZE, crop_scale: Sequence[float] = VOS_CROP_SCALE
) -> v2.Compose:
    """F.3.2, one draw for the whole clip: call it on an Image (T, 3, H, W) and a Mask (T, H, W).

    Use `crop_scale=BL30K_CROP_SCALE` for BL30K (F.3.3).
    """
    return v2.Compose([
        v2.RandomHorizontalFlip(),
        v2.RandomResizedCrop(
            (crop_size, crop_size),
            scale=tuple(crop_scale),
            ratio=VOS_CROP_RATIO,
            interpolation=IMAGE_INTERPOLATION,
            antialias=True,
        ),
        v2.ColorJitter(*VOS_CLIP_JITTER),
        v2.RandomGrayscale(GRAYSCALE_P),
    ])


def vos_frame_transform() -> v2.Compose:
    """F.3.2, drawn anew for each frame of a clip: small colour jitter, rotation and shear."""
    return v2.Compose([
        v2.ColorJitter(*VOS_FRAME_JITTER),
        v2.RandomAffine(
            degrees=VOS_FRAME_DEGREES,
            shear=VOS_FRAME_SHEAR,
            interpolation=IMAGE_INTERPOLATION,
            fill=JOINT_FILL,
        ),
    ])
