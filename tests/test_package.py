"""Packaging and code-quality gates: layout, the event type across the C++ boundary, the C++
core compiling cleanly at -Wall -Wextra, and ruff."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from evstream.kernels import _core
from evstream.kernels.events import EVENT_DTYPE, make_events

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "kernels" / "csrc"


def test_installed_as_subpackages_of_evstream():
    import evstream.kernels  # noqa: F401
    import evstream.models
    import evstream.replay
    import evstream.runtime

    site = Path(evstream.__file__).resolve().parent.parent
    for bare in ("runtime", "kernels", "models", "replay"):
        assert not (site / bare).exists(), f"bare top-level package {bare} installed"
    assert evstream.__version__


def test_event_dtype_layout_matches_the_cpp_struct():
    assert EVENT_DTYPE.names == ("x", "y", "t", "p")
    assert EVENT_DTYPE.itemsize == 16
    assert [EVENT_DTYPE.fields[n][1] for n in ("x", "y", "p", "t")] == [0, 2, 4, 8]
    # An EVT 3.0 word sequence decoded in C++ comes back as EVENT_DTYPE with the right values.
    words = np.array([0x8001, 0x6005, 0x0007, 0x2800 | 9], "<u2").view(np.uint8)
    ev = _core.Evt3Decoder(16, 16).decode(words)
    assert ev.dtype == EVENT_DTYPE
    assert ev.tolist() == make_events([9], [7], [4096 + 5], [1]).tolist()


def test_cpp_boundary_checks_arguments():
    enc = _core.Evt3Encoder()
    with pytest.raises(ValueError, match="events must have dtype EVENT_DTYPE"):
        enc.encode(np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="events must be C-contiguous"):
        enc.encode(make_events([1, 2, 3], [1, 2, 3], [1, 2, 3], [0, 1, 0])[::2])
    with pytest.raises(ValueError, match="data must be a 1-D byte buffer"):
        _core.Evt3Decoder(0, 0).decode(np.zeros(4, np.uint16))


@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler")
@pytest.mark.parametrize("source", sorted(p.name for p in CSRC.glob("*.cpp")))
def test_cpp_compiles_without_warnings(source):
    pybind11 = pytest.importorskip("pybind11")
    cmd = [
        "c++",
        "-std=c++17",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-fPIC",
        "-c",
        "-o",
        "/dev/null",
        f"-I{pybind11.get_include()}",
        f"-I{sysconfig.get_paths()['include']}",
        str(CSRC / source),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_ruff_lint_clean():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "make",
    [
        lambda: _core.Evt2Decoder(8, 8),
        lambda: _core.Evt21Decoder(8, 8),
        lambda: _core.Evt3Decoder(8, 8),
        lambda: _core.DatDecoder(8, 8, 14, 14),
        lambda: _core.AtisBinDecoder(8, 8),
        lambda: _core.EsDvsDecoder(8, 8),
        lambda: _core.EsAtisDecoder(8, 8),
    ],
)
@pytest.mark.parametrize("size", [0, 1, 3])
def test_decoders_return_empty_event_arrays(make, size):
    ev = make().decode(np.zeros(size, np.uint8) + 0x7)  # too short for a whole word
    assert isinstance(ev, np.ndarray) and ev.dtype == EVENT_DTYPE and len(ev) == 0


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"```bash\n{ci}\n```" in readme
    assert "-c constraints.txt" in ci and "pytest" in ci


def test_bundled_demo_sample_reads():
    from evstream.replay import open_events

    with open_events(ROOT / "tests" / "data" / "davis346_aestream.aedat4") as r:
        assert (r.format, r.width, r.height) == ("aedat4", 346, 260)
        assert len(r.read_all()) == 117667
