"""The C++ cores under AddressSanitizer + UndefinedBehaviorSanitizer and under ThreadSanitizer:
standalone drivers in tests/csrc, built without Python, each printing "ok: ..." on success. Any failed
check or sanitizer report fails the test.

- engine_check.cpp: the asynchronous engine; every layer kind through random updates, async == batch,
  the worker pool under ThreadSanitizer.
- decode_check.cpp: every file decoder fed valid (EVT 2.0/3.0 via the encoders: round trip), damaged
  and random streams in random chunks and as blocks over 1 MiB (the two-thread decode path, under
  ThreadSanitizer too), with per-chunk invariants; the event ring against a model and from two threads;
  the histogram against a plain loop.

Also the standalone benchmark benchmarks/csrc/kernel_ceilings.cpp (the product kernels' ceilings):
it must build against the engine's header and print its table (its numbers are not checked here:
speed is measured in benchmarks, not tests)."""

from __future__ import annotations

import re
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


def test_kernel_ceilings_benchmark_builds_and_reports_every_kernel(tmp_path):
    from evstream.kernels._core import AsyncEngine

    exe = tmp_path / "kernel_ceilings"
    sources = [ROOT / "benchmarks" / "csrc" / "kernel_ceilings.cpp", CSRC / "async_engine.cpp"]
    cmd = [_compiler(), "-std=c++17", "-O1", "-pthread", f"-I{CSRC}", *map(str, sources), "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)

    rate = re.compile(r"^  (\S.*?)\s+(\d+\.\d) GFLOP/s(  (\d\.\d\d) of peak)?$")
    for kernel in AsyncEngine.gemm_kernels:
        out = run("--kernel", kernel, "--trials", "1", "--threads", "2")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].startswith(f"engine kernel {kernel};") and "2 threads at once" in lines[0], lines[0]
        assert [ln for ln in lines if ln.startswith("thread")] == ["thread 0", "thread 1"]
        rows = [rate.match(ln) for ln in lines if ln.startswith("  ") and "GFLOP/s" in ln]
        assert all(rows) and all(float(m.group(2)) > 0 for m in rows), out.stdout
        has_peak = kernel != "portable"
        # four product settings per thread, and the peak loop (the ratios' base) where there is one
        assert len(rows) == 2 * (4 + has_peak), out.stdout
        assert all(bool(m.group(3)) == has_peak for m in rows), out.stdout
        assert ("no AVX2/AVX-512 loop" in out.stdout) == (not has_peak)
    for args, message in [
        (["--threads", "0"], "bad value for --threads: 0"),
        (["--trials", "x"], "bad value for --trials: x"),
        (["--trials"], "missing value for --trials"),
        (["--kernel", "sse9"], "unknown product kernel 'sse9'"),
        (["--fast"], "unknown argument --fast"),
    ]:
        out = run(*args)
        assert out.returncode == 2 and message in out.stderr and "usage:" in out.stderr, (args, out.stderr)
    assert run("--help").returncode == 0
