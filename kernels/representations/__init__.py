"""Event representations: events in, a dense ``float32`` ``(C, H, W)`` tensor out.

Three backends compute the same thing (tested equal):

* ``reference`` (:mod:`.reference`): slow, obvious numpy, the oracle every faster kernel is tested
  against; that module documents conventions, formulas, sources and the quirks of the original
  code that we deliberately do not copy.
* ``cpu`` (:mod:`.cpu`): numba kernels.
* ``cuda`` (:mod:`.cuda`): numba-cuda kernels (optional extra ``evstream[cuda]``; the tests run
  them on numba's CUDA simulator).

Every function is called as ``f(events, width, height, **params)`` with ``events`` a 1-D
``EVENT_DTYPE`` array. :func:`compute` picks one by name and backend::

    >>> from evstream.kernels.representations import compute
    >>> compute("event_histogram", events, 34, 34).shape
    (2, 34, 34)

Incremental (sliding-window) versions live in :mod:`.incremental`, geometry (N-ImageNet
rescaling, asynet resizing, cropping, torch tensors) in :mod:`.geometry`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .reference import (
    binary_event_image,
    dist,
    event_histogram,
    event_image,
    sorted_time_surface,
    time_surface,
    timestamp_image,
    voxel_grid,
)

REPRESENTATIONS = {
    "event_histogram": event_histogram,
    "binary_event_image": binary_event_image,
    "event_image": event_image,
    "timestamp_image": timestamp_image,
    "sorted_time_surface": sorted_time_surface,
    "dist": dist,
    "voxel_grid": voxel_grid,
    "time_surface": time_surface,
}
"""Name -> reference implementation (the oracle)."""

BACKENDS = ("reference", "cpu", "cuda")


def kernel(name: str, backend: str = "cpu") -> Callable[..., np.ndarray]:
    """The function computing representation ``name`` on ``backend`` (see the module docstring).

    Raises ``ValueError`` naming the valid choices for an unknown name or backend, and
    ``ImportError`` naming the extra to install when the cuda backend is unavailable.
    """
    if name not in REPRESENTATIONS:
        raise ValueError(f"unknown representation {name!r}; choose one of {', '.join(REPRESENTATIONS)}")
    if backend == "reference":
        return REPRESENTATIONS[name]
    if backend == "cpu":
        from .cpu import KERNELS

        return KERNELS[name]
    if backend == "cuda":
        from .cuda import KERNELS

        return KERNELS[name]
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def compute(name: str, events: np.ndarray, width: int, height: int, *, backend: str = "cpu", **params):
    """Representation ``name`` of ``events`` on a ``width x height`` sensor, ``(C, height, width)``
    float32 (a numpy array for ``reference``/``cpu``; a device array for ``cuda``)."""
    return kernel(name, backend)(events, width, height, **params)


__all__ = [
    "BACKENDS",
    "REPRESENTATIONS",
    "binary_event_image",
    "compute",
    "dist",
    "event_histogram",
    "event_image",
    "kernel",
    "sorted_time_surface",
    "time_surface",
    "timestamp_image",
    "voxel_grid",
]
