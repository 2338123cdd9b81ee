"""Event representations: events in, a dense ``float32`` ``(C, H, W)`` tensor out.

``reference``: the slow numpy implementations, the oracle every faster kernel is tested against
(see that module for conventions, formulas and sources). ``cpu``: numba kernels, so far for the
histogram, binary image, event image, timestamp image and time surface (``cpu.KERNELS``).

``REPRESENTATIONS`` maps each representation's name to its function, all called as
``f(events, width, height, **params)``.
"""

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

__all__ = [
    "REPRESENTATIONS",
    "binary_event_image",
    "dist",
    "event_histogram",
    "event_image",
    "sorted_time_surface",
    "time_surface",
    "timestamp_image",
    "voxel_grid",
]
