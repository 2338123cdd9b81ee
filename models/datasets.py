"""Event-camera classification datasets as ``torch.utils.data.Dataset``s, with the published
train-time augmentations.

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

=====================  ================  =======  =========  ===========  ==========
builder                classes           sensor   events at  input (HxW)  max_events
=====================  ================  =======  =========  ===========  ==========
:func:`nmnist`         "0" .. "9"        34x34    34x34      34x34        all
:func:`ncaltech101`    class folders     240x180  240x180    191x255      50000
:func:`ncars`          background, cars  120x100  120x100    95x127       25000
:func:`nimagenet`      WordNet ids       640x480  224x224    224x224      30000
``mini_nimagenet``     first 100 wnids   640x480  224x224    224x224      30000
=====================  ================  =======  =========  ===========  ==========

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

Example:
    >>> from evstream.models.datasets import Augment, nmnist
    >>> train = nmnist("data/nmnist_small", "train1K.txt", augment=Augment(max_shift=2))  # doctest: +SKIP
    >>> train.set_epoch(0); x, label = train[0]                                         # doctest: +SKIP
    >>> x.shape, x.dtype                                                                # doctest: +SKIP
    (torch.Size([2, 34, 34]), torch.float32)
"""

from __future__ import annotations

import numbers
import operator
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ..kernels.events import EVENT_DTYPE, copy_events, empty_events
from ..kernels.representations import REPRESENTATIONS, compute
from ..kernels.representations.geometry import (
    ASYNET_NCALTECH101_INPUT,
    NIMAGENET_INPUT,
    rescale_events,
    resize_nearest_image,
)
from ..replay import EventFileError, read_events

#: Files listed in an error or warning message before "and N more".
SHOW_FILES = 10

NMNIST_CLASSES = [str(d) for d in range(10)]
NMNIST_SENSOR = (34, 34)
#: asynet's N-Caltech101 histogram size as (width, height) (``config/settings.yaml``: 180 x 240).
NCALTECH101_SENSOR = (240, 180)
NCALTECH101_BACKGROUND = "BACKGROUND_Google"
#: asynet's N-Cars size as (width, height) (``config/settings.yaml``: height 100, width 120).
NCARS_SENSOR = (120, 100)
#: asynet's N-Cars VGG-12 input (height, width) (``FBSparseVGG(vgg_12=True).spatial_size``).
NCARS_INPUT = (95, 127)
NCARS_CLASSES = ["background", "cars"]
NIMAGENET_SENSOR = (640, 480)
NIMAGENET_MINI_CLASSES = 100
#: Default ``max_events`` per builder (asynet ``nr_events_window``, N-ImageNet ``slice_length``).
DEFAULT_MAX_EVENTS = {"ncaltech101": 50_000, "ncars": 25_000, "nimagenet": 30_000}
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
_WNID = re.compile(r"n\d{8}")
_REPRESENTATION_BACKENDS = ("cpu", "reference")


class BadSampleWarning(UserWarning):
    """A dataset file is missing or unreadable and was skipped (``skip_bad=True``)."""


class BadSample(NamedTuple):
    """An unreadable sample found by :meth:`EventDataset.check`."""

    index: int
    path: Path
    reason: str


# --------------------------------------------------------------------------------------------
# Augmentations: small pure functions, and the frozen dataclass that draws their parameters


def _check_events(events) -> np.ndarray:
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE or events.ndim != 1:
        got = events.dtype if isinstance(events, np.ndarray) else type(events).__name__
        raise TypeError(f"events must be a 1-D EVENT_DTYPE array, got {got}")
    return events


def _check_inside(events: np.ndarray, width: int, height: int) -> None:
    if len(events) and (int(events["x"].max()) >= width or int(events["y"].max()) >= height):
        raise ValueError(
            f"event coordinates outside the {width}x{height} sensor "
            f"(max x {int(events['x'].max())}, max y {int(events['y'].max())})"
        )


def flip_time(events: np.ndarray) -> np.ndarray:
    """The events played backwards: order reversed, ``t' = t_min + t_max - t``, polarity inverted.

    Reversing time turns a brightness increase into a decrease, hence ``p' = 1 - p`` (ON <-> OFF).
    A time-sorted input gives a time-sorted output over the same interval ``[t_min, t_max]``.

    N-ImageNet (``random_time_flip`` in ``real_cnn_model/data/imagenet.py``) reverses the rows
    (``torch.flip``), sets ``t' = t_last - t`` with ``t_last`` the last event in file order (so its
    flipped stream starts at 0) and negates its +-1 polarity. Ours differs from that only by the
    constant ``t_first``, which every representation removes (they all use ``t - t_min``); keeping
    the original interval keeps absolute times (e.g. a time surface's ``t_ref``) meaningful.

    Example:
        >>> from evstream.kernels.events import make_events
        >>> r = flip_time(make_events([1, 2], [0, 0], [10, 30], [1, 1]))
        >>> r["x"].tolist(), r["t"].tolist(), r["p"].tolist()
        ([2, 1], [10, 30], [0, 0])
    """
    events = _check_events(events)
    out = copy_events(events[::-1])
    if len(out):
        t_sum = int(events["t"].min()) + int(events["t"].max())
        out["t"] = t_sum - out["t"]
        out["p"] = out["p"] == 0
    return out


def flip_horizontal(events: np.ndarray, width: int) -> np.ndarray:
    """The events mirrored left-right on a ``width``-pixel-wide sensor: ``x' = width - 1 - x``.

    asynet and N-ImageNet (``random_flip_events_along_x``) use the same formula. N-ImageNet applies
    it to its float coordinates *after* rescaling and before truncation, which maps a rescaled
    pixel column ``c`` to ``222 - c`` instead of ``223 - c`` whenever the rescaled coordinate is
    not whole; with integer pixels (here) the flip is an exact mirror of the pixel grid.
    """
    events = _check_events(events)
    _check_inside(events, width, 1 << 16)
    out = copy_events(events)
    out["x"] = (width - 1) - events["x"].astype(np.int64)
    return out


def shift_events(events: np.ndarray, dx: int, dy: int, width: int, height: int) -> np.ndarray:
    """The events moved by ``(dx, dy)`` pixels; events that leave the ``width x height`` sensor are
    dropped (asynet / N-ImageNet ``random_shift_events``). Order, ``t`` and ``p`` are kept."""
    events = _check_events(events)
    x = events["x"].astype(np.int64) + int(dx)
    y = events["y"].astype(np.int64) + int(dy)
    keep = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    out = copy_events(events[keep])
    out["x"] = x[keep]
    out["y"] = y[keep]
    return out


@dataclass(frozen=True)
class Augment:
    """N-ImageNet's train-time augmentation (``base_augment('train')``), applied to events before
    the representation: random time flip, then random horizontal flip, then random shift.

    Attributes:
        time_flip: probability of :func:`flip_time` (N-ImageNet: 0.5; asynet: not used).
        horizontal_flip: probability of :func:`flip_horizontal` (0.5 in both).
        max_shift: the shift ``(dx, dy)`` is drawn uniformly from ``[-max_shift, max_shift]`` (both
            ends included, like ``np.random.randint(-s, s + 1)``), pixels at the resolution the
            augmentation runs at; events shifted out are dropped (:func:`shift_events`).
            N-ImageNet and asynet's N-Caltech101: 20; asynet's N-Cars: 10.
        random_window: when the dataset keeps at most ``max_events`` events, start the window at a
            uniformly random event (N-ImageNet's ``slice_method = random``) instead of the first.

    Every call draws, from ``rng`` and in this order: the window start (only when a window is cut,
    by the dataset), ``u_time = rng.random()``, ``u_flip = rng.random()``,
    ``(dx, dy) = rng.integers(-max_shift, max_shift + 1, 2)``; the flips happen when ``u < p``.

    Example:
        >>> import numpy as np
        >>> from evstream.kernels.events import make_events
        >>> aug = Augment(time_flip=0.0, horizontal_flip=1.0, max_shift=0)
        >>> aug(make_events([0], [1], [5], [1]), 4, 4, np.random.default_rng(0))["x"].tolist()
        [3]
    """

    time_flip: float = 0.5
    horizontal_flip: float = 0.5
    max_shift: int = 20
    random_window: bool = True

    def __post_init__(self):
        for name in ("time_flip", "horizontal_flip"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
                raise ValueError(f"Augment.{name} must be a probability in [0, 1], got {value!r}")
        shift = self.max_shift
        if isinstance(shift, bool) or not isinstance(shift, numbers.Integral) or shift < 0:
            raise ValueError(f"Augment.max_shift must be an integer >= 0 (pixels), got {shift!r}")

    def __call__(self, events: np.ndarray, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
        """Augmented copy of ``events`` (1-D ``EVENT_DTYPE``, inside the ``width x height``
        sensor); never aliases the input."""
        events = _check_events(events)
        _check_inside(events, width, height)
        do_time = rng.random() < self.time_flip
        do_flip = rng.random() < self.horizontal_flip
        dx, dy = (int(v) for v in rng.integers(-self.max_shift, self.max_shift + 1, size=2))
        if do_time:
            events = flip_time(events)
        if do_flip:
            events = flip_horizontal(events, width)
        return shift_events(events, dx, dy, width, height)


# --------------------------------------------------------------------------------------------
# The dataset


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


# --------------------------------------------------------------------------------------------
# Folder helpers


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


# --------------------------------------------------------------------------------------------
# N-MNIST


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


# --------------------------------------------------------------------------------------------
# N-Caltech101 and N-Cars (asynet's classification protocols)


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


# --------------------------------------------------------------------------------------------
# N-ImageNet


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
        if not _WNID.fullmatch(wnid):
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
    wnids = [d for d in _subfolders(folder) if _WNID.fullmatch(d)]
    if not wnids:
        raise FileNotFoundError(f"N-ImageNet at {folder}: no WordNet-id class folders (nXXXXXXXX)")
    return wnids


def mini_nimagenet(
    root: str | os.PathLike, split: str = "train", variant: int | str | None = None, **options
) -> EventDataset:
    """Mini N-ImageNet: :func:`nimagenet` with ``mini=True`` (the first 100 sorted classes)."""
    return nimagenet(root, split=split, mini=True, variant=variant, **options)


# --------------------------------------------------------------------------------------------
# Registry

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
