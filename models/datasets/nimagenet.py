"""N-ImageNet, Mini N-ImageNet and the N-ImageNet robustness variants."""

from __future__ import annotations

import numbers
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ...kernels.representations.geometry import NIMAGENET_INPUT
from .dataset import EventDataset
from .folders import _builder_options, _folder, _scan, _subfolders

NIMAGENET_SENSOR = (640, 480)
NIMAGENET_MINI_CLASSES = 100
#: N-ImageNet's robustness variants: number in the paper -> folder name without ``extracted_``.
NIMAGENET_VARIANTS = {
    1: "val_mode_1",
    2: "val_mode_5",
    3: "val_mode_6",
    4: "val_mode_7",
    5: "val_mode_3",
    6: "val_brightness_4",
    7: "val_brightness_5",
    8: "val_brightness_6",
    9: "val_brightness_7",
}
#: a WordNet id, as N-ImageNet names its classes
WNID = re.compile(r"n\d{8}")


def nimagenet_variant_folder(root: str | os.PathLike, variant: int | str) -> Path:
    """The folder of an N-ImageNet robustness variant under ``root``.

    ``variant`` is the paper's number 1..9 (``NIMAGENET_VARIANTS``) or a folder name such as
    ``"val_mode_1"``, ``"extracted_val_brightness_4"`` or ``"val_mode_brightness_4"``. Tried, in
    order: ``extracted_val_mode_K`` / ``extracted_val_brightness_K`` (EventCLIP's ``docs/data.md``),
    then the DropBox names of N-ImageNet's README (``val_mode_K``, ``val_mode_brightness_K``).
    """
    if isinstance(variant, numbers.Integral) and not isinstance(variant, bool):
        if int(variant) not in NIMAGENET_VARIANTS:
            raise ValueError(f"N-ImageNet variant numbers are 1..9, got {variant}")
        stem = NIMAGENET_VARIANTS[int(variant)]
    elif isinstance(variant, str):
        stem = variant.removeprefix("extracted_").replace("val_mode_brightness_", "val_brightness_")
        if not stem.startswith("val_"):
            stem = "val_" + stem
        if stem not in NIMAGENET_VARIANTS.values():
            raise ValueError(
                f"unknown N-ImageNet variant {variant!r}; use 1..9 or one of "
                f"{', '.join(NIMAGENET_VARIANTS.values())}"
            )
    else:
        raise TypeError(f"variant must be an int 1..9 or a folder name, got {variant!r}")
    names = [f"extracted_{stem}", stem]
    if "brightness" in stem:
        dropbox = stem.replace("val_brightness_", "val_mode_brightness_")
        names += [f"extracted_{dropbox}", dropbox]
    root = Path(root)
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise FileNotFoundError(
        f"N-ImageNet variant {variant!r} not found under {root} (tried {', '.join(names)})"
    )


def _read_nimagenet_list(list_path: Path, root: Path) -> list[tuple[Path, str, int]]:
    """``(file, wnid, line number)`` per line of an N-ImageNet ``*_list.txt``."""
    out = []
    for lineno, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = Path(line)
        if not (path.is_absolute() and path.exists()):
            # The released lists hold the authors' absolute paths: rebase from extracted_* on.
            parts = path.parts
            at = [k for k, part in enumerate(parts) if part.startswith("extracted_")]
            if at:
                path = root.joinpath(*parts[at[-1] :])
            elif not path.is_absolute():
                path = root / path
        wnid = path.parent.name
        if not WNID.fullmatch(wnid):
            raise ValueError(
                f"{list_path}, line {lineno}: cannot tell the class of {line!r}: the file's folder must "
                f"be a WordNet id like n01440764, got {wnid!r}"
            )
        out.append((path, wnid, lineno))
    if not out:
        raise ValueError(f"{list_path}: the list has no samples")
    return out


def nimagenet(
    root: str | os.PathLike,
    split: str = "train",
    mini: bool = False,
    variant: int | str | None = None,
    classes: Sequence[str] | None = None,
    list_file: str | os.PathLike | None = None,
    **options,
) -> EventDataset:
    """N-ImageNet (Kim et al., ICCV 2021): 640x480 Prophesee recordings of ImageNet images.

    Layout (N-ImageNet's README)::

        root/train_list.txt, root/val_list.txt      one .npz path per line
        root/extracted_train/nXXXXXXXX/*.npz        (and extracted_val/...)
        root/extracted_val_mode_1/nXXXXXXXX/*.npz   robustness variants (see nimagenet_variant_folder)

    The list files of the release hold the authors' absolute paths
    (``/home/.../N_Imagenet/extracted_train/n01440764/n01440764_10026.npz``): any path that does not
    exist is rebased on ``root`` from its ``extracted_*`` component on; relative paths are taken
    relative to ``root``. Without a list file, ``extracted_<split>/`` is scanned. Variants are
    always scanned. The label is the file's folder (``event_path.parent.stem`` in N-ImageNet).

    Classes: the sorted WordNet ids, as N-ImageNet's ``sorted(labels[:1000])``, taken from the
    list / folders unless ``classes`` is given. Pass ``classes=train.classes`` when building a
    validation set or a variant, so that an incomplete folder cannot shift the labels.
    ``mini=True`` keeps the first 100 of them and their samples (N-ImageNet's
    ``trim_class_count = 100`` in its mini configs). EventCLIP's "N-ImageNet (Mini)" is a
    different, hand-picked set of 100 classes: pass it as ``classes`` if wanted.

    Events: read from the ``event_data`` structured array (fields x, y, t, p; ``t`` in
    microseconds) by evstream's npz reader, which never unpickles; rescaled to 224x224 as
    N-ImageNet's ``reshape_event_no_sample`` (``rescale_events``); augmentation at 224x224.
    ``max_events`` default 30000 (N-ImageNet configs' ``slice_length``; N-ImageNet draws the slice
    at random even for validation, evstream evaluates on the first 30000 events).

    Args:
        root: the N_Imagenet folder (or N_Imagenet_cam for the variants).
        split: ``"train"`` or ``"val"``.
        mini: keep only the first 100 classes.
        variant: a robustness variant (1..9 or its folder name); needs ``split="val"``.
        classes: the class list (WordNet ids); default derived from the files.
        list_file: a list to use instead of ``root/<split>_list.txt`` (taken relative to ``root``
            when it does not exist as given).
        **options: :class:`EventDataset` options.

    Raises:
        ValueError: a list line naming no WordNet folder, or a class outside ``classes`` (with
            the line number), an unknown split or variant.
    """
    root = _folder(root, "N-ImageNet")
    if split not in ("train", "val"):
        raise ValueError(f"N-ImageNet split must be 'train' or 'val', got {split!r}")
    list_path = root / f"{split}_list.txt"
    if list_file is not None:
        list_path = Path(list_file)
        if not list_path.is_absolute() and not list_path.exists():
            list_path = root / list_path
        if not list_path.is_file():
            raise FileNotFoundError(f"N-ImageNet list not found: {list_file} (also tried {list_path})")
    if variant is not None:
        if split != "val":
            raise ValueError("N-ImageNet variants are validation sets: use split='val'")
        if list_file is not None:
            raise ValueError("N-ImageNet variants are scanned folders: do not pass list_file")
        folder = nimagenet_variant_folder(root, variant)
        entries = [(f, c, None) for f, c in _scan(folder, _wnid_folders(folder), (".npz",), "N-ImageNet")]
    else:
        folder = root / f"extracted_{split}"
        if list_path.is_file():
            entries = _read_nimagenet_list(list_path, root)
        elif folder.is_dir():
            entries = [(f, c, None) for f, c in _scan(folder, _wnid_folders(folder), (".npz",), "N-ImageNet")]
        else:
            raise FileNotFoundError(
                f"N-ImageNet at {root}: neither {list_path.name} nor {folder.name}/ found"
            )
    names = sorted({c for _, c, _ in entries}) if classes is None else [str(c) for c in classes]
    if mini:
        names = names[:NIMAGENET_MINI_CLASSES]
    label = {c: i for i, c in enumerate(names)}
    samples = []
    for path, wnid, lineno in entries:
        if wnid in label:
            samples.append((path, label[wnid]))
        elif not mini:
            where = f"{list_path}, line {lineno}" if lineno is not None else str(path.parent)
            raise ValueError(f"{where}: class {wnid!r} is not in the given classes")
    opts = _builder_options(options, "nimagenet")
    return EventDataset(
        samples,
        names,
        NIMAGENET_SENSOR,
        name="mini_nimagenet" if mini else "nimagenet",
        root=root,
        file_format="npz",
        rescale_to=(NIMAGENET_INPUT[1], NIMAGENET_INPUT[0]),
        **opts,
    )


def _wnid_folders(folder: Path) -> list[str]:
    wnids = [d for d in _subfolders(folder) if WNID.fullmatch(d)]
    if not wnids:
        raise FileNotFoundError(f"N-ImageNet at {folder}: no WordNet-id class folders (nXXXXXXXX)")
    return wnids


def mini_nimagenet(
    root: str | os.PathLike, split: str = "train", variant: int | str | None = None, **options
) -> EventDataset:
    """Mini N-ImageNet: :func:`nimagenet` with ``mini=True`` (the first 100 sorted classes)."""
    return nimagenet(root, split=split, mini=True, variant=variant, **options)
