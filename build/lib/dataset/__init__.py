"""Training datasets of STCN (supplementary F.3) and the shared image/mask augmentation blocks.

Typical use in the trainer (main process, before any worker starts)::

    from dataset import static_datasets, main_training_datasets, bl30k_dataset, set_max_skip, worker_init_fn

    train_set = main_training_datasets(args.davis_root, args.yv_root, max_skip=5)   # checks the layouts
    loader = DataLoader(train_set, sampler=DistributedSampler(train_set), worker_init_fn=worker_init_fn,
                        generator=torch.Generator().manual_seed(seed + rank), ...)
    ...
    set_max_skip(train_set, 10)   # curriculum step: shared memory, running workers see it
"""
from dataset.static_dataset import StaticTransformDataset, static_datasets
from dataset.util import (
    DAVIS_SUBSET_FILE,
    YOUTUBE_SUBSET_FILE,
    DatasetLayoutError,
    DatasetRoot,
    check_dataset_root,
    load_subset,
    worker_init_fn,
)
from dataset.vos_dataset import YOUTUBE_FRAME_STRIDE, VOSDataset, bl30k_dataset, main_training_datasets, set_max_skip

__all__ = [
    "DAVIS_SUBSET_FILE",
    "YOUTUBE_SUBSET_FILE",
    "YOUTUBE_FRAME_STRIDE",
    "DatasetLayoutError",
    "DatasetRoot",
    "StaticTransformDataset",
    "VOSDataset",
    "bl30k_dataset",
    "check_dataset_root",
    "load_subset",
    "main_training_datasets",
    "set_max_skip",
    "static_datasets",
    "worker_init_fn",
]
