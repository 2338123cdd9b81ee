"""Geometry: N-ImageNet rescaling, asynet's nearest resizing (against torch), cropping, to_torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import random_events
from evstream.kernels.events import EVENT_DTYPE, make_events
from evstream.kernels.representations import geometry
from evstream.kernels.representations.geometry import (
    center_crop,
    crop_events,
    nearest_source_index,
    rescale_events,
    resize_nearest,
    resize_nearest_image,
    to_torch,
)
from evstream.kernels.representations.reference import event_histogram

# --------------------------------------------------------------------------------------------
# rescale_events


def _rescale_slow(events, width, height, out_width, out_height):
    """One event at a time, as N-ImageNet's float64 arithmetic followed by ``.long()``."""
    out = []
    for x, y, t, p in events[["x", "y", "t", "p"]].tolist():
        out.append((int(float(x) * (out_width / width)), int(float(y) * (out_height / height)), t, p))
    return out


def test_rescale_nimagenet_mapping_is_int_of_x_times_ratio():
    xs, ys = np.meshgrid(np.arange(640), np.arange(480))
    ev = make_events(xs.ravel(), ys.ravel(), np.arange(xs.size), xs.ravel() % 2)
    out = rescale_events(ev, 640, 480)  # defaults: 224 x 224
    want_x = np.array([int(x * (224 / 640)) for x in range(640)])
    want_y = np.array([int(y * (224 / 480)) for y in range(480)])
    assert np.array_equal(out["x"], want_x[xs.ravel()]) and np.array_equal(out["y"], want_y[ys.ravel()])
    assert out["x"].max() == 223 and out["y"].max() == 223
    # float64 rounding of 224/640 = 0.35: three columns fall one pixel below the exact quotient.
    col = np.arange(640)
    mapped = rescale_events(make_events(col, np.zeros(640), col, np.ones(640)), 640, 480)["x"]
    assert np.flatnonzero(mapped != col * 224 // 640).tolist() == [180, 340, 360]
    assert np.array_equal(out["t"], ev["t"]) and np.array_equal(out["p"], ev["p"])


def test_rescale_matches_nimagenet_torch_pipeline(rng):
    """N-ImageNet's steps re-enacted in torch: float64 tensor, in-place multiply, .long(), bincount."""
    ev = random_events(rng, 5000, 640, 480)
    event = torch.from_numpy(np.stack([ev["x"], ev["y"], ev["t"], ev["p"]], 1).astype(np.float64))
    event[:, 0] *= 224 / 640
    event[:, 1] *= 224 / 480
    pos = event[event[:, 3] > 0]
    idx = pos[:, 0].long() + pos[:, 1].long() * 224
    want = torch.bincount(idx, minlength=224 * 224).reshape(224, 224).numpy()
    got = event_histogram(rescale_events(ev, 640, 480), 224, 224)[0]
    assert np.array_equal(got, want)


@pytest.mark.parametrize(
    "size", [(34, 34, 17, 9), (346, 260, 224, 224), (240, 180, 255, 191), (7, 3, 64, 65)]
)
def test_rescale_equals_slow_reference(rng, size):
    w, h, ow, oh = size
    ev = random_events(rng, 2000, w, h)
    ev["x"][:10], ev["y"][:10] = w - 1, h - 1  # the far corner
    before = ev.copy()
    out = rescale_events(ev, w, h, ow, oh)
    assert out.dtype == EVENT_DTYPE and len(out) == len(ev)
    assert out[["x", "y", "t", "p"]].tolist() == _rescale_slow(ev, w, h, ow, oh)
    assert out["x"].max() < ow and out["y"].max() < oh
    assert np.array_equal(ev, before) and not np.shares_memory(ev, out)


def test_rescale_always_inside_output():
    # The worst case is the last pixel: (size - 1) * (out / size) must truncate below out.
    size = np.arange(1, 2049, dtype=np.float64)[:, None]
    out = np.arange(1, 2049, dtype=np.float64)[None, :]
    assert np.all(((size - 1) * (out / size)).astype(np.int64) < out)
    for w, ow in [(65535, 65535), (65535, 1), (1, 65535), (65534, 65535), (640, 65535)]:
        ev = make_events([w - 1], [0], [0], [1])
        assert rescale_events(ev, w, 1, ow, 1)["x"][0] < ow


def test_rescale_empty_and_validation():
    assert len(rescale_events(np.zeros(0, EVENT_DTYPE), 640, 480)) == 0
    ev = make_events([1], [1], [0], [1])
    with pytest.raises(TypeError, match="EVENT_DTYPE"):
        rescale_events(np.zeros(3), 640, 480)
    with pytest.raises(ValueError, match="1-D"):
        rescale_events(np.zeros((2, 2), EVENT_DTYPE), 640, 480)
    with pytest.raises(ValueError, match="width must be between 1 and 65535"):
        rescale_events(ev, 0, 480)
    with pytest.raises(ValueError, match="out_height"):
        rescale_events(ev, 640, 480, 224, -1)
    with pytest.raises(TypeError, match="out_width must be an integer"):
        rescale_events(ev, 640, 480, 224.0, 224)
    with pytest.raises(TypeError, match="height must be an integer"):
        rescale_events(ev, 640, True)
    with pytest.raises(ValueError, match="outside the 1x1 sensor"):
        rescale_events(ev, 1, 1)
    with pytest.raises(TypeError, match="numpy array"):
        rescale_events([(1, 1, 0, 1)], 640, 480)


# --------------------------------------------------------------------------------------------
# nearest resizing, against torch


def _torch_nearest(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    x = torch.from_numpy(image)
    while x.dim() < 4:
        x = x.unsqueeze(0)
    y = torch.nn.functional.interpolate(x, size=(out_h, out_w))  # mode="nearest", as asynet
    return y.reshape(*image.shape[:-2], out_h, out_w).numpy()


def test_nearest_source_index_equals_torch_on_all_small_sizes():
    bad = []
    for n_in in range(1, 97):
        row = torch.arange(n_in, dtype=torch.float32).reshape(1, 1, 1, n_in)
        for n_out in range(1, 131):
            got = torch.nn.functional.interpolate(row, size=(1, n_out)).reshape(-1).numpy()
            if not np.array_equal(got.astype(np.int64), nearest_source_index(n_in, n_out)):
                bad.append((n_in, n_out))
    assert bad == []


@pytest.mark.parametrize(
    "shape, out",
    [
        ((2, 180, 240), (191, 255)),  # asynet, N-Caltech101
        ((2, 100, 120), (95, 127)),  # asynet, N-Cars
        ((2, 240, 304), (223, 287)),  # asynet, Prophesee detection
        ((3, 2, 480, 640), (224, 224)),
        ((4, 34, 34), (68, 17)),
        ((5, 7), (5, 7)),
        ((1, 1, 1), (3, 1000)),
    ],
)
def test_resize_nearest_image_equals_torch_interpolate(rng, shape, out):
    image = rng.random(shape, dtype=np.float32)
    want = _torch_nearest(image, *out)
    got = resize_nearest_image(image, *out)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    assert np.array_equal(got, want)
    got_t = resize_nearest_image(torch.from_numpy(image), *out)
    assert isinstance(got_t, torch.Tensor) and np.array_equal(got_t.numpy(), want)


def test_resize_nearest_image_integer_dtype_and_validation(rng):
    image = rng.integers(0, 255, (2, 13, 29), dtype=np.uint8)
    assert np.array_equal(resize_nearest_image(image, 40, 11), _torch_nearest(image, 40, 11))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        resize_nearest_image(np.zeros(5), 2, 2)
    with pytest.raises(ValueError, match="non-empty"):
        resize_nearest_image(np.zeros((2, 0, 3)), 2, 2)
    with pytest.raises(ValueError, match="out_width"):
        resize_nearest_image(np.zeros((2, 2)), 2, 0)
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        resize_nearest_image([[1.0]], 2, 2)


def _resize_events_slow(events, width, height, out_width, out_height):
    sx = nearest_source_index(width, out_width)
    sy = nearest_source_index(height, out_height)
    out = []
    for x, y, t, p in events[["x", "y", "t", "p"]].tolist():
        for oy in range(out_height):
            for ox in range(out_width):
                if sx[ox] == x and sy[oy] == y:
                    out.append((ox, oy, t, p))
    return out


@pytest.mark.parametrize(
    "size", [(24, 18, 25, 19), (24, 18, 11, 7), (5, 4, 10, 8), (9, 9, 9, 9), (6, 5, 23, 2)]
)
def test_resize_nearest_events_equals_slow_reference(rng, size):
    w, h, ow, oh = size
    ev = random_events(rng, 300, w, h)
    before = ev.copy()
    out = resize_nearest(ev, w, h, ow, oh)
    assert out.dtype == EVENT_DTYPE
    assert out[["x", "y", "t", "p"]].tolist() == _resize_events_slow(ev, w, h, ow, oh)
    assert np.all(np.diff(out["t"]) >= 0)  # time order kept
    assert np.array_equal(ev, before)


@pytest.mark.parametrize("out", [(191, 255), (90, 100), (360, 480)])
def test_histogram_of_resized_events_equals_resized_histogram(rng, out):
    """asynet resizes the dense histogram; resizing the events instead gives the same tensor."""
    ev = random_events(rng, 4000, 240, 180)
    oh, ow = out
    want = _torch_nearest(event_histogram(ev, 240, 180), oh, ow)
    got = event_histogram(resize_nearest(ev, 240, 180, ow, oh), ow, oh)
    assert np.array_equal(got, want)


def test_resize_nearest_events_validation():
    with pytest.raises(ValueError, match="outside the 4x4 sensor"):
        resize_nearest(make_events([4], [0], [0], [1]), 4, 4, 8, 8)
    with pytest.raises(TypeError, match="EVENT_DTYPE"):
        resize_nearest(np.zeros(2, np.int64), 4, 4, 8, 8)
    assert len(resize_nearest(np.zeros(0, EVENT_DTYPE), 4, 4, 8, 8)) == 0


# --------------------------------------------------------------------------------------------
# cropping


def test_crop_events_equals_slow_reference(rng):
    ev = random_events(rng, 3000, 64, 48)
    before = ev.copy()
    out = crop_events(ev, 10, 5, 30, 20, sensor_size=(64, 48))
    want = [
        (x - 10, y - 5, t, p)
        for x, y, t, p in ev[["x", "y", "t", "p"]].tolist()
        if 10 <= x < 40 and 5 <= y < 25
    ]
    assert out[["x", "y", "t", "p"]].tolist() == want
    assert len(ev) - len(out) == sum(
        1 for x, y in ev[["x", "y"]].tolist() if not (10 <= x < 40 and 5 <= y < 25)
    )
    assert np.array_equal(ev, before) and not np.shares_memory(ev, out)
    # The whole sensor keeps everything, as a copy.
    assert np.array_equal(crop_events(ev, 0, 0, 64, 48), ev)


def test_crop_validation():
    ev = make_events([1], [1], [0], [1])
    with pytest.raises(ValueError, match="not inside the 64x48 sensor"):
        crop_events(ev, 40, 0, 30, 10, sensor_size=(64, 48))
    with pytest.raises(ValueError, match="x0 must be between"):
        crop_events(ev, -1, 0, 3, 3)
    with pytest.raises(TypeError, match="y0 must be an integer"):
        crop_events(ev, 0, 1.5, 3, 3)
    with pytest.raises(ValueError, match="height must be between"):
        crop_events(ev, 0, 0, 3, 0)
    with pytest.raises(ValueError, match="larger than the 5x5 sensor"):
        center_crop(ev, 5, 5, 6, 5)


def test_center_crop():
    xs, ys = np.meshgrid(np.arange(7), np.arange(6))
    ev = make_events(xs.ravel(), ys.ravel(), np.arange(42), np.ones(42))
    out = center_crop(ev, 7, 6, 4, 2)  # x margin 3 -> x0 = 1; y margin 4 -> y0 = 2
    assert len(out) == 8
    assert out["x"].tolist() == [0, 1, 2, 3] * 2 and out["y"].tolist() == [0] * 4 + [1] * 4
    assert out["t"].tolist() == [
        2 * 7 + 1,
        2 * 7 + 2,
        2 * 7 + 3,
        2 * 7 + 4,
        3 * 7 + 1,
        3 * 7 + 2,
        3 * 7 + 3,
        3 * 7 + 4,
    ]


# --------------------------------------------------------------------------------------------
# to_torch


def test_to_torch_numpy_is_zero_copy():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    t = to_torch(a)
    assert t.dtype == torch.float32 and tuple(t.shape) == (2, 3, 4)
    assert t.data_ptr() == a.ctypes.data and np.shares_memory(a, t.numpy())
    t[1, 2, 3] = -1.0
    assert a[1, 2, 3] == -1.0
    assert to_torch(t) is t


def test_to_torch_copies_what_torch_cannot_share():
    a = np.arange(6, dtype=np.float32)
    a.flags.writeable = False
    t = to_torch(a)  # no "not writable" warning (warnings are errors in this suite)
    assert np.array_equal(t.numpy(), a) and not np.shares_memory(t.numpy(), a)
    b = np.arange(4, dtype=">f4")
    assert to_torch(b).tolist() == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(TypeError, match="structured"):
        to_torch(np.zeros(2, EVENT_DTYPE))
    with pytest.raises(TypeError, match="__cuda_array_interface__ or __dlpack__"):
        to_torch([1, 2, 3])


class _DlpackOnly:
    """Exposes only the DLPack protocol of a wrapped array (like a foreign library's array)."""

    def __init__(self, array):
        self._array = array

    def __dlpack__(self, **kwargs):
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()


def test_to_torch_dlpack_is_zero_copy():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = to_torch(_DlpackOnly(a))
    assert t.data_ptr() == a.ctypes.data and tuple(t.shape) == (3, 4)
    t[0, 0] = 42.0
    assert a[0, 0] == 42.0


class _FakeDeviceArray:
    """Has a CUDA array interface (and DLPack, which must not be preferred) but no real memory."""

    __cuda_array_interface__ = {"shape": (2, 3), "typestr": "<f4", "data": (0, False), "version": 3}

    def __dlpack__(self, **kwargs):  # pragma: no cover - must not be called
        raise AssertionError("the CUDA array interface must be preferred")


def test_to_torch_dispatches_cuda_array_interface(monkeypatch):
    seen = []
    monkeypatch.setattr(geometry, "_from_cuda_array_interface", lambda obj: seen.append(obj) or "cuda tensor")
    fake = _FakeDeviceArray()
    assert to_torch(fake) == "cuda tensor" and seen == [fake]


def test_to_torch_cuda_without_gpu_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="torch.cuda.is_available"):
        to_torch(_FakeDeviceArray())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_to_torch_numba_device_array_is_zero_copy():  # pragma: no cover - GPU machines only
    from numba import cuda

    d = cuda.to_device(np.arange(6, dtype=np.float32))
    t = to_torch(d)
    assert t.is_cuda and t.data_ptr() == d.__cuda_array_interface__["data"][0]
    assert t.cpu().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
