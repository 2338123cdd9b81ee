"""``evstream bench``: every benchmark of evstream behind one interface.

Each benchmark measures evstream beside a baseline in the same run (warm-up, then repeated runs;
medians with their spread) and returns a JSON-ready dict that names the machine:

* ``decode``: file decoding against a memcpy ceiling and the peer readers (expelliarmus, faery,
  dv-processing, aestream, tonic; the ``bench`` extra), each peer's output checked;
* ``repr``: event representations against numpy's ``bincount`` histogram and the peers
  (tonic, evlib), incremental window steps against recomputation;
* ``ring``: the C++ ring buffer against memcpy;
* ``zmq``: the ZeroMQ source against raw pyzmq;
* ``async``: the asynchronous sparse CNN engine against its batch mode and a dense torch recompute,
  FLOPs in the four accounting modes;
* ``e2e``: the whole pipeline at rising input rates: window latency distribution, drops;
* ``soak`` (not in ``all``): ten minutes of looped replay at a high rate: resident memory growth
  and the event accounting.

:data:`BENCHMARKS` maps a name to a :class:`Benchmark`; ``all`` runs them in this order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .asynchronous import SlidingHistogram, format_async, run_async, synthetic_stream, to_grid
from .common import machine_info


@dataclass(frozen=True)
class Benchmark:
    """``run(quick=..., progress=..., **options) -> dict`` and ``format(result) -> str``."""

    run: Callable[..., dict]
    format: Callable[[dict], str]
    what: str
    in_all: bool = True  # run by 'evstream bench all'


def _lazy(module: str, run: str, fmt: str):
    """Imports a benchmark's module only when it runs (peers and torch are heavy)."""
    import importlib

    def run_it(**options):
        return getattr(importlib.import_module(f"{__name__}.{module}"), run)(**options)

    def format_it(result):
        return getattr(importlib.import_module(f"{__name__}.{module}"), fmt)(result)

    return run_it, format_it


BENCHMARKS: dict[str, Benchmark] = {
    "decode": Benchmark(*_lazy("decode", "run_decode", "format_decode"), "file decoding vs memcpy and peers"),
    "repr": Benchmark(
        *_lazy("representations", "run_repr", "format_repr"), "representations vs numpy and peers"
    ),
    "ring": Benchmark(*_lazy("stream", "run_ring", "format_ring"), "ring buffer vs memcpy"),
    "zmq": Benchmark(*_lazy("stream", "run_zmq", "format_zmq"), "ZeroMQ source vs raw pyzmq"),
    "async": Benchmark(run_async, format_async, "asynchronous sparse CNN vs batch and dense torch"),
    "e2e": Benchmark(*_lazy("stream", "run_e2e", "format_e2e"), "pipeline latency and drops vs input rate"),
    "soak": Benchmark(
        *_lazy("soak", "run_soak", "format_soak"), "minutes of looped replay: memory and accounting", False
    ),
}

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "SlidingHistogram",
    "format_async",
    "machine_info",
    "run_async",
    "synthetic_stream",
    "to_grid",
]
