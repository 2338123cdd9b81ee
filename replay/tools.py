"""Whole-recording operations built on the readers and writers: summary and conversion.

Both stream the file chunk by chunk and report progress through an optional callback
``progress(bytes_done, events_done)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from .base import EventReader
from .formats import READERS

Progress = Callable[[int, int], None]


def summarize(reader: EventReader, progress: Progress | None = None) -> dict:
    """Statistics of a whole recording, computed in one streaming pass.

    Returns a dict with ``format``, ``description``, ``width``, ``height``, ``events``,
    ``t_first_us``, ``t_last_us``, ``t_min_us``, ``t_max_us``, ``duration_us``,
    ``mean_rate_hz`` (events per second over ``duration_us``), ``on_events``, ``off_events``,
    ``on_fraction``, ``x_max``, ``y_max``, ``size_bytes`` and ``counters`` (skipped/damaged data).
    Timestamps are ``None`` for an empty recording.
    """
    n = on = 0
    t_first = t_last = t_min = t_max = None
    x_max = y_max = -1
    for part in reader.blocks():
        t = part["t"]
        if t_first is None:
            t_first = int(t[0])
            t_min, t_max = int(t.min()), int(t.max())
        else:
            t_min, t_max = min(t_min, int(t.min())), max(t_max, int(t.max()))
        t_last = int(t[-1])
        n += len(part)
        on += int(np.count_nonzero(part["p"]))
        x_max = max(x_max, int(part["x"].max()))
        y_max = max(y_max, int(part["y"].max()))
        if progress:
            progress(reader.bytes_done, n)
    duration = (t_max - t_min) if n else None
    return {
        "path": reader.path,
        "format": reader.format,
        "description": READERS.get(reader.format, ("", "", reader.format))[2],
        "width": reader.width,
        "height": reader.height,
        "events": n,
        "t_first_us": t_first,
        "t_last_us": t_last,
        "t_min_us": t_min,
        "t_max_us": t_max,
        "duration_us": duration,
        "mean_rate_hz": (n / (duration * 1e-6)) if duration else None,
        "on_events": on,
        "off_events": n - on,
        "on_fraction": (on / n) if n else None,
        "x_max": x_max if n else None,
        "y_max": y_max if n else None,
        "size_bytes": os.path.getsize(reader.path),
        "counters": dict(reader.counters),
    }


def convert(
    reader: EventReader,
    out_path: str | os.PathLike,
    out_format: str | None = None,
    progress: Progress | None = None,
) -> dict:
    """Copies every event of ``reader`` to ``out_path`` (format from ``out_format`` or extension).

    The output keeps the reader's sensor size. On any error the partial output file is removed.
    Returns ``{"events": n, "format": fmt, "counters": reader.counters}``.
    """
    from . import open_writer  # local: the package imports this module

    out_path = os.fspath(out_path)
    n = 0
    writer = open_writer(out_path, reader.width, reader.height, out_format)
    try:
        with writer:
            for part in reader.blocks():
                writer.write(part)
                n += len(part)
                if progress:
                    progress(reader.bytes_done, n)
    except BaseException:
        if os.path.exists(out_path):
            os.remove(out_path)
        raise
    return {"events": n, "format": writer.format, "counters": dict(reader.counters)}
