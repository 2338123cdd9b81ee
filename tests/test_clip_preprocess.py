"""EZSR's and EventCLIP's event images (models/clip/preprocess.py) against slow references written
from the papers' code (one event, one pixel at a time), and the CLIP transform against CLIP's own
pipeline on PIL images (torchvision Resize(BICUBIC) + CenterCrop + ToTensor + Normalize)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_events, shared_file
from evstream.models.clip import preprocess as pp
from evstream.replay import read_events


def _counts(events, width, height):
    c = [[[0] * width for _ in range(height)] for _ in range(2)]
    for e in events:
        c[0 if e["p"] > 0 else 1][int(e["y"])][int(e["x"])] += 1
    return c


def _quantile_linear(values, q):
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def _ref_ezsr(events, width, height):
    c = _counts(events, width, height)
    nonzero = [v for ch in c for row in ch for v in row if v > 0]
    out = np.zeros((height, width))
    if not nonzero:
        return out
    cap = _quantile_linear(nonzero, 0.75)
    clipped = [[[min(v, cap) for v in row] for row in ch] for ch in c]
    peaks = [max(max(row) for row in ch) for ch in clipped]
    for y in range(height):
        for x in range(width):
            out[y, x] = sum(clipped[k][y][x] / (peaks[k] + 1) for k in range(2)) / 2
    return out


def _ref_eventclip(events, width, height, hot=10.0):
    c = _counts(events, width, height)
    values = [v for ch in c for row in ch for v in row]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    c = [[[0 if v > mean + hot * std else v for v in row] for row in ch] for ch in c]
    peak = max(v for ch in c for row in ch for v in row)
    out = np.full((height, width), 255, np.uint8)
    if peak == 0:
        return out
    for y in range(height):
        for x in range(width):
            s = c[0][y][x] / peak + c[1][y][x] / peak
            w = min(max(s, 0.0), 1.0)
            out[y, x] = round(127 * s * w + 255 * (1 - w))
    return out


def _stream(seed, n, width, height, hot_pixel=False):
    rng = np.random.default_rng(seed)
    ev = random_events(rng, n, width, height)
    if hot_pixel and n:
        ev["x"][: n // 3] = 3  # a third of the events on one pixel
        ev["y"][: n // 3] = 2
    return ev


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 400),
    width=st.integers(1, 17),
    height=st.integers(1, 13),
    seed=st.integers(0, 10**6),
    hot=st.booleans(),
)
def test_ezsr_and_eventclip_images_match_the_references(n, width, height, seed, hot):
    ev = _stream(seed, n, max(width, 4), max(height, 3), hot)
    w, h = max(width, 4), max(height, 3)
    assert np.allclose(pp.ezsr_image(ev, w, h), _ref_ezsr(ev, w, h), atol=1e-6)
    assert np.array_equal(pp.eventclip_image(ev, w, h), _ref_eventclip(ev, w, h))


def test_hot_pixels_are_removed_by_eventclip_and_clipped_by_ezsr():
    ev = _stream(1, 3000, 40, 30, hot_pixel=True)
    img = pp.eventclip_image(ev, 40, 30)
    assert img[2, 3] == 255  # zeroed as hot: background
    assert img.min() < 255
    grey = pp.ezsr_image(ev, 40, 30)
    assert 0 < grey[2, 3] < 1 and grey.max() == grey[2, 3]  # clipped, not removed


@pytest.mark.parametrize(
    "n,spans",
    [
        (0, []),
        (69_999, [(0, 69_999)]),
        (70_000, [(0, 70_000)]),  # the tail is empty: one chunk
        (105_000, [(0, 70_000)]),  # a tail of exactly N/2 is dropped
        (105_001, [(0, 70_000), (35_001, 105_001)]),  # longer: an overlapping last chunk
        (140_000, [(0, 70_000), (70_000, 140_000)]),
        (300_000, [(0, 70_000), (210_000, 280_000)]),  # 4 chunks, 2 kept, evenly spaced
    ],
)
def test_eventclip_chunks(n, spans):
    assert pp.eventclip_chunks(n) == spans


def test_ezsr_window_is_the_middle_events():
    ev = _stream(2, 20_000, 8, 8)
    w = pp.ezsr_window(ev)
    assert len(w) == 15_000 and np.array_equal(w, ev[2500:17_500])
    assert len(pp.ezsr_window(ev[:100])) == 100


def _clip_reference(image_u8):
    from PIL import Image
    from torchvision import transforms as T

    pipeline = T.Compose(
        [
            T.Resize(224, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize(pp.CLIP_MEAN, pp.CLIP_STD),
        ]
    )
    return pipeline(Image.fromarray(image_u8).convert("RGB"))


@pytest.mark.parametrize("shape", [(480, 640), (34, 34), (180, 240), (300, 200)])
def test_clip_transform_matches_clips_pil_pipeline(shape):
    rng = np.random.default_rng(sum(shape))
    img = rng.integers(0, 256, shape).astype(np.uint8)
    img[: shape[0] // 2] = 255  # flat areas, as event images have
    got = pp.clip_input(img)
    assert got.shape == (3, 224, 224) and got.dtype.is_floating_point
    assert float((got - _clip_reference(img)).abs().max()) < 1e-6  # grey replicated, as RGB
    try:
        import open_clip
    except ImportError:
        return  # the optional clip extra
    transform = open_clip.image_transform(224, is_train=False)
    from PIL import Image

    assert float((got - transform(Image.fromarray(img))).abs().max()) < 1e-6


def test_clip_transform_nearest_on_float_images():
    img = np.random.default_rng(0).random((48, 64)).astype(np.float32)
    got = pp.clip_input(img, interpolation="nearest")
    # nearest: output pixel (i, j) of the 224 x 298 resize reads input (floor(i*48/224), floor(j*64/298))
    left = int(round((298 - 224) / 2))  # torchvision's centre crop
    rows = np.floor(np.arange(224) * 48 / 224).astype(int)
    cols = np.floor((np.arange(224) + left) * 64 / 298).astype(int)
    expected = (img[rows][:, cols] - pp.CLIP_MEAN[0]) / pp.CLIP_STD[0]
    assert np.allclose(got[0].numpy(), expected, atol=1e-5)
    assert np.allclose(got[2].numpy(), (img[rows][:, cols] - pp.CLIP_MEAN[2]) / pp.CLIP_STD[2], atol=1e-5)
    with pytest.raises(ValueError, match="interpolation"):
        pp.clip_input(img, interpolation="lanczos")


def test_real_nmnist_recording_through_both():
    ev = read_events(Path(__file__).parent / "data" / "nmnist_digit7.bs2")
    grey = pp.ezsr_image(pp.ezsr_window(ev), 34, 34)
    assert np.allclose(grey, _ref_ezsr(pp.ezsr_window(ev), 34, 34), atol=1e-6)
    frames = pp.eventclip_images(ev, 34, 34, chunk=2000)
    assert 1 <= len(frames) <= 2
    spans = pp.eventclip_chunks(len(ev), 2000, 2)
    for (a, b), frame in zip(spans, frames, strict=True):
        assert np.array_equal(frame, _ref_eventclip(ev[a:b], 34, 34))
    assert frames[0].min() < 128 < frames[0].max()  # a drawn digit on white


def test_real_prophesee_recording_ezsr():
    ev = read_events(shared_file("raw_evt3/expelliarmus_evt3_sample.raw"))
    window = pp.ezsr_window(ev[:200_000])
    w, h = int(ev["x"].max()) + 1, int(ev["y"].max()) + 1
    small = window[(window["x"] < 64) & (window["y"] < 48)]  # the reference is slow: one corner
    assert np.allclose(pp.ezsr_image(small, 64, 48), _ref_ezsr(small, 64, 48), atol=1e-6)
    assert pp.ezsr_image(window, w, h).shape == (h, w)
