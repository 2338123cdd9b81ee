"""The canonical event type, defined once for the whole package.

An event is ``(x, y, t, p)``: pixel column and row (uint16), timestamp in microseconds (int64)
and polarity (uint8, 1 = ON / brightness increase, 0 = OFF). The layout is 16 bytes with ``t``
8-byte aligned, identical to ``evs::Event`` in ``kernels/csrc/event.hpp``, so arrays cross the
C++ boundary without copies.

Example:
    >>> import numpy as np
    >>> from evstream.kernels.events import EVENT_DTYPE, make_events
    >>> ev = make_events(x=[1, 2], y=[3, 4], t=[10, 20], p=[1, 0])
    >>> ev.dtype == EVENT_DTYPE, ev["t"].tolist()
    (True, [10, 20])
"""

from __future__ import annotations

import numpy as np

EVENT_DTYPE = np.dtype(
    {
        "names": ["x", "y", "t", "p"],
        "formats": ["<u2", "<u2", "<i8", "u1"],
        "offsets": [0, 2, 8, 4],
        "itemsize": 16,
    }
)


def empty_events(n: int = 0) -> np.ndarray:
    """Returns a zero-filled event array of length ``n``."""
    return np.zeros(n, dtype=EVENT_DTYPE)


def make_events(x, y, t, p) -> np.ndarray:
    """Builds an event array from four equally long sequences (any numeric dtypes)."""
    x, y, t, p = (np.asarray(a) for a in (x, y, t, p))
    n = len(x)
    if not (len(y) == len(t) == len(p) == n):
        raise ValueError(f"x, y, t, p must have equal lengths, got {len(x)}, {len(y)}, {len(t)}, {len(p)}")
    ev = np.empty(n, dtype=EVENT_DTYPE)
    ev["x"] = x
    ev["y"] = y
    ev["t"] = t
    ev["p"] = p
    return ev


# numpy copies a padded structured dtype field by field (about 20x slower than memcpy); copies go
# through this opaque 16-byte view instead.
_RAW = np.dtype((np.void, EVENT_DTYPE.itemsize))


def concat_events(parts) -> np.ndarray:
    """Concatenates event arrays into a new array (an empty list gives an empty array).

    A single non-empty part is returned as it is, not copied.
    """
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_events(0)
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([np.ascontiguousarray(p).view(_RAW) for p in parts]).view(EVENT_DTYPE)


def copy_events(events: np.ndarray) -> np.ndarray:
    """A contiguous copy of an event array, at memcpy speed."""
    return np.ascontiguousarray(events).view(_RAW).copy().view(EVENT_DTYPE)
