"""The C++ cores under AddressSanitizer + UndefinedBehaviorSanitizer and under ThreadSanitizer:
standalone drivers in tests/csrc, built without Python, each printing "ok: ..." on success. Any failed
check or sanitizer report fails the test.

- engine_check.cpp: the asynchronous engine; every layer kind through random updates, async == batch,
  the worker pool under ThreadSanitizer.
- decode_check.cpp: every file decoder fed valid (EVT 2.0/3.0 via the encoders: round trip), damaged
  and random streams in random chunks and as blocks over 1 MiB (the two-thread decode path, under
  ThreadSanitizer too), with per-chunk invariants; the event ring against a model and from two threads;
  the histogram against a plain loop."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "kernels" / "csrc"
DRIVERS = ROOT / "tests" / "csrc"
SANITIZERS = ["address,undefined", "thread"]


def _compiler() -> str:
    for name in ("g++", "c++", "clang++"):
        if shutil.which(name):
            return name
    pytest.skip("no C++ compiler")


def _build_and_run(tmp_path: Path, sanitizers: str, sources: list[Path]) -> str:
    """Compiles `sources` with -fsanitize=`sanitizers` and runs the program; returns its stdout.
    Skips only when the compiler cannot link that sanitizer's runtime."""
    exe = tmp_path / sources[0].stem
    flags = ["-std=c++17", "-O1", "-g", "-fno-omit-frame-pointer", "-pthread"]
    flags += [f"-fsanitize={sanitizers}", "-fno-sanitize-recover=all", f"-I{CSRC}"]
    cmd = [_compiler(), *flags, *map(str, sources), "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    missing_runtime = any(w in build.stderr for w in ("sanitize", "asan", "tsan", "ubsan"))
    if build.returncode != 0 and missing_runtime:
        pytest.skip(f"the compiler cannot build with -fsanitize={sanitizers}: {build.stderr[-300:]}")
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("ok:"), run.stdout
    assert "runtime error" not in run.stderr and "WARNING: ThreadSanitizer" not in run.stderr, run.stderr
    return run.stdout


@pytest.mark.parametrize("sanitizers", SANITIZERS)
def test_engine_runs_clean_under_sanitizers(tmp_path, sanitizers):
    out = _build_and_run(tmp_path, sanitizers, [DRIVERS / "engine_check.cpp", CSRC / "async_engine.cpp"])
    from evstream.kernels._core import AsyncEngine

    # every product kernel this CPU runs went through the updates
    assert f"({len(AsyncEngine.gemm_kernels)} kernels)" in out, out


@pytest.mark.parametrize("sanitizers", SANITIZERS)
def test_decoders_ring_histogram_run_clean_under_sanitizers(tmp_path, sanitizers):
    cores = ["decode_prophesee.cpp", "decode_misc.cpp", "encoders.cpp", "ring.cpp", "histogram.cpp"]
    _build_and_run(tmp_path, sanitizers, [DRIVERS / "decode_check.cpp", *(CSRC / name for name in cores)])
