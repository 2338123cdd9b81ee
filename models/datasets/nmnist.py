"""N-MNIST: the builder :func:`nmnist` and the ``<sample id> <class>`` label lists it reads."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .dataset import EventDataset
from .folders import _builder_options, _folder, _scan, _subfolders

NMNIST_CLASSES = [str(d) for d in range(10)]
NMNIST_SENSOR = (34, 34)


def read_label_list(path: str | os.PathLike, classes: Sequence[str]) -> list[tuple[str, int, int]]:
    """Parses a ``<sample id> <class>`` list (whitespace separated, one sample a line; blank lines
    and lines starting with ``#`` -- the header -- are skipped) into ``(id, label, line number)``.

    Raises ``ValueError`` naming the file and line for a malformed line, an unknown class or a
    duplicated sample, and for a list without samples.
    """
    path = Path(path)
    index = {c: i for i, c in enumerate(classes)}
    entries: list[tuple[str, int, int]] = []
    first_line: dict[str, int] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text label list ({exc})") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{path}, line {lineno}: expected '<sample id> <class>', got {line!r}")
        sample, name = fields
        if name not in index:
            raise ValueError(f"{path}, line {lineno}: unknown class {name!r} (classes: {', '.join(classes)})")
        if sample in first_line:
            raise ValueError(
                f"{path}, line {lineno}: sample {sample!r} is already listed on line {first_line[sample]}"
            )
        first_line[sample] = lineno
        entries.append((sample, index[name], lineno))
    if not entries:
        raise ValueError(f"{path}: the label list has no samples")
    return entries


def _nmnist_file(root: Path, sample: str) -> Path:
    if Path(sample).suffix.lower() in (".bs2", ".bin"):
        return root / sample
    for suffix in (".bs2", ".bin"):
        candidate = root / f"{sample}{suffix}"
        if candidate.is_file():
            return candidate
    return root / f"{sample}.bs2"  # reported as missing


def nmnist(root: str | os.PathLike, list_file: str | os.PathLike | None = None, **options) -> EventDataset:
    """N-MNIST (Orchard et al., 2015): 34x34 ATIS saccades of MNIST digits, classes ``"0".."9"``.

    Layouts:

    * with ``list_file``: ``root/<id>.bs2`` (or ``<id>.bin``) recordings and a label list, e.g.
      slayerPytorch's ``train1K.txt``: a header line starting with ``#`` (``#sample #class``), then
      ``<id> <class>`` lines (whitespace separated). ``list_file`` is taken relative to ``root``
      when it does not exist as given.
    * without: N-MNIST's release, ``root/<digit>/<id>.bin`` -- pass its ``Train`` or ``Test``
      folder as ``root``.

    Input: the 34x34 sensor, no resizing; ``max_events`` default: all events.

    Args:
        root: the folder of recordings.
        list_file: the label list, or None for the digit-folder layout.
        **options: :class:`EventDataset` options (``representation``, ``augment``, ``seed``, ...).
    """
    root = _folder(root, "N-MNIST")
    if list_file is not None:
        list_path = Path(list_file)
        if not list_path.is_absolute() and not list_path.exists():
            list_path = root / list_path
        if not list_path.is_file():
            raise FileNotFoundError(f"N-MNIST label list not found: {list_file} (also tried {list_path})")
        entries = read_label_list(list_path, NMNIST_CLASSES)
        samples = [(_nmnist_file(root, sample), label) for sample, label, _ in entries]
    else:
        digits = [d for d in _subfolders(root) if d in NMNIST_CLASSES]
        if not digits:
            hint = ""
            if any(root.glob("*.txt")):
                hint = " (there are .txt files: pass the label list as list_file)"
            elif any((root / s).is_dir() for s in ("Train", "Test")):
                hint = " (pass its Train or Test folder as root)"
            raise FileNotFoundError(f"N-MNIST at {root}: no digit folders 0..9 and no list_file{hint}")
        samples = [(f, int(d)) for f, d in _scan(root, digits, (".bin", ".bs2"), "N-MNIST")]
    opts = _builder_options(options, "nmnist")
    return EventDataset(
        samples, NMNIST_CLASSES, NMNIST_SENSOR, name="nmnist", root=root, file_format="bin", **opts
    )
