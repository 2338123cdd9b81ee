"""Train-time augmentations of event recordings: small pure functions (time flip, horizontal
flip, shift) and the frozen :class:`Augment` dataclass that draws their parameters (step 4 of the
:class:`~evstream.models.datasets.EventDataset` pipeline)."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from ...kernels.events import EVENT_DTYPE, copy_events


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
