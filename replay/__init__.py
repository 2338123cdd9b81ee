"""Event recordings: readers, writers and format detection.

Every reader yields arrays of the canonical ``EVENT_DTYPE`` (``x``, ``y`` uint16; ``t`` int64
microseconds; ``p`` 0/1) in chunks, and knows the sensor's ``width`` and ``height``.

Example:
    >>> from evstream.replay import open_events, write_events
    >>> with open_events("in.raw") as r:                     # doctest: +SKIP
    ...     write_events("out.h5", r.read_all(), r.width, r.height)
"""

from __future__ import annotations

import os

import numpy as np

from ..kernels.events import EVENT_DTYPE
from .base import EventReader, EventWriter, preloaded_head
from .errors import EventFileError, UnknownFormatError
from .formats import READERS, WRITERS, check_readable_file, detect_format, reader_class, writer_for

__all__ = [
    "EVENT_DTYPE",
    "EventFileError",
    "EventReader",
    "EventWriter",
    "READERS",
    "UnknownFormatError",
    "WRITERS",
    "detect_format",
    "open_events",
    "open_writer",
    "read_events",
    "write_events",
]


def open_events(
    path: str | os.PathLike, format: str | None = None, sensor_size: tuple[int, int] | None = None
) -> EventReader:
    """Opens a recording for streaming; the format is detected from content unless given.

    Args:
        path: the recording.
        format: a name from ``READERS`` to skip detection (e.g. ``"evt3"`` for a headerless RAW).
        sensor_size: ``(width, height)`` in pixels, overriding or supplying the file's geometry.
    """
    path = os.fspath(path)
    check_readable_file(path)
    with preloaded_head(path):  # detection and the reader share one read of the file's head
        fmt = format or detect_format(path)
        cls = reader_class(fmt)
        if fmt in ("evt2", "evt21", "evt3"):
            return cls(path, sensor_size=sensor_size, encoding=fmt)
        return cls(path, sensor_size=sensor_size)


def read_events(path, format: str | None = None, sensor_size=None) -> np.ndarray:
    """Reads a whole recording into one event array (small files; otherwise stream with open_events)."""
    with open_events(path, format, sensor_size) as reader:
        return reader.read_all()


def open_writer(path: str | os.PathLike, width: int, height: int, format: str | None = None) -> EventWriter:
    """Opens a writer; the format comes from ``format`` or the file extension."""
    path = os.fspath(path)
    cls, kwargs, _ = writer_for(path, format)
    return cls(path, width, height, **kwargs)


def write_events(path, events: np.ndarray, width: int, height: int, format: str | None = None) -> None:
    """Writes an event array to ``path`` in one go."""
    with open_writer(path, width, height, format) as w:
        w.write(events)
