"""The event dataset: :class:`EventDataset`, :class:`BadSample` and :class:`BadSampleWarning`.

Every dataset is an :class:`EventDataset`: a list of ``(file, label)`` samples plus a fixed
pipeline that turns one recording into a float32 ``(C, H, W)`` tensor:

1. **read** the whole recording with :mod:`evstream.replay` (format and sensor size fixed per
   dataset; the reader drops and counts events outside the sensor; N-ImageNet ``.npz`` files are
   parsed without ever unpickling, i.e. ``allow_pickle=False`` semantics);
2. **window**: at most ``max_events`` consecutive events -- the first ones for evaluation, a
   window starting at random for training (asynet's ``nr_events_window``, N-ImageNet's
   ``slice_length``);
3. **rescale** the event coordinates (N-ImageNet only: 640x480 -> 224x224 with
   :func:`~evstream.kernels.representations.geometry.rescale_events`, truncating like N-ImageNet);
4. **augment** (training only, :class:`Augment`): random time flip, horizontal flip and shift, in
   N-ImageNet's order, at the resolution of step 3;
5. **represent**: any representation of the registry (``compute(name, events, W, H, **params)``);
6. **resize** the dense tensor to ``input_size`` by nearest neighbour, as asynet does before its
   sparse VGG (:func:`~evstream.kernels.representations.geometry.resize_nearest_image`).

Randomness: ``augment=None`` is the evaluation protocol and uses no randomness at all. With an
:class:`Augment`, sample ``i`` in epoch ``e`` draws from
``numpy.random.default_rng(SeedSequence([seed, e, i]))``, so a sample's augmentation depends only
on ``(seed, epoch, index)``: not on the worker, the rank, the batch order or what was read before.
Call :meth:`EventDataset.set_epoch` at the start of every epoch (like ``DistributedSampler``); the
epoch lives in shared memory, so DataLoader workers -- persistent ones included -- see it.

Bad input: files missing when the dataset is built raise ``FileNotFoundError`` listing them (or,
with ``skip_bad=True``, are dropped with a :class:`BadSampleWarning` listing them). A file that
cannot be decoded raises :class:`~evstream.replay.EventFileError` naming the file and the sample
(or, with ``skip_bad=True``, is skipped with a warning and the next readable sample is returned in
its place). :meth:`EventDataset.check` reads every file once and drops the unreadable ones, which
is the clean way to filter before training.
"""

from __future__ import annotations

import numbers
import operator
import os
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ...kernels.events import empty_events
from ...kernels.representations import REPRESENTATIONS, compute
from ...kernels.representations.geometry import rescale_events, resize_nearest_image
from ...replay import EventFileError, read_events
from .augment import Augment, _check_events

#: Files listed in an error or warning message before "and N more".
SHOW_FILES = 10
_REPRESENTATION_BACKENDS = ("cpu", "reference")


class BadSampleWarning(UserWarning):
    """A dataset file is missing or unreadable and was skipped (``skip_bad=True``)."""


class BadSample(NamedTuple):
    """An unreadable sample found by :meth:`EventDataset.check`."""

    index: int
    path: Path
    reason: str


def _size(name: str, value, order: str) -> tuple[int, int]:
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair ({order}), got {value!r}") from None
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 0 < v <= 65535:
            raise ValueError(f"{name} must be two positive integers ({order}), got {value!r}")
    return int(a), int(b)


def _listing(paths: Sequence, total: int, what: str) -> str:
    shown = ", ".join(str(p) for p in paths[:SHOW_FILES])
    more = f" and {len(paths) - SHOW_FILES} more" if len(paths) > SHOW_FILES else ""
    return f"{len(paths)} of {total} {what}: {shown}{more}"


def _missing_files(paths: Sequence[Path]) -> list[Path]:
    """The paths that do not exist, listing each folder once (fast for a million files)."""
    listed: dict[Path, set[str] | None] = {}
    missing = []
    for path in paths:
        folder = path.parent
        if folder not in listed:
            try:
                listed[folder] = {entry.name for entry in os.scandir(folder)}
            except OSError:
                listed[folder] = None
        names = listed[folder]
        if names is None or path.name not in names:
            missing.append(path)
    return missing


class EventDataset(torch.utils.data.Dataset):
    """Labelled event recordings turned into float32 ``(C, H, W)`` tensors (see the module
    docstring for the pipeline). Usually made by a builder (:func:`nmnist`, :func:`build_dataset`).

    Args:
        samples: ``(file, label)`` pairs, ``label`` an index into ``classes``.
        classes: class names; ``classes[label]`` is the name of ``label``.
        sensor_size: ``(width, height)`` of the recordings in pixels; events outside are dropped
            by the reader.
        name: dataset name (messages, :meth:`metadata`).
        root: the dataset folder (messages, :meth:`metadata`).
        file_format: a ``evstream.replay.READERS`` name, or None to detect it per file.
        rescale_to: ``(width, height)``: rescale the event coordinates to this grid before the
            augmentation and representation (N-ImageNet); None keeps the sensor grid.
        input_size: ``(height, width)`` of the returned tensors; the representation is computed on
            the event grid and nearest-resized to this size when different (asynet). Default: the
            event grid.
        representation: a name of ``evstream.kernels.representations.REPRESENTATIONS``.
        params: keyword parameters of the representation (e.g. ``{"num_bins": 5}``).
        augment: train-time :class:`Augment`, or None for the deterministic evaluation protocol.
        seed: non-negative integer seeding the augmentation (with the epoch and the index).
        max_events: keep at most this many consecutive events per sample (None: all).
        skip_bad: drop missing files at build time and skip unreadable ones when read, with a
            :class:`BadSampleWarning`, instead of raising.
        backend: representation backend, ``"cpu"`` (numba) or ``"reference"`` (numpy).

    Raises:
        FileNotFoundError: files missing at build time (listed, with their count).
        ValueError: an invalid argument, a label out of range, or no samples.

    Attributes:
        classes, samples, sensor_size, input_size, num_channels, augment, seed, max_events.
    """

    def __init__(
        self,
        samples: Iterable[tuple[str | os.PathLike, int]],
        classes: Sequence[str],
        sensor_size: tuple[int, int],
        *,
        name: str = "events",
        root: str | os.PathLike | None = None,
        file_format: str | None = None,
        rescale_to: tuple[int, int] | None = None,
        input_size: tuple[int, int] | None = None,
        representation: str = "event_histogram",
        params: dict[str, Any] | None = None,
        augment: Augment | None = None,
        seed: int = 0,
        max_events: int | None = None,
        skip_bad: bool = False,
        backend: str = "cpu",
    ):
        super().__init__()
        self.name = name
        self.root = Path(root) if root is not None else None
        self.classes: list[str] = [str(c) for c in classes]
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be non-empty and unique, got {len(self.classes)} names")
        self.sensor_size = _size("sensor_size", sensor_size, "width, height")
        self.rescale_to = None if rescale_to is None else _size("rescale_to", rescale_to, "width, height")
        grid_w, grid_h = self.rescale_to or self.sensor_size
        self.input_size = (grid_h, grid_w) if input_size is None else _size("input_size", input_size, "h, w")
        if representation not in REPRESENTATIONS:
            raise ValueError(
                f"unknown representation {representation!r}; choose one of {', '.join(REPRESENTATIONS)}"
            )
        if backend not in _REPRESENTATION_BACKENDS:
            raise ValueError(
                f"backend must be one of {_REPRESENTATION_BACKENDS} (host arrays), got {backend!r}"
            )
        self.representation = representation
        self.params = dict(params or {})
        self.backend = backend
        if augment is not None and not isinstance(augment, Augment):
            raise TypeError(f"augment must be an Augment or None, got {type(augment).__name__}")
        self.augment = augment
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        if max_events is not None and (
            isinstance(max_events, bool) or not isinstance(max_events, numbers.Integral) or max_events < 1
        ):
            raise ValueError(f"max_events must be a positive integer or None, got {max_events!r}")
        self.max_events = None if max_events is None else int(max_events)
        self.skip_bad = bool(skip_bad)
        self.file_format = file_format
        # Shared memory: DataLoader workers (persistent ones too) see set_epoch from the main process.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._bad: set[int] = set()  # unreadable samples met by this process (skip_bad)
        self.samples: list[tuple[Path, int]] = self._checked_samples(samples)
        try:
            probe = compute(representation, empty_events(0), grid_w, grid_h, backend=backend, **self.params)
        except TypeError as exc:
            raise ValueError(
                f"bad params {self.params!r} for representation {representation!r}: {exc}"
            ) from None
        self.num_channels = int(probe.shape[0])

    def _where(self) -> str:
        return f"dataset {self.name!r}" + (f" at {self.root}" if self.root is not None else "")

    def _checked_samples(self, samples) -> list[tuple[Path, int]]:
        out = []
        for item in samples:
            path, label = item
            if isinstance(label, bool) or not isinstance(label, numbers.Integral):
                raise ValueError(f"{path}: label must be an integer class index, got {label!r}")
            if not 0 <= label < len(self.classes):
                raise ValueError(f"{path}: label {label} is not a class index (0..{len(self.classes) - 1})")
            out.append((Path(path), int(label)))
        missing = _missing_files([p for p, _ in out])
        if missing:
            message = f"{self._where()}: " + _listing(missing, len(out), "files are missing")
            if not self.skip_bad:
                raise FileNotFoundError(message + " (skip them with --skip-bad / skip_bad=True)")
            warnings.warn(message + "; they are dropped", BadSampleWarning, stacklevel=3)
            gone = set(missing)
            out = [s for s in out if s[0] not in gone]
        if not out:
            raise ValueError(f"{self._where()} has no samples")
        return out

    # -- epochs and randomness ------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch that seeds the augmentation; call it before iterating each epoch."""
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self._epoch.fill_(int(epoch))

    def item_rng(self, index: int, epoch: int | None = None) -> np.random.Generator:
        """The generator of sample ``index`` in ``epoch`` (default: the current epoch)."""
        epoch = self.epoch if epoch is None else int(epoch)
        return np.random.default_rng(np.random.SeedSequence([self.seed, epoch, self._index(index)]))

    # -- reading ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.samples)

    def _index(self, index) -> int:
        i = operator.index(index)
        n = len(self.samples)
        if not -n <= i < n:
            raise IndexError(f"sample index {i} out of range for {self._where()} ({n} samples)")
        return i % n

    @property
    def targets(self) -> list[int]:
        """The label of every sample, in order (torchvision's name, for samplers)."""
        return [label for _, label in self.samples]

    def events(self, index: int) -> np.ndarray:
        """The sample's events, ``EVENT_DTYPE`` at the sensor resolution, as recorded (no window,
        rescaling or augmentation).

        Raises:
            EventFileError: the file cannot be decoded (names the file and the sample).
            OSError: the file cannot be opened (e.g. ``FileNotFoundError`` if deleted since).
        """
        i = self._index(index)
        path = self.samples[i][0]
        try:
            return read_events(path, format=self.file_format, sensor_size=self.sensor_size)
        except EventFileError as exc:
            raise EventFileError(
                path,
                f"sample {i} of {self._where()} cannot be read: {exc.reason} "
                "(skip_bad=True skips such files; dataset.check() drops them)",
                offset=exc.offset,
                index=exc.index,
            ) from None

    def _read(self, i: int) -> tuple[np.ndarray, int]:
        """Events and label of sample ``i``; with skip_bad, of the next readable sample."""
        if not self.skip_bad:
            return self.events(i), self.samples[i][1]
        n = len(self.samples)
        for k in range(n):
            j = (i + k) % n
            if j in self._bad:
                continue
            try:
                return self.events(j), self.samples[j][1]
            except (EventFileError, OSError) as exc:
                self._bad.add(j)
                warnings.warn(
                    f"skipping unreadable sample {j} (the next readable sample takes its place): {exc}",
                    BadSampleWarning,
                    stacklevel=3,
                )
        raise ValueError(f"no readable sample left in {self._where()}")

    def prepare(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Steps 2-4 of the pipeline: window, rescale, augment (``rng`` None: no augmentation, the
        first window). Returns ``EVENT_DTYPE`` events on the event grid (``rescale_to`` or sensor)."""
        events = _check_events(events)
        if self.max_events is not None and len(events) > self.max_events:
            start = 0
            if rng is not None and self.augment is not None and self.augment.random_window:
                start = int(rng.integers(0, len(events) - self.max_events + 1))
            events = events[start : start + self.max_events]
        width, height = self.sensor_size
        if self.rescale_to is not None:
            events = rescale_events(events, width, height, *self.rescale_to)
            width, height = self.rescale_to
        if rng is not None and self.augment is not None:
            events = self.augment(events, width, height, rng)
        return events

    def transform(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """The whole pipeline after reading: float32 ``(C, H, W)`` numpy array, ``(H, W) = input_size``."""
        events = self.prepare(events, rng)
        width, height = self.rescale_to or self.sensor_size
        rep = compute(self.representation, events, width, height, backend=self.backend, **self.params)
        if self.input_size != (height, width):
            rep = resize_nearest_image(rep, *self.input_size)
        return np.ascontiguousarray(rep, dtype=np.float32)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """``(representation, label)``: float32 ``(C, H, W)`` tensor and class index."""
        i = self._index(index)
        rng = self.item_rng(i) if self.augment is not None else None
        events, label = self._read(i)
        return torch.from_numpy(self.transform(events, rng)), label

    # -- maintenance ------------------------------------------------------------------------------

    def check(self, progress: bool = True, drop: bool = True, workers: int | None = None) -> list[BadSample]:
        """Reads every file once and returns the unreadable samples (indices before dropping).

        Args:
            progress: show a tqdm progress bar (on stderr).
            drop: remove the unreadable samples from :attr:`samples` (then indices change: call
                this before making DataLoaders).
            workers: reader threads (default ``min(8, cpu count)``).
        """
        from tqdm import tqdm

        def probe(i: int) -> BadSample | None:
            try:
                self.events(i)
            except (EventFileError, OSError) as exc:
                return BadSample(i, self.samples[i][0], str(exc))
            return None

        workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = pool.map(probe, range(len(self.samples)))
            bar = tqdm(
                results,
                total=len(self.samples),
                desc=f"checking {self.name}",
                unit="file",
                disable=not progress,
            )
            bad = [r for r in bar if r is not None]
        if drop and bad:
            gone = {b.index for b in bad}
            kept = [s for i, s in enumerate(self.samples) if i not in gone]
            if not kept:
                raise ValueError(f"{self._where()}: no readable sample ({len(bad)} unreadable files)")
            self.samples = kept
            self._bad.clear()
        return bad

    def metadata(self) -> dict[str, Any]:
        """What a checkpoint needs to rebuild the input pipeline (plain values)."""
        return {
            "dataset": self.name,
            "classes": list(self.classes),
            "representation": self.representation,
            "params": dict(self.params),
            "sensor_size": list(self.sensor_size),
            "rescale_to": None if self.rescale_to is None else list(self.rescale_to),
            "input_size": list(self.input_size),
            "num_channels": self.num_channels,
            "max_events": self.max_events,
        }

    def __repr__(self) -> str:
        return (
            f"EventDataset({self.name!r}, {len(self)} samples, {len(self.classes)} classes, "
            f"sensor {self.sensor_size[0]}x{self.sensor_size[1]}, {self.representation} "
            f"{self.num_channels}x{self.input_size[0]}x{self.input_size[1]}, "
            f"augment={self.augment}, max_events={self.max_events})"
        )
