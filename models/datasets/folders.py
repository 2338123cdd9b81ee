"""Folder scanning and option handling shared by the dataset builders."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Default ``max_events`` per builder (asynet ``nr_events_window``, N-ImageNet ``slice_length``).
DEFAULT_MAX_EVENTS = {"ncaltech101": 50_000, "ncars": 25_000, "nimagenet": 30_000}


def _folder(root, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{what} folder not found: {root}")
    return root


def _natural_key(name: str):
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def _subfolders(root: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def _scan(root: Path, class_names: Sequence[str], suffixes: tuple[str, ...], what: str):
    """``(file, class name)`` for the files with these suffixes in ``root/<class>/``, naturally
    sorted per class; ``ValueError`` naming the other suffixes seen when there are none."""
    found, others = [], {}
    for name in class_names:
        folder = root / name
        for entry in sorted(os.scandir(folder), key=lambda e: _natural_key(e.name)):
            if entry.name.startswith(".") or entry.is_dir():
                continue
            suffix = Path(entry.name).suffix.lower()
            if suffix in suffixes:
                found.append((folder / entry.name, name))
            else:
                others[suffix] = others.get(suffix, 0) + 1
    if not found:
        seen = ", ".join(f"{n} '{s or '(none)'}'" for s, n in sorted(others.items())) or "nothing"
        raise ValueError(
            f"{what} at {root}: no {'/'.join(suffixes)} files in the class folders (found {seen})"
        )
    return found


def _builder_options(options: dict[str, Any], dataset: str, **defaults) -> dict[str, Any]:
    for fixed in ("name", "root", "file_format", "rescale_to"):
        if fixed in options:
            raise TypeError(f"{dataset}() fixes {fixed!r}; build an EventDataset directly to change it")
    if dataset in DEFAULT_MAX_EVENTS:
        defaults.setdefault("max_events", DEFAULT_MAX_EVENTS[dataset])
    return {**defaults, **options}
