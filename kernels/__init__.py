"""Compute kernels: the C++ core (decoders, encoders) and, later, numba CPU/GPU kernels.

Arrays in, arrays out; this package imports neither ``runtime`` nor ``replay``.
"""

from .events import EVENT_DTYPE, concat_events, empty_events, make_events

__all__ = ["EVENT_DTYPE", "concat_events", "empty_events", "make_events"]
