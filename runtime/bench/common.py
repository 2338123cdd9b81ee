"""What every benchmark shares: the machine's description, timing with warm-up and repeats,
statistics (medians and spread) and plain-text tables."""

from __future__ import annotations

import datetime
import os
import platform
import time
from pathlib import Path

import numpy as np

from ...models.default import cache_dir

#: the real recordings (``EVSTREAM_SHARED_DATA``, else ``../shared/data`` beside a checkout); the
#: benchmarks use them when present and fall back to synthetic recordings
SHARED = Path(os.environ.get("EVSTREAM_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
CACHE = cache_dir("bench")


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """CPU model, cores, torch threads, library versions and the date."""
    import torch

    from ... import __version__

    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "evstream": __version__,
    }


def stats_ms(seconds: list[float]) -> dict:
    """Milliseconds: median, 90th percentile, mean, min and count of timings in seconds."""
    a = np.asarray(seconds, np.float64) * 1e3
    return {
        "median": float(np.median(a)),
        "p90": float(np.percentile(a, 90)),
        "mean": float(a.mean()),
        "min": float(a.min()),
        "n": len(a),
    }


class CpuMeter:
    """The share of the machine's CPU time other processes used since construction (Linux:
    /proc/stat busy time minus this process's own CPU time), to flag timings taken on a busy
    machine; None where it cannot be read."""

    def __init__(self):
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
            tick = os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, AttributeError):
            return None
        busy = sum(fields[:3]) + sum(fields[5:8])  # user nice system + irq softirq steal
        own = os.times()
        return busy / tick, own.user + own.system, time.perf_counter()

    def other_load(self) -> float | None:
        """Other processes' CPU time over (wall time x cores), 0..1."""
        end = self._read()
        if self._start is None or end is None:
            return None
        busy, own, wall = (e - s for e, s in zip(end, self._start, strict=True))
        if wall <= 0:
            return None
        return float(min(max((busy - own) / (wall * (os.cpu_count() or 1)), 0.0), 1.0))


def cached_recording(name: str, make_events, width: int, height: int, format: str) -> Path:
    """``CACHE/name``, written once from ``make_events()`` (via a temporary file, so an
    interrupted write never leaves a partial recording behind)."""
    from ...replay import write_events

    path = CACHE / name
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp" + path.suffix)
        write_events(tmp, make_events(), width, height, format=format)
        tmp.rename(path)
    return path


def uniform_events(n: int, rate_hz: float, width: int, height: int, seed: int = 0) -> np.ndarray:
    """``n`` events at uniformly random pixels and polarities, evenly spaced at ``rate_hz``."""
    from ...kernels.events import make_events

    rng = np.random.default_rng(seed)
    t = (np.arange(n) * (1e6 / rate_hz)).astype(np.int64)
    return make_events(rng.integers(0, width, n), rng.integers(0, height, n), t, rng.integers(0, 2, n))


def time_runs(fn, warmup: int, runs: int) -> list[float]:
    """``runs`` timings (seconds) of ``fn()`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def rate_stats(times: list[float], n: int) -> dict:
    """Throughput of ``n`` items per timing: the median in millions per second, with the spread
    (slowest..fastest run) and the raw seconds."""
    med = float(np.median(times))
    return {
        "median_s": med,
        "min_s": float(min(times)),
        "max_s": float(max(times)),
        "runs": len(times),
        "mevents_per_s": n / med / 1e6,
        "spread_mevents_per_s": [n / max(times) / 1e6, n / min(times) / 1e6],
    }


def percent(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f} %"


def table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Right-aligned columns, two spaces apart, indented by two."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return ["  " + fmt.format(*head)] + ["  " + fmt.format(*r) for r in rows]
