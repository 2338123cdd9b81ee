"""The C++ asynchronous engine under AddressSanitizer + UndefinedBehaviorSanitizer (and
ThreadSanitizer for its worker pool): tests/csrc/engine_check.cpp drives every layer kind through
random updates and checks async == batch; any sanitizer report fails the test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "tests" / "csrc" / "engine_check.cpp", ROOT / "kernels" / "csrc" / "async_engine.cpp"]


def _compiler() -> str:
    for name in ("g++", "c++", "clang++"):
        if shutil.which(name):
            return name
    pytest.skip("no C++ compiler")


@pytest.mark.parametrize("sanitizers", ["address,undefined", "thread"])
def test_engine_runs_clean_under_sanitizers(tmp_path, sanitizers):
    exe = tmp_path / "engine_check"
    flags = ["-std=c++17", "-O1", "-g", "-fno-omit-frame-pointer", "-pthread"]
    flags += [f"-fsanitize={sanitizers}", "-fno-sanitize-recover=all", f"-I{ROOT / 'kernels' / 'csrc'}"]
    cmd = [_compiler(), *flags, *map(str, SOURCES), "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    missing_runtime = any(w in build.stderr for w in ("sanitize", "asan", "tsan", "ubsan"))
    if build.returncode != 0 and missing_runtime:
        pytest.skip(f"the compiler cannot build with -fsanitize={sanitizers}: {build.stderr[-300:]}")
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("ok:"), run.stdout
    assert "runtime error" not in run.stderr and "WARNING: ThreadSanitizer" not in run.stderr, run.stderr
