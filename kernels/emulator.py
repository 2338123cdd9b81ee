"""Frames to events: a per-pixel log-intensity change detector (the model behind ESIM and v2e).

Each pixel keeps a reference log intensity ``L_ref``. Between two frames at ``t0`` and ``t1``
the log intensity is taken to move linearly from ``L0`` to ``L1``; every time it crosses
``L_ref +- k*C`` (``C = c_on`` upwards, ``c_off`` downwards) the pixel emits an event at the
interpolated crossing time and the reference moves by one threshold. A pixel that fired is
silent for ``refractory_us`` (crossings in that time move the reference but emit nothing).
Optional shot noise adds ``noise_hz`` random events per pixel per second.

``log_intensity`` maps 8-bit grey to ``log(I + 1)`` (so black is 0, not -inf).

Example:
    >>> emu = EventEmulator(64, 48, EmulatorConfig(c_on=0.2, c_off=0.2))
    >>> emu.reset(first_grey_frame, t_us=0)                      # doctest: +SKIP
    >>> events = emu.frame(next_grey_frame, t_us=33_333)         # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .events import EVENT_DTYPE, concat_events, empty_events


@dataclass(frozen=True)
class EmulatorConfig:
    """Contrast thresholds (log units), refractory period (us), noise (events/pixel/s), seed."""

    c_on: float = 0.2
    c_off: float = 0.2
    refractory_us: int = 100
    noise_hz: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if not (self.c_on > 0 and self.c_off > 0):
            raise ValueError(f"contrast thresholds must be positive, got {self.c_on}, {self.c_off}")
        if self.refractory_us < 0 or self.noise_hz < 0:
            raise ValueError("refractory_us and noise_hz must not be negative")


def log_intensity(grey: np.ndarray) -> np.ndarray:
    """``log(I + 1)`` of an 8-bit (or float) grey image, as float32 of shape (H, W)."""
    return np.log1p(np.asarray(grey, np.float32))


class EventEmulator:
    """Turns a sequence of grey frames (H, W) with timestamps into events (``EVENT_DTYPE``)."""

    def __init__(self, width: int, height: int, config: EmulatorConfig | None = None):
        self.width, self.height = width, height
        self.config = config or EmulatorConfig()
        self._rng = np.random.default_rng(self.config.seed)
        self._ref: np.ndarray | None = None
        self._last: np.ndarray | None = None
        self._prev_t = 0

    def _check(self, grey: np.ndarray) -> None:
        if grey.shape != (self.height, self.width):
            raise ValueError(
                f"frame shape {grey.shape} differs from the sensor's {(self.height, self.width)}"
            )

    def reset(self, grey: np.ndarray, t_us: int) -> None:
        """Starts from a frame: references at its log intensity, no events."""
        self._check(grey)
        self._ref = log_intensity(grey).reshape(-1).astype(np.float64)
        self._prev_log = self._ref.copy()
        self._last = np.full(self._ref.shape, np.iinfo(np.int64).min // 2, np.int64)
        self._prev_t = int(t_us)

    def frame(self, grey: np.ndarray, t_us: int) -> np.ndarray:
        """Events between the previous frame and this one (sorted by time)."""
        if self._ref is None:
            self.reset(grey, t_us)
            return empty_events(0)
        self._check(grey)
        t0, t1 = self._prev_t, int(t_us)
        if t1 <= t0:
            raise ValueError(f"frame timestamps must increase ({t1} after {t0})")
        cfg = self.config
        l0, l1 = self._prev_log, log_intensity(grey).reshape(-1).astype(np.float64)
        delta = l1 - self._ref
        up = delta >= cfg.c_on
        down = delta <= -cfg.c_off
        n = np.zeros(delta.shape, np.int64)
        n[up] = np.floor(delta[up] / cfg.c_on).astype(np.int64)
        n[down] = np.floor(-delta[down] / cfg.c_off).astype(np.int64)
        pix = np.flatnonzero(n)
        counts = n[pix]
        sign = np.where(delta[pix] > 0, 1.0, -1.0)
        step = np.where(sign > 0, cfg.c_on, cfg.c_off)
        # k-th crossing of each firing pixel, k = 1..n
        rep = np.repeat(np.arange(len(pix)), counts)
        k = np.arange(len(rep)) - np.repeat(np.cumsum(counts) - counts, counts) + 1
        level = self._ref[pix][rep] + sign[rep] * step[rep] * k
        slope = (l1 - l0)[pix][rep]
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(slope != 0, (level - l0[pix][rep]) / slope, 1.0)
        t = t0 + np.clip(s, 0.0, 1.0) * (t1 - t0)
        t = np.ceil(t).astype(np.int64)
        t = np.clip(t, t0 + 1, t1)
        keep = self._refractory(pix[rep], t)
        self._ref[pix] += sign * step * counts
        self._prev_log, self._prev_t = l1, t1
        sel = np.flatnonzero(keep)
        flat = pix[rep][sel]
        ev = np.empty(len(sel), EVENT_DTYPE)
        ev["x"] = flat % self.width
        ev["y"] = flat // self.width
        ev["t"] = t[sel]
        ev["p"] = (sign[rep][sel] > 0).astype(np.uint8)
        if cfg.noise_hz > 0:
            ev = concat_events([ev, self._noise(t0, t1)])
        return ev[np.argsort(ev["t"], kind="stable")]

    def _refractory(self, flat: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Keeps an event only if its pixel has been silent for refractory_us (greedy, in time).

        Crossings arrive grouped by pixel, in increasing time. The common cases (one crossing,
        or crossings already far enough apart after an eligible first one) are vectorised; only
        the remaining pixels are walked one event at a time.
        """
        r = self.config.refractory_us
        keep = np.ones(len(t), bool)
        if not len(t):
            return keep
        starts = np.r_[0, np.flatnonzero(np.diff(flat)) + 1]
        ends = np.r_[starts[1:], len(t)]
        first_ok = t[starts] - self._last[flat[starts]] >= r
        gaps_ok = np.ones(len(starts), bool)
        if len(t) > 1:
            close = np.r_[False, (np.diff(t) < r) & (np.diff(flat) == 0)]
            gaps_ok = ~np.logical_or.reduceat(close, starts)
        simple = first_ok & gaps_ok
        keep[starts[~first_ok & (ends - starts == 1)]] = False
        for g in np.flatnonzero(~simple & (ends - starts > 1)):
            a, b = starts[g], ends[g]
            last = self._last[flat[a]]
            for i in range(a, b):
                if t[i] - last >= r:
                    last = t[i]
                else:
                    keep[i] = False
        kept = np.flatnonzero(keep)
        np.maximum.at(self._last, flat[kept], t[kept])
        return keep

    def _noise(self, t0: int, t1: int) -> np.ndarray:
        n_pix = self.width * self.height
        lam = self.config.noise_hz * (t1 - t0) * 1e-6 * n_pix
        n = int(self._rng.poisson(lam))
        ev = np.empty(n, EVENT_DTYPE)
        flat = self._rng.integers(0, n_pix, n)
        ev["x"] = flat % self.width
        ev["y"] = flat // self.width
        ev["t"] = self._rng.integers(t0 + 1, t1 + 1, n)
        ev["p"] = self._rng.integers(0, 2, n)
        return ev
