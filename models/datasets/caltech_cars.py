"""N-Caltech101 and N-Cars, with asynet's classification protocols."""

from __future__ import annotations

import os

from ...kernels.representations.geometry import ASYNET_NCALTECH101_INPUT
from .dataset import EventDataset
from .folders import _builder_options, _folder, _scan, _subfolders

#: asynet's N-Caltech101 histogram size as (width, height) (``config/settings.yaml``: 180 x 240).
NCALTECH101_SENSOR = (240, 180)
NCALTECH101_BACKGROUND = "BACKGROUND_Google"
#: asynet's N-Cars size as (width, height) (``config/settings.yaml``: height 100, width 120).
NCARS_SENSOR = (120, 100)
#: asynet's N-Cars VGG-12 input (height, width) (``FBSparseVGG(vgg_12=True).spatial_size``).
NCARS_INPUT = (95, 127)
NCARS_CLASSES = ["background", "cars"]


def ncaltech101(root: str | os.PathLike, exclude_background: bool = False, **options) -> EventDataset:
    """N-Caltech101 (Orchard et al., 2015): ``root/<class>/*.bin`` ATIS 40-bit recordings (the
    original release's ``Caltech101`` folder, or a split folder with the same layout).

    Classes: the class folders in sorted order (Python string order: ``BACKGROUND_Google``,
    ``Faces_easy``, ``Leopards``, ``Motorbikes``, then the lower-case names). asynet's
    classification loader (``dataloader/dataset.py``, ``NCaltech101``) takes every folder of the
    split, ``BACKGROUND_Google`` included, in ``os.listdir`` order (unspecified, so not
    reproducible); evstream keeps the folder but sorts. ``exclude_background=True`` drops it, as
    asynet's object-detection loader does.

    Input: the histogram is computed on asynet's 240x180 grid (``config/settings.yaml``; events
    outside are dropped) and nearest-resized to 191x255 (H x W), the sparse VGG-13 input, exactly
    as asynet's trainer does with ``F.interpolate``. ``max_events`` default 50000 (asynet's
    ``nr_events_window``: the first 50000 events for evaluation, a random window for training).
    asynet's training augmentation is ``Augment(time_flip=0.0, max_shift=20)``.
    """
    root = _folder(root, "N-Caltech101")
    classes = _subfolders(root)
    if exclude_background:
        classes = [c for c in classes if c != NCALTECH101_BACKGROUND]
    if not classes:
        raise FileNotFoundError(f"N-Caltech101 at {root}: no class folders")
    label = {c: i for i, c in enumerate(classes)}
    samples = [(f, label[c]) for f, c in _scan(root, classes, (".bin",), "N-Caltech101")]
    opts = _builder_options(options, "ncaltech101", input_size=ASYNET_NCALTECH101_INPUT)
    return EventDataset(
        samples, classes, NCALTECH101_SENSOR, name="ncaltech101", root=root, file_format="bin", **opts
    )


def ncars(root: str | os.PathLike, **options) -> EventDataset:
    """N-Cars (Sironi et al., CVPR 2018): ``root/background/*.dat`` and ``root/cars/*.dat``
    Prophesee CD files (the release's ``n-cars_train`` or ``n-cars_test`` folder).

    Classes ``["background", "cars"]``: label 1 is a car, as asynet's ``is_car`` label with its
    ``object_classes: ['no_car', 'car']``. The files do not state their size; the sensor is
    asynet's fixed 120x100 (``config/settings.yaml``; N-Cars samples are crops of at most that).
    Input: nearest-resized to 95x127 (H x W), asynet's VGG-12 input. ``max_events`` default
    25000 (asynet). asynet's training augmentation is ``Augment(time_flip=0.0, max_shift=10)``.
    """
    root = _folder(root, "N-Cars")
    absent = [c for c in NCARS_CLASSES if not (root / c).is_dir()]
    if absent:
        raise FileNotFoundError(f"N-Cars at {root}: missing class folder(s) {', '.join(absent)}")
    samples = [(f, NCARS_CLASSES.index(c)) for f, c in _scan(root, NCARS_CLASSES, (".dat",), "N-Cars")]
    opts = _builder_options(options, "ncars", input_size=NCARS_INPUT)
    return EventDataset(
        samples, NCARS_CLASSES, NCARS_SENSOR, name="ncars", root=root, file_format="dat", **opts
    )
