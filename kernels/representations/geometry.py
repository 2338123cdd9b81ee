"""Geometry around event representations: rescaling, resizing, cropping, and handing the result to
torch.

Pure functions, arrays in, new arrays out (inputs are never modified). Event arrays are 1-D
``EVENT_DTYPE`` (``x``/``y`` pixel column/row, ``t`` microseconds, ``p`` 0/1); sizes are in pixels
and always given as ``width, height`` for events, like every representation function, and as
``out_height, out_width`` for dense ``(..., H, W)`` images, like torch.

Two published pipelines change the resolution in different places, and both are reproduced here:

* **N-ImageNet** (Kim et al., ICCV 2021; 82magnolia/n_imagenet, ``real_cnn_model/data/imagenet.py``)
  rescales the *event coordinates* before any representation: ``reshape_event_no_sample``
  multiplies the float64 ``x`` column by ``224 / 640`` and ``y`` by ``224 / 480`` in place, and
  every representation then truncates the coordinates with ``.long()``. That is
  :func:`rescale_events`. Several events can land on one pixel afterwards, and counts add up.
* **asynet** (Messikommer et al., ECCV 2020; uzh-rpg/rpg_asynet) builds the event histogram at the
  sensor resolution (``dataloader/dataset.py``, ``NCaltech101.generate_event_histogram`` with the
  ``height: 180, width: 240`` of ``config/settings.yaml`` for N-Caltech101) and then resizes the
  *dense* histogram to the network's input size with ``torch.nn.functional.interpolate`` in its
  default ``mode="nearest"`` (``training/trainer.py``, ``trainEpoch`` / ``validationEpoch``:
  "Change size to input size of sparse VGG"; the asynchronous model does the same in
  ``models/asyn_sparse_vgg.py``, ``generateAsynInput``). The size is ``FBSparseVGG.spatial_size``
  (``models/facebook_sparse_vgg.py``), the input size that yields a 2x3 map after five 3x3/2 max
  pools and a 3x3/2 convolution: 191x255 (H x W) for N-Caltech101, 95x127 for N-Cars (four pools),
  the ``spatial_dimensions`` listed in ``evaluation/sliding_window_flops.py`` (223x287 for the
  Prophesee detection model). Nearest resizing neither adds nor averages: an upscaled pixel is
  copied to several output pixels, a downscaled one may be skipped. That is
  :func:`resize_nearest_image`; :func:`resize_nearest` is the same mapping applied to events (each
  event goes to every output pixel whose nearest source is its pixel), which is what the
  asynchronous network needs as its per-event update sites.

Example:
    >>> from evstream.kernels.events import make_events
    >>> ev = make_events(x=[0, 639, 180], y=[0, 479, 240], t=[1, 2, 3], p=[1, 0, 1])
    >>> r = rescale_events(ev, 640, 480)           # N-ImageNet: 640x480 -> 224x224
    >>> r["x"].tolist(), r["y"].tolist()
    ([0, 223, 62], [0, 223, 112])
"""

from __future__ import annotations

import numbers

import numpy as np

from ..events import EVENT_DTYPE, copy_events

#: N-ImageNet's network input (``IMAGE_W``, ``IMAGE_H``).
NIMAGENET_INPUT = (224, 224)
#: asynet's sparse VGG input for N-Caltech101, ``(height, width)`` (``FBSparseVGG.spatial_size``).
ASYNET_NCALTECH101_INPUT = (191, 255)
#: asynet's N-Caltech101 histogram size, ``(height, width)`` (``config/settings.yaml``).
ASYNET_NCALTECH101_SENSOR = (180, 240)

_MAX_SIZE = 65535  # x and y are uint16


# --------------------------------------------------------------------------------------------
# Validation helpers


def _check_events(events) -> np.ndarray:
    if not isinstance(events, np.ndarray):
        raise TypeError(f"events must be a numpy array of EVENT_DTYPE, got {type(events).__name__}")
    if events.dtype != EVENT_DTYPE:
        raise TypeError(f"events must have dtype EVENT_DTYPE, got {events.dtype}")
    if events.ndim != 1:
        raise ValueError(f"events must be a 1-D array, got shape {events.shape}")
    return events


def _check_size(name: str, value, limit: int = _MAX_SIZE) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not 0 < value <= limit:
        raise ValueError(f"{name} must be between 1 and {limit}, got {value}")
    return int(value)


def _check_inside(events: np.ndarray, width: int, height: int) -> None:
    if len(events) and (int(events["x"].max()) >= width or int(events["y"].max()) >= height):
        raise ValueError(
            f"event coordinates outside the {width}x{height} sensor "
            f"(max x {int(events['x'].max())}, max y {int(events['y'].max())})"
        )


# --------------------------------------------------------------------------------------------
# N-ImageNet rescaling


def rescale_events(
    events: np.ndarray, width: int, height: int, out_width: int = 224, out_height: int = 224
) -> np.ndarray:
    """Event coordinates rescaled from a ``width x height`` sensor to ``out_width x out_height``,
    exactly as N-ImageNet does before computing a representation.

    Formula (float64, then truncation towards zero, which is ``floor`` for these non-negative
    values)::

        x' = trunc(x * (out_width / width))      y' = trunc(y * (out_height / height))

    The ratio is computed first and rounded to float64, then multiplied: that is N-ImageNet's
    ``event[:, 0] *= (new_w / orig_w)`` (``reshape_event_no_sample``) on its float64 event array,
    followed by the ``.long()`` every representation applies. It is *not* always the exact
    ``x * out_width // width``: ``224 / 640 = 0.35`` is not representable, so for example x = 180
    gives ``180 * 0.35 = 62.99999999999999`` -> 62, where the exact integer quotient is 63 (x = 180,
    340, 360 differ on 640 -> 224; no y differs on 480 -> 224). The results always lie in
    ``[0, out_width)`` and ``[0, out_height)`` for inputs inside the sensor (``(width - 1) * r``
    stays below ``out_width`` by at least ``out_width / width`` minus a rounding error many orders
    of magnitude smaller).

    Args:
        events: 1-D ``EVENT_DTYPE`` array with coordinates inside the sensor.
        width, height: sensor size in pixels.
        out_width, out_height: target size in pixels (default N-ImageNet's 224 x 224); larger
            than the sensor is allowed (upscaling spreads the events out, leaving empty pixels).

    Returns:
        A new ``EVENT_DTYPE`` array of the same length and order, with rescaled ``x``/``y`` and
        the original ``t``/``p``. Several events may now share a pixel.

    Raises:
        TypeError: wrong dtype or non-integer sizes. ValueError: non-positive sizes, sizes over
        65535, or events outside the sensor.

    Example:
        >>> from evstream.kernels.events import make_events
        >>> rescale_events(make_events([320], [240], [0], [1]), 640, 480)[["x", "y"]].tolist()
        [(112, 112)]
    """
    events = _check_events(events)
    width, height = _check_size("width", width), _check_size("height", height)
    out_width, out_height = _check_size("out_width", out_width), _check_size("out_height", out_height)
    _check_inside(events, width, height)
    out = copy_events(events)
    if len(out):
        # float64 like N-ImageNet's array; astype(int64) truncates towards zero like .long().
        out["x"] = (events["x"].astype(np.float64) * (out_width / width)).astype(np.int64)
        out["y"] = (events["y"].astype(np.float64) * (out_height / height)).astype(np.int64)
    return out


# --------------------------------------------------------------------------------------------
# asynet: nearest-neighbour resizing


def nearest_source_index(in_size: int, out_size: int) -> np.ndarray:
    """For each of ``out_size`` output positions, the input position that
    ``torch.nn.functional.interpolate(..., size=..., mode="nearest")`` copies, int64 ``(out_size,)``.

    torch's rule (``nearest_idx`` in ``aten/src/ATen/native/UpSample.h``, used when a ``size`` and
    no ``scale_factor`` is given): the identity when ``out_size == in_size``, ``i >> 1`` when
    ``out_size == 2 * in_size``, otherwise ``min(floor(i * s), in_size - 1)`` with the scale
    ``s = float32(in_size) / out_size`` and the product both computed in **float32**. The float32
    rounding matters: it changes the chosen source pixel for some sizes compared with exact
    arithmetic, and is reproduced here. (This is torch's legacy "nearest", not "nearest-exact".)

    Example:
        >>> nearest_source_index(3, 7).tolist()
        [0, 0, 0, 1, 1, 2, 2]
    """
    in_size = _check_size("in_size", in_size, limit=1 << 24)
    out_size = _check_size("out_size", out_size, limit=1 << 24)
    if out_size == in_size:
        return np.arange(out_size, dtype=np.int64)
    if out_size == 2 * in_size:
        return np.arange(out_size, dtype=np.int64) >> 1
    scale = np.float32(in_size) / np.float32(out_size)
    positions = np.arange(out_size, dtype=np.float32) * scale  # float32 product, like floorf(i * s)
    return np.minimum(np.floor(positions).astype(np.int64), in_size - 1)


def resize_nearest_image(image, out_height: int, out_width: int):
    """A dense ``(..., H, W)`` image resized to ``(..., out_height, out_width)`` by nearest
    neighbour, pixel for pixel what asynet does to its histograms with
    ``torch.nn.functional.interpolate(x, size=(out_height, out_width))`` (default
    ``mode="nearest"``).

    Each output pixel ``(i, j)`` copies input pixel ``(nearest_source_index(H, out_height)[i],
    nearest_source_index(W, out_width)[j])``; nothing is summed or averaged, so counts are not
    preserved (upscaling duplicates pixels, downscaling skips some). Values and dtype are kept.

    Args:
        image: numpy array or torch tensor with at least 2 dimensions, the last two being
            ``H x W`` (e.g. a representation's ``(C, H, W)`` or a batch ``(N, C, H, W)``).
        out_height, out_width: output size in pixels.

    Returns:
        A new array of the same type (numpy -> numpy, torch -> torch on the same device) and dtype.

    Exactness: equal to torch's result for float32 tensors (the dtype of every representation and
    of asynet's histograms) and integer tensors (tested on every size pair up to 96 -> 130 and on
    the asynet sizes). torch's float64 CPU kernel picks a different source pixel for a few size pairs
    (it rounds differently); this function uses the same mapping for every dtype.

    Example:
        >>> import numpy as np
        >>> resize_nearest_image(np.arange(4.0).reshape(1, 2, 2), 3, 3)[0].tolist()
        [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [2.0, 2.0, 3.0]]
    """
    out_height, out_width = _check_size("out_height", out_height), _check_size("out_width", out_width)
    is_numpy = isinstance(image, np.ndarray)
    torch = None if is_numpy else _torch()
    if not is_numpy and not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a numpy array or a torch tensor, got {type(image).__name__}")
    shape = tuple(image.shape)
    if len(shape) < 2:
        raise ValueError(f"image must have at least 2 dimensions (..., H, W), got shape {shape}")
    height, width = shape[-2], shape[-1]
    if height < 1 or width < 1:
        raise ValueError(f"image must have a non-empty H x W, got shape {shape}")
    rows = nearest_source_index(height, out_height)
    cols = nearest_source_index(width, out_width)
    if is_numpy:
        return image[..., rows[:, None], cols[None, :]]
    r = torch.from_numpy(rows).to(image.device)
    c = torch.from_numpy(cols).to(image.device)
    return image.index_select(-2, r).index_select(-1, c)


def resize_nearest(
    events: np.ndarray, width: int, height: int, out_width: int, out_height: int
) -> np.ndarray:
    """Events moved to a ``out_width x out_height`` grid with the nearest-neighbour mapping of
    :func:`resize_nearest_image`: every event is copied to each output pixel whose source pixel is
    the event's own.

    For any representation that is a per-pixel sum or maximum over the pixel's events and uses no
    statistic of the whole window (event histogram, binary event image), and for the set of
    non-empty pixels of every representation,
    ``f(resize_nearest(ev, W, H, w, h), w, h) == resize_nearest_image(f(ev, W, H), h, w)``
    (tested for the histogram). Representations that normalise by window-wide values (time range,
    maximum count) can differ, because downscaling drops the events of skipped pixels.

    Args:
        events: 1-D ``EVENT_DTYPE`` array with coordinates inside the ``width x height`` sensor.
        width, height: sensor size in pixels.
        out_width, out_height: target size in pixels.

    Returns:
        A new ``EVENT_DTYPE`` array. Each input event becomes ``k >= 0`` consecutive events
        (same ``t`` and ``p``) in input order, so time order is kept: ``k = 0`` for events on a
        skipped row or column when downscaling, up to ``ceil(out / in)`` per axis when upscaling.
        The copies of one event are ordered row-major (by output ``y``, then ``x``).

    Example:
        >>> from evstream.kernels.events import make_events
        >>> r = resize_nearest(make_events([1], [0], [5], [1]), 2, 1, 4, 1)   # 2x1 -> 4x1
        >>> r["x"].tolist(), r["t"].tolist()
        ([2, 3], [5, 5])
    """
    events = _check_events(events)
    width, height = _check_size("width", width), _check_size("height", height)
    out_width, out_height = _check_size("out_width", out_width), _check_size("out_height", out_height)
    _check_inside(events, width, height)
    src_x = nearest_source_index(width, out_width)
    src_y = nearest_source_index(height, out_height)
    # src_* are non-decreasing, so the outputs fed by one input position form a contiguous run.
    count_x = np.bincount(src_x, minlength=width)
    count_y = np.bincount(src_y, minlength=height)
    first_x = np.cumsum(count_x) - count_x
    first_y = np.cumsum(count_y) - count_y
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    nx, ny = count_x[x], count_y[y]
    copies = nx * ny
    total = int(copies.sum())
    source = np.repeat(np.arange(len(events)), copies)
    k = np.arange(total) - np.repeat(np.cumsum(copies) - copies, copies)  # copy number within an event
    nx_rep = nx[source]
    out = np.empty(total, EVENT_DTYPE)
    out["x"] = first_x[x[source]] + k % nx_rep
    out["y"] = first_y[y[source]] + k // nx_rep
    out["t"] = events["t"][source]
    out["p"] = events["p"][source]
    return out


# --------------------------------------------------------------------------------------------
# Cropping


def crop_events(
    events: np.ndarray,
    x0: int,
    y0: int,
    width: int,
    height: int,
    *,
    sensor_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """The events inside the box ``x0 <= x < x0 + width``, ``y0 <= y < y0 + height``, with
    coordinates shifted so that the box's corner becomes ``(0, 0)``.

    Args:
        events: 1-D ``EVENT_DTYPE`` array.
        x0, y0: the box's top-left pixel (column, row), >= 0.
        width, height: the box's size in pixels, >= 1 (the result is a ``width x height`` sensor).
        sensor_size: optional ``(width, height)`` of the sensor; when given, the box must lie
            inside it (``ValueError`` otherwise).

    Returns:
        A new ``EVENT_DTYPE`` array of the kept events in input order (``t``/``p`` unchanged).
        The number of dropped events is ``len(events) - len(result)``.

    Example:
        >>> from evstream.kernels.events import make_events
        >>> ev = make_events(x=[5, 10, 2], y=[5, 6, 5], t=[1, 2, 3], p=[1, 1, 0])
        >>> crop_events(ev, 4, 4, 4, 4)[["x", "y", "t"]].tolist()
        [(1, 1, 1)]
    """
    events = _check_events(events)
    for name, value in (("x0", x0), ("y0", y0)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        if not 0 <= value < _MAX_SIZE:
            raise ValueError(f"{name} must be between 0 and {_MAX_SIZE - 1}, got {value}")
    width, height = _check_size("width", width), _check_size("height", height)
    x0, y0 = int(x0), int(y0)
    if sensor_size is not None:
        sw, sh = (_check_size("sensor width", sensor_size[0]), _check_size("sensor height", sensor_size[1]))
        if x0 + width > sw or y0 + height > sh:
            raise ValueError(
                f"crop box x {x0}..{x0 + width - 1}, y {y0}..{y0 + height - 1} is not inside the "
                f"{sw}x{sh} sensor"
            )
    x = events["x"]
    y = events["y"]
    keep = (x >= x0) & (x < x0 + width) & (y >= y0) & (y < y0 + height)
    out = copy_events(events[keep])
    out["x"] -= x0
    out["y"] -= y0
    return out


def center_crop(events: np.ndarray, width: int, height: int, out_width: int, out_height: int) -> np.ndarray:
    """The central ``out_width x out_height`` box of a ``width x height`` sensor (see
    :func:`crop_events`), starting at ``x0 = (width - out_width) // 2``,
    ``y0 = (height - out_height) // 2``: an odd margin leaves the extra pixel on the right / bottom.
    (torchvision's ``CenterCrop`` rounds ``margin / 2`` half to even instead, so for odd margins its
    box can sit one pixel further right / down.)

    Example:
        >>> from evstream.kernels.events import make_events
        >>> center_crop(make_events([2, 0], [2, 0], [0, 1], [1, 1]), 5, 5, 3, 3)[["x", "y"]].tolist()
        [(1, 1)]
    """
    width, height = _check_size("width", width), _check_size("height", height)
    out_width, out_height = _check_size("out_width", out_width), _check_size("out_height", out_height)
    if out_width > width or out_height > height:
        raise ValueError(f"crop {out_width}x{out_height} is larger than the {width}x{height} sensor")
    return crop_events(
        events,
        (width - out_width) // 2,
        (height - out_height) // 2,
        out_width,
        out_height,
        sensor_size=(width, height),
    )


# --------------------------------------------------------------------------------------------
# To torch without copies


def _torch():
    import torch

    return torch


def _from_cuda_array_interface(obj):
    """``torch.as_tensor`` of a ``__cuda_array_interface__`` object (zero-copy on its device)."""
    torch = _torch()
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"{type(obj).__name__} lives on a CUDA device, but torch.cuda.is_available() is False "
            "(a CPU-only torch build or no GPU); copy it to the host first (e.g. .copy_to_host())"
        )
    return torch.as_tensor(obj, device="cuda")


def to_torch(array):
    """A torch tensor viewing ``array``'s memory, without a copy wherever torch allows it.

    Dispatch, in this order:

    * a ``torch.Tensor`` is returned as it is;
    * a numpy array -> ``torch.from_numpy`` (same memory, a CPU tensor; writes go both ways).
      A read-only array (``flags.writeable`` False, e.g. a memory-mapped file opened read-only) is
      **copied**, since torch tensors are always writable; so is a non-native byte order, which
      torch cannot represent. Structured arrays (``EVENT_DTYPE``) raise ``TypeError``: convert a
      representation, or take ``events["t"]`` etc. field by field;
    * an object with ``__cuda_array_interface__`` (a numba CUDA device array, a CuPy array, the
      ``cuda`` backend's outputs) -> ``torch.as_tensor(obj, device="cuda")``, a CUDA tensor on the
      same memory. ``RuntimeError`` when torch has no CUDA device;
    * an object with ``__dlpack__`` -> ``torch.from_dlpack`` (zero-copy, on the producer's device).

    Returns:
        ``torch.Tensor`` with the array's shape and dtype.

    Example:
        >>> import numpy as np
        >>> a = np.zeros((2, 3, 4), np.float32)
        >>> t = to_torch(a); t[0, 0, 0] = 1.0
        >>> float(a[0, 0, 0]), tuple(t.shape)
        (1.0, (2, 3, 4))
    """
    torch = _torch()
    if isinstance(array, torch.Tensor):
        return array
    if isinstance(array, np.ndarray):
        if array.dtype.names is not None:
            raise TypeError(
                f"structured arrays ({array.dtype}) have no torch equivalent; convert the fields separately"
            )
        if array.dtype.hasobject:
            raise TypeError("object arrays cannot be converted to torch tensors")
        if not array.dtype.isnative:
            array = array.astype(array.dtype.newbyteorder("="))
        if not array.flags.writeable:
            array = array.copy()
        try:
            return torch.from_numpy(array)
        except TypeError as exc:
            raise TypeError(f"torch cannot hold a numpy array of dtype {array.dtype}: {exc}") from None
    if hasattr(array, "__cuda_array_interface__"):
        return _from_cuda_array_interface(array)
    if hasattr(array, "__dlpack__"):
        return torch.from_dlpack(array)
    raise TypeError(
        f"cannot convert {type(array).__name__} to a torch tensor: expected a numpy array, a torch "
        "tensor, or an object with __cuda_array_interface__ or __dlpack__"
    )


__all__ = [
    "ASYNET_NCALTECH101_INPUT",
    "ASYNET_NCALTECH101_SENSOR",
    "NIMAGENET_INPUT",
    "center_crop",
    "crop_events",
    "nearest_source_index",
    "rescale_events",
    "resize_nearest",
    "resize_nearest_image",
    "to_torch",
]
