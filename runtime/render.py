"""``evstream render``: a recording's event representation, window by window, to ``.npy`` files
(and optional PNG previews), for inspection and for training sets.

Output directory layout (``window_<index>`` zero-padded to six digits, seven and more past
999,999 windows):

* ``window_000000.npy`` ...: one float32 ``(C, H, W)`` array per window (``np.load`` it);
* ``window_000000.png`` ... (with ``png=True``): a preview, see :func:`preview_image`;
* ``render.json``: what was run (file, format, sensor, representation, backend, parameters,
  output size, window spec) and, per window, its file names, ``t_start_us`` / ``t_end_us`` and
  event count. It is written last, so a directory without it holds an interrupted run.

Windows (:mod:`evstream.runtime.windows`, fed chunk by chunk from the reader, so memory is bounded
by the window, not the file):

* ``None``, the whole recording as one window (the only mode that holds every event in memory);
* :class:`CountWindowSpec`: ``size`` events advancing by ``stride`` events; an incomplete last
  window is not rendered. ``t_start_us`` / ``t_end_us`` are the first event's timestamp and one
  past the last's;
* :class:`TimeWindowSpec`: ``[t0 + k * stride, t0 + k * stride + duration)`` microseconds, ``t0``
  the first event's timestamp, for every ``k`` whose window starts at or before the last event;
  windows without events are rendered too (all zeros), so file ``k`` always starts at
  ``t0 + k * stride``.

Output size: with ``size = (height, width)`` different from the sensor, event coordinates are
rescaled N-ImageNet-style (:func:`evstream.kernels.representations.geometry.rescale_events`)
before the representation is computed, so ``size=(224, 224)`` on a 640x480 recording reproduces
N-ImageNet's network input. Without it the sensor size is used.

Example:
    >>> from evstream.runtime.render import RenderConfig, render
    >>> from evstream.runtime.windows import TimeWindowSpec
    >>> cfg = RenderConfig("rec.raw", "event_histogram", "out", window=TimeWindowSpec(50_000))
    >>> render(cfg)["windows"]                                   # doctest: +SKIP
    24
"""

from __future__ import annotations

import inspect
import json
import os
import re
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np

from .. import __version__
from ..kernels.events import concat_events, make_events
from ..kernels.representations import BACKENDS, REPRESENTATIONS, kernel
from ..kernels.representations.geometry import rescale_events
from .windows import CountWindows, CountWindowSpec, TimeWindows, TimeWindowSpec

#: ``progress(bytes_done, events_done)``, called after every chunk read.
Progress = Callable[[int, int], None]

MANIFEST = "render.json"
_OUTPUT_NAME = re.compile(r"window_\d{6,}\.(npy|png)")
_MAX_SIZE = 65535


class RenderArgumentError(ValueError):
    """A bad render argument; ``argument`` names it (``"window"``, ``"size"``, ``"param"``, ...)."""

    def __init__(self, argument: str, message: str):
        super().__init__(message)
        self.argument = argument


class OutputDirError(Exception):
    """The output directory is not usable (not empty without ``force``, or not a directory)."""


# --------------------------------------------------------------------------------------------
# Parsing window lengths and sizes (shared with the command line)


@dataclass(frozen=True)
class WindowLength:
    """A window or stride length: ``kind`` is ``"events"`` (a count) or ``"us"`` (microseconds)."""

    kind: str
    value: int


_LENGTH = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ev|us|µs|ms|s)\s*$", re.IGNORECASE)
_US_PER_UNIT = {"us": 1, "µs": 1, "ms": 1_000, "s": 1_000_000}


def parse_window_length(text: str, argument: str = "window") -> WindowLength:
    """Parses ``<N>ev`` (N events) or ``<T>us`` / ``<T>ms`` / ``<T>s`` (a duration, converted to
    whole microseconds; decimals allowed when they give whole microseconds, e.g. ``0.5ms``).

    Example:
        >>> parse_window_length("2.5ms"), parse_window_length("20000ev")
        (WindowLength(kind='us', value=2500), WindowLength(kind='events', value=20000))
    """
    m = _LENGTH.match(text)
    if not m:
        raise RenderArgumentError(
            argument, f"expected <N>ev, <T>us, <T>ms or <T>s such as 20000ev or 50ms, got {text!r}"
        )
    number, unit = m.group(1), m.group(2).lower()
    try:
        value = Decimal(number)
    except InvalidOperation:  # pragma: no cover - the pattern only admits decimals
        raise RenderArgumentError(argument, f"not a number: {number!r}") from None
    if unit == "ev":
        if value != value.to_integral_value():
            raise RenderArgumentError(argument, f"an event count must be a whole number, got {text!r}")
        kind, amount = "events", value
    else:
        kind, amount = "us", value * _US_PER_UNIT[unit]
        if amount != amount.to_integral_value():
            raise RenderArgumentError(argument, f"{text!r} is not a whole number of microseconds")
    if amount <= 0:
        raise RenderArgumentError(argument, f"must be positive, got {text!r}")
    return WindowLength(kind, int(amount))


def window_spec(
    window: str | WindowLength | None, stride: str | WindowLength | None = None
) -> CountWindowSpec | TimeWindowSpec | None:
    """The window spec for a ``window`` (``"all"``/``None`` or a length) and an optional ``stride``
    of the same kind (default: the window, i.e. non-overlapping). ``None`` means the whole recording.

    Example:
        >>> window_spec("10ms", "5ms")
        TimeWindowSpec(duration_us=10000, stride_us=5000, t0_us=None)
    """
    if isinstance(window, str):
        window = None if window.strip().lower() == "all" else parse_window_length(window, "window")
    if isinstance(stride, str):
        stride = parse_window_length(stride, "stride")
    if window is None:
        if stride is not None:
            raise RenderArgumentError(
                "stride", "needs a window of <N>ev or <T>ms (the whole recording has none)"
            )
        return None
    if stride is not None and stride.kind != window.kind:
        unit = "events (<N>ev)" if window.kind == "events" else "time (<T>us, <T>ms or <T>s)"
        raise RenderArgumentError("stride", f"must be given in {unit}, like the window")
    step = None if stride is None else stride.value
    if window.kind == "events":
        return CountWindowSpec(window.value, step)
    return TimeWindowSpec(window.value, step)


def parse_size_hw(text: str) -> tuple[int, int]:
    """Parses ``HEIGHTxWIDTH`` (rows first, like torch shapes): ``"191x255"`` -> ``(191, 255)``."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise RenderArgumentError(
            "size", f"expected HEIGHTxWIDTH (rows first) such as 224x224 or 191x255, got {text!r}"
        ) from None
    if not (0 < h <= _MAX_SIZE and 0 < w <= _MAX_SIZE):
        raise RenderArgumentError("size", f"size must be between 1x1 and 65535x65535, got {text!r}")
    return h, w


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class RenderConfig:
    """One render run (the command line only fills this in).

    Attributes:
        path: the recording (any readable format).
        representation: a name from ``REPRESENTATIONS``.
        out_dir: output directory (created if missing).
        window: ``None`` (whole recording), a ``CountWindowSpec`` or a ``TimeWindowSpec``.
        size: output ``(height, width)`` in pixels; ``None``: the sensor size.
        backend: ``"cpu"`` (default), ``"reference"`` or ``"cuda"``.
        params: keyword parameters of the representation (e.g. ``{"num_bins": 5}``).
        png: also write a PNG preview per window.
        force: allow a non-empty ``out_dir``; earlier ``window_*.npy`` / ``window_*.png`` /
            ``render.json`` there are deleted first, other files are left alone.
        format: input format name, to skip detection.
        sensor_size: ``(width, height)`` for files that do not state it.
        chunk_events: events read per chunk (bounds memory together with the window).
    """

    path: str
    representation: str
    out_dir: str
    window: CountWindowSpec | TimeWindowSpec | None = None
    size: tuple[int, int] | None = None
    backend: str = "cpu"
    params: Mapping[str, Any] = field(default_factory=dict)
    png: bool = False
    force: bool = False
    format: str | None = None
    sensor_size: tuple[int, int] | None = None
    chunk_events: int = 1 << 20


def resolve_kernel(config: RenderConfig) -> Callable[..., Any]:
    """Checks the representation, backend, parameters and size; returns the kernel to call.

    Raises :class:`RenderArgumentError` naming the argument, also when the backend cannot run
    here (the cuda extra not installed, no GPU) or has no kernel for the representation yet.
    """
    name = config.representation
    if name not in REPRESENTATIONS:
        raise RenderArgumentError(
            "representation", f"unknown representation {name!r}; choose one of {', '.join(REPRESENTATIONS)}"
        )
    if config.backend not in BACKENDS:
        raise RenderArgumentError("backend", f"unknown backend {config.backend!r}; choose one of {BACKENDS}")
    if config.window is not None and not isinstance(config.window, CountWindowSpec | TimeWindowSpec):
        raise RenderArgumentError(
            "window", f"expected None, CountWindowSpec or TimeWindowSpec, got {config.window!r}"
        )
    if config.size is not None:
        h, w = config.size
        if not (0 < h <= _MAX_SIZE and 0 < w <= _MAX_SIZE):
            raise RenderArgumentError("size", f"size must be between 1x1 and 65535x65535, got {h}x{w}")
    if config.chunk_events <= 0:
        raise RenderArgumentError("chunk_events", f"must be positive, got {config.chunk_events}")
    accepted = [
        p.name
        for p in inspect.signature(REPRESENTATIONS[name]).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(config.params) - set(accepted))
    if unknown:
        raise RenderArgumentError(
            "param",
            f"{name} has no parameter {', '.join(map(repr, unknown))}; "
            + (f"its parameters are {', '.join(accepted)}" if accepted else "it takes none"),
        )
    try:
        fn = kernel(name, config.backend)
    except KeyError:
        raise RenderArgumentError(
            "backend", f"no {config.backend} kernel for {name} yet; use the reference backend"
        ) from None
    except ImportError as exc:  # the cuda extra is not installed
        raise RenderArgumentError("backend", f"the {config.backend} backend is unavailable: {exc}") from None
    try:  # parameter values are only checked when called: try them on one event
        fn(make_events([0], [0], [0], [1]), 1, 1, **config.params)
    except (TypeError, ValueError) as exc:
        raise RenderArgumentError("param", f"{name}: {exc}") from None
    except RuntimeError as exc:  # e.g. the cuda backend without a GPU
        raise RenderArgumentError("backend", f"the {config.backend} backend cannot run here: {exc}") from None
    return fn


# --------------------------------------------------------------------------------------------
# Output directory, PNG


def prepare_out_dir(out_dir: str, force: bool) -> None:
    """Creates ``out_dir``, or checks that it is empty; with ``force``, deletes earlier render
    outputs in it (``window_*.npy``, ``window_*.png``, ``render.json``) and nothing else."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutputDirError(f"{out_dir} exists and is not a directory")
    if os.path.isdir(out_dir):
        entries = os.listdir(out_dir)
        if entries and not force:
            raise OutputDirError(f"{out_dir} is not empty (use --force to replace earlier renders there)")
        for entry in entries:
            if entry in (MANIFEST, MANIFEST + ".tmp") or _OUTPUT_NAME.fullmatch(entry):
                os.remove(os.path.join(out_dir, entry))
    os.makedirs(out_dir, exist_ok=True)


def write_png(path: str, image: np.ndarray) -> None:
    """Writes an 8-bit PNG: ``image`` uint8 ``(H, W)`` (grey) or ``(H, W, 3)`` (RGB).

    A minimal encoder (zlib only, no filtering), so a base install needs no image library.
    """
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected uint8 (H, W) or (H, W, 3), got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"cannot write an empty image {image.shape}")
    colour_type = 0 if image.ndim == 2 else 2
    rows = image.reshape(height, -1)
    raw = np.hstack([np.zeros((height, 1), np.uint8), rows]).tobytes()  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6))
    with open(path, "wb") as f:
        f.write(png + chunk(b"IEND", b""))


def _to_unit(plane: np.ndarray, signed_grey: bool) -> np.ndarray:
    """One channel scaled to [0, 1]: ``v / peak`` for non-negative data; signed data as
    ``0.5 + v / (2 peak)`` (zero is mid-grey) or, for colour, ``|v| / peak``, clipped. ``peak`` is
    the 99th percentile of the non-zero magnitudes, so a few hot pixels do not darken the rest."""
    plane = np.nan_to_num(plane.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if plane.size == 0:
        return plane
    magnitude = np.abs(plane)
    nonzero = magnitude[magnitude > 0]
    if nonzero.size == 0:
        return np.zeros_like(plane)
    peak = float(np.percentile(nonzero, 99))
    if plane.min() < 0 and signed_grey:
        return np.clip(0.5 + plane / (2.0 * peak), 0.0, 1.0)
    return np.minimum(magnitude / peak, 1.0)


def preview_image(rep: np.ndarray, on_off: tuple[int, int] = (0, 1)) -> np.ndarray:
    """A uint8 picture of a ``(C, H, W)`` representation, each channel normalised on its own.

    * ``C == 2`` (ON / OFF): RGB ``(H, W, 3)``, red = channel ``on_off[0]``, blue =
      channel ``on_off[1]``, each scaled by its own peak (see :func:`_to_unit`; magnitudes for
      signed data);
    * otherwise: grey ``(H, C * W)``, the channels side by side, left to right; non-negative
      channels scale to black..white, channels with negative values put zero at mid-grey.
    """
    if rep.ndim != 3:
        raise ValueError(f"expected (C, H, W), got shape {rep.shape}")
    c, h, w = rep.shape
    if c == 2:
        out = np.zeros((h, w, 3), np.float64)
        out[..., 0] = _to_unit(rep[on_off[0]], signed_grey=False)
        out[..., 2] = _to_unit(rep[on_off[1]], signed_grey=False)
    else:
        out = np.concatenate([_to_unit(rep[i], signed_grey=True) for i in range(c)], axis=1)
    return np.round(out * 255.0).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# The work


@dataclass(frozen=True)
class _Window:
    index: int
    events: np.ndarray
    t_start_us: int | None
    t_end_us: int | None


def _windows(reader, spec, chunk_events: int, progress: Progress | None) -> Iterator[_Window]:
    read = 0

    def chunks():
        nonlocal read
        for chunk in reader.chunks(chunk_events):
            read += len(chunk)
            if progress:
                progress(reader.bytes_done, read)
            yield chunk

    if spec is None:
        ev = concat_events(list(chunks()))
        if len(ev):
            yield _Window(0, ev, int(ev["t"][0]), int(ev["t"][-1]) + 1)
        else:
            yield _Window(0, ev, None, None)
        return
    windows = CountWindows(spec) if isinstance(spec, CountWindowSpec) else TimeWindows(spec)
    for chunk in chunks():
        for step in windows.push(chunk):
            yield _Window(step.index, step.window, step.t_start_us, step.t_end_us)
    for step in windows.flush():
        yield _Window(step.index, step.window, step.t_start_us, step.t_end_us)


def _host(rep) -> np.ndarray:
    """A backend's output as a host numpy array (cuda device arrays are copied back)."""
    if isinstance(rep, np.ndarray):
        return rep
    if hasattr(rep, "copy_to_host"):
        return rep.copy_to_host()
    if hasattr(rep, "detach"):  # a torch tensor
        return rep.detach().cpu().numpy()
    return np.asarray(rep)


def _window_json(spec) -> dict:
    if spec is None:
        return {"kind": "all"}
    if isinstance(spec, CountWindowSpec):
        return {"kind": "events", "size": spec.size, "stride": spec.stride or spec.size}
    return {"kind": "time", "duration_us": spec.duration_us, "stride_us": spec.stride_us or spec.duration_us}


def render(config: RenderConfig, progress: Progress | None = None) -> dict:
    """Renders ``config.path`` into ``config.out_dir`` (see the module docstring) and returns the
    ``render.json`` content.

    Raises :class:`RenderArgumentError` (bad configuration), :class:`OutputDirError`, ``OSError``
    / ``EventFileError`` for unreadable input or unwritable output, ``ValueError`` when the
    representation's output is not ``(C, height, width)``.
    """
    from ..replay import open_events

    fn = resolve_kernel(config)
    params = dict(config.params)
    on_off = (1, 0) if config.representation == "voxel_grid" else (0, 1)  # EST's order: OFF first
    with open_events(config.path, config.format, config.sensor_size) as reader:
        width, height = reader.width, reader.height
        out_h, out_w = config.size or (height, width)
        rescale = (out_w, out_h) != (width, height)
        prepare_out_dir(config.out_dir, config.force)
        per_window = []
        channels = None
        for win in _windows(reader, config.window, config.chunk_events, progress):
            ev = rescale_events(win.events, width, height, out_w, out_h) if rescale else win.events
            rep = _host(fn(ev, out_w, out_h, **params))
            if rep.ndim != 3 or rep.shape[1:] != (out_h, out_w) or rep.shape[0] < 1:
                raise ValueError(
                    f"{config.representation} ({config.backend}) returned shape {rep.shape}, "
                    f"expected (C, {out_h}, {out_w})"
                )
            if channels is not None and rep.shape[0] != channels:
                raise ValueError(
                    f"{config.representation} changed its channel count ({channels} -> {rep.shape[0]})"
                )
            channels = rep.shape[0]
            rep = np.ascontiguousarray(rep, dtype=np.float32)
            stem = f"window_{win.index:06d}"
            np.save(os.path.join(config.out_dir, stem + ".npy"), rep)
            png = None
            if config.png:
                png = stem + ".png"
                write_png(os.path.join(config.out_dir, png), preview_image(rep, on_off))
            per_window.append(
                {
                    "index": win.index,
                    "npy": stem + ".npy",
                    "png": png,
                    "t_start_us": win.t_start_us,
                    "t_end_us": win.t_end_us,
                    "events": len(win.events),
                }
            )
        manifest = {
            "evstream_version": __version__,
            "file": os.path.abspath(config.path),
            "format": reader.format,
            "sensor": {"width": width, "height": height},
            "representation": config.representation,
            "backend": config.backend,
            "params": params,
            "size": {"height": out_h, "width": out_w},
            "rescaled": rescale,
            "channels": channels,
            "dtype": "float32",
            "layout": "CHW",
            "window": _window_json(config.window),
            "windows": len(per_window),
            "counters": dict(reader.counters),
            "per_window": per_window,
        }
    tmp = os.path.join(config.out_dir, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(config.out_dir, MANIFEST))
    return manifest


__all__ = [
    "MANIFEST",
    "OutputDirError",
    "RenderArgumentError",
    "RenderConfig",
    "WindowLength",
    "parse_size_hw",
    "parse_window_length",
    "preview_image",
    "render",
    "resolve_kernel",
    "window_spec",
    "write_png",
]
