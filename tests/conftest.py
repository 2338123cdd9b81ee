"""Shared fixtures. Real recordings live in ../shared/data beside the repository; tests that
need them skip cleanly where that folder is absent (it is not distributed with evstream)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Qt aborts the process when it cannot reach a display: tests render offscreen (pytest-qt too).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from evstream.kernels.events import EVENT_DTYPE

SHARED_DATA = Path(
    os.environ.get("EVSTREAM_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


def shared_file(relative: str) -> Path:
    """Path of a file in ../shared/data, or skip the test if it is not there."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real recording {relative} not available (../shared/data absent)")
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for ZeroMQ tests on loopback)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def random_events(rng, n: int, width: int, height: int, t0: int = 0, max_dt: int = 50) -> np.ndarray:
    """Seeded random events with non-decreasing timestamps (as sensors produce them)."""
    ev = np.empty(n, EVENT_DTYPE)
    ev["x"] = rng.integers(0, width, n)
    ev["y"] = rng.integers(0, height, n)
    ev["t"] = t0 + np.cumsum(rng.integers(0, max_dt + 1, n))
    ev["p"] = rng.integers(0, 2, n)
    return ev


@pytest.fixture
def recording(tmp_path, rng):
    """A small EVT3 recording of 20,000 random events on 64x48 and its events."""
    from evstream.replay import write_events

    ev = random_events(rng, 20_000, 64, 48, t0=1000, max_dt=10)
    path = tmp_path / "rec.raw"
    write_events(path, ev, 64, 48)
    return path, ev
