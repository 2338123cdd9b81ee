"""Event-camera classification datasets as ``torch.utils.data.Dataset``s, with the published
train-time augmentations.

Every dataset is an :class:`EventDataset` (:mod:`.dataset`: the read -> window -> rescale ->
augment -> represent -> resize pipeline, reproducible randomness, bad-input handling) made by a
builder that knows the folder layout of the original release; :class:`Augment` (:mod:`.augment`)
is the train-time augmentation.

=====================  ================  =======  =========  ===========  ==========
builder                classes           sensor   events at  input (HxW)  max_events
=====================  ================  =======  =========  ===========  ==========
:func:`nmnist`         "0" .. "9"        34x34    34x34      34x34        all
:func:`ncaltech101`    class folders     240x180  240x180    191x255      50000
:func:`ncars`          background, cars  120x100  120x100    95x127       25000
:func:`nimagenet`      WordNet ids       640x480  224x224    224x224      30000
``mini_nimagenet``     first 100 wnids   640x480  224x224    224x224      30000
=====================  ================  =======  =========  ===========  ==========

Modules: :mod:`.augment`, :mod:`.dataset`, :mod:`.nmnist`, :mod:`.caltech_cars`,
:mod:`.nimagenet`, :mod:`.folders` (helpers shared by the builders); this package re-exports their
names and holds the registry (``DATASETS``, :func:`build_dataset`).

Example:
    >>> from evstream.models.datasets import Augment, nmnist
    >>> train = nmnist("data/nmnist_small", "train1K.txt", augment=Augment(max_shift=2))  # doctest: +SKIP
    >>> train.set_epoch(0); x, label = train[0]                                         # doctest: +SKIP
    >>> x.shape, x.dtype                                                                # doctest: +SKIP
    (torch.Size([2, 34, 34]), torch.float32)
"""

from __future__ import annotations

import os

from .augment import Augment, flip_horizontal, flip_time, shift_events
from .caltech_cars import NCALTECH101_BACKGROUND as NCALTECH101_BACKGROUND
from .caltech_cars import NCALTECH101_SENSOR as NCALTECH101_SENSOR
from .caltech_cars import NCARS_CLASSES as NCARS_CLASSES
from .caltech_cars import NCARS_INPUT as NCARS_INPUT
from .caltech_cars import NCARS_SENSOR as NCARS_SENSOR
from .caltech_cars import ncaltech101, ncars
from .dataset import SHOW_FILES as SHOW_FILES
from .dataset import BadSample, BadSampleWarning, EventDataset
from .folders import DEFAULT_MAX_EVENTS as DEFAULT_MAX_EVENTS
from .nimagenet import NIMAGENET_MINI_CLASSES as NIMAGENET_MINI_CLASSES
from .nimagenet import NIMAGENET_SENSOR as NIMAGENET_SENSOR
from .nimagenet import NIMAGENET_VARIANTS as NIMAGENET_VARIANTS
from .nimagenet import mini_nimagenet, nimagenet, nimagenet_variant_folder
from .nmnist import NMNIST_CLASSES as NMNIST_CLASSES
from .nmnist import NMNIST_SENSOR as NMNIST_SENSOR
from .nmnist import nmnist, read_label_list

DATASETS = {
    "nmnist": nmnist,
    "ncaltech101": ncaltech101,
    "ncars": ncars,
    "nimagenet": nimagenet,
    "mini_nimagenet": mini_nimagenet,
}
"""Dataset name -> builder ``f(root, **options) -> EventDataset``."""


def build_dataset(name: str, root: str | os.PathLike, **options) -> EventDataset:
    """The dataset ``name`` (a key of ``DATASETS``) at ``root``; ``options`` go to its builder and
    to :class:`EventDataset` (e.g. ``build_dataset("nimagenet", root, split="val")``)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name](root, **options)


__all__ = [
    "Augment",
    "BadSample",
    "BadSampleWarning",
    "DATASETS",
    "EventDataset",
    "build_dataset",
    "flip_horizontal",
    "flip_time",
    "mini_nimagenet",
    "ncaltech101",
    "ncars",
    "nimagenet",
    "nimagenet_variant_folder",
    "nmnist",
    "read_label_list",
    "shift_events",
]
