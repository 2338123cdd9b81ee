"""numba-cuda representation kernels (``kernels/representations/cuda.py``) == the numpy references,
on seeded random streams (empty, single-event, equal-timestamp, border, unsorted, odd sensor sizes,
non-default parameters) and on a real recording; invalid input raises like the reference; every
kernel compiles to PTX.

Where the kernels run: on a GPU if there is one, else on numba's CUDA simulator. ``numba.cuda``
picks the simulator or the driver once, when it is first imported, from ``NUMBA_ENABLE_CUDASIM``,
so a normal session without a GPU cannot switch to the simulator. There,
``test_equivalence_on_the_simulator`` runs this file again in a child pytest process with
``NUMBA_ENABLE_CUDASIM=1`` (see the child's report on failure). To run and see the individual
cases directly::

    NUMBA_ENABLE_CUDASIM=1 .venv/bin/python -m pytest tests/test_representations_cuda.py

``compile_ptx`` needs the real (not simulated) ``numba.cuda`` but no GPU: it runs in this process,
or, when the simulator is on, in a child process with the simulator off.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import random_events, shared_file
from evstream.kernels.events import EVENT_DTYPE, make_events
from evstream.kernels.representations import REPRESENTATIONS, kernel
from evstream.replay import read_events

try:
    import numba
    from numba import cuda
    from numba.core import sigutils

    from evstream.kernels.representations import cuda as cuda_kernels
except ImportError as exc:  # numba-cuda (part of the 'test' and 'cuda' extras) or its bindings
    pytest.skip(f"numba-cuda is not importable ({exc})", allow_module_level=True)

KERNELS = cuda_kernels.KERNELS
ROOT = Path(__file__).resolve().parents[1]
SIMULATED = bool(numba.config.ENABLE_CUDASIM)
RUNNABLE = SIMULATED or cuda.is_available()  # can kernels be launched in this process?


def on_device(test):
    """Keeps ``test`` only where kernels can be launched in this process (a GPU or the simulator).
    Elsewhere it is not collected at all rather than reported as skipped, because it does run:
    ``test_equivalence_on_the_simulator`` runs it on the simulator in a child process. (Must be
    the outermost decorator.)"""
    return test if RUNNABLE else None


# On a real GPU, small inputs launch small grids and numba warns about low occupancy on every
# such launch (numba.cuda.core.errors.NumbaPerformanceWarning, "Grid size N will likely result in
# GPU under-utilization due to low occupancy."); that is expected here. The simulator warns about
# nothing.
pytestmark = pytest.mark.filterwarnings("ignore:Grid size .* under-utilization")

TOLERANCE = {"rtol": 1e-6, "atol": 1e-7}


def _random(seed, n, width=17, height=11, max_dt=100):
    """A seeded stream with events on the right and bottom borders."""
    ev = random_events(np.random.default_rng(seed), n, width, height, t0=1000, max_dt=max_dt)
    ev["x"][: n // 10] = width - 1
    ev["y"][n // 10 : n // 5] = height - 1
    return ev


def _assert_equal_to_reference(name, ev, width, height, **params):
    want = REPRESENTATIONS[name](ev, width, height, **params)
    out = KERNELS[name](ev, width, height, **params)
    assert hasattr(out, "copy_to_host"), f"{name} must return a device array, got {type(out)}"
    got = cuda_kernels.to_host(out)
    assert got.dtype == np.float32 and got.shape == want.shape, (got.dtype, got.shape, want.shape)
    np.testing.assert_allclose(got, want, **TOLERANCE, err_msg=f"{name} {params}")


# --------------------------------------------------------------------------------------------
# Equivalence with the references (on a GPU or the simulator)


@on_device
@pytest.mark.parametrize("name", sorted(REPRESENTATIONS))
@pytest.mark.parametrize("n", [0, 1, 2, 50, 2000])
@pytest.mark.parametrize("max_dt", [0, 100])
def test_cuda_equals_reference_on_random_streams(name, n, max_dt):
    _assert_equal_to_reference(name, _random(n * 7 + max_dt, n, max_dt=max_dt), 17, 11)


@on_device
@pytest.mark.parametrize("name", sorted(REPRESENTATIONS))
def test_cuda_equals_reference_on_unsorted_streams(name):
    ev = _random(3, 600, max_dt=3)  # few distinct timestamps: many ties in the rankings
    ev = ev[np.random.default_rng(4).permutation(len(ev))]
    _assert_equal_to_reference(name, ev, 17, 11)


@on_device
@pytest.mark.parametrize("name", sorted(REPRESENTATIONS))
@pytest.mark.parametrize("shape", [(1, 1), (16, 8), (3, 40)])
def test_cuda_equals_reference_on_other_sensor_sizes(name, shape):
    # 1 x 1: the sort and scan have no stages; 16 x 8 = 128 pixels: no padding.
    width, height = shape
    _assert_equal_to_reference(name, _random(width * height, 300, width, height, max_dt=20), width, height)


PARAMETERS = [
    ("time_surface", {"tau_us": 250.0}),
    ("time_surface", {"t_ref": 40_000}),
    ("time_surface", {"tau_us": 40.0, "t_ref": 40_000}),
    ("time_surface", {"t_ref": 0}),  # before every event: all zero
    ("voxel_grid", {"num_bins": 1}),
    ("voxel_grid", {"num_bins": 4, "measurement": "polarity"}),
    ("voxel_grid", {"num_bins": 5, "measurement": "timestamp"}),
    ("sorted_time_surface", {"use_image": False}),
    ("dist", {"patch_size": 3}),
    ("dist", {"patch_size": 1}),
    ("dist", {"patch_size": 7, "alpha": 0.5, "clip_rate": 0.5}),
    ("dist", {"clip_rate": 0.0}),
]


@on_device
@pytest.mark.parametrize(("name", "params"), PARAMETERS)
def test_cuda_equals_reference_with_parameters(name, params):
    _assert_equal_to_reference(name, _random(11, 1500), 17, 11, **params)


@on_device
def test_dist_clip_level_when_a_cumulative_count_equals_the_threshold():
    # 16 x 8 pixels: 64 without events, 32 with one, 32 with two, so S = 64, 96, 128 and with
    # clip_rate 0.75 the threshold is exactly 96: the level count is 1 (96 < 96 is false).
    pixels = np.arange(64, 128)
    pixels = np.concatenate([pixels, pixels[32:]])
    t = np.random.default_rng(8).integers(0, 1000, len(pixels))
    ev = make_events(pixels % 16, pixels // 16, t, np.ones(len(pixels)))
    _assert_equal_to_reference("dist", ev, 16, 8, clip_rate=0.75, patch_size=3)


@on_device
@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(REPRESENTATIONS))
def test_cuda_equals_reference_on_a_real_recording(name):
    ev = read_events(shared_file("bin/tonic_sample_nmnist.bin"))
    _assert_equal_to_reference(name, ev, 34, 34)


BAD_INPUT = [
    ("x outside", make_events([17], [0], [5], [1]), 17, 11, {}),
    ("y outside", make_events([0], [11], [5], [0]), 17, 11, {}),
    ("polarity 2", make_events([0], [0], [5], [2]), 17, 11, {}),
    ("wrong dtype", np.zeros(3), 17, 11, {}),
    ("2-D events", np.zeros((2, 2), EVENT_DTYPE), 17, 11, {}),
    ("zero width", make_events([0], [0], [5], [1]), 0, 11, {}),
    ("bool height", make_events([0], [0], [5], [1]), 17, True, {}),
    ("float width", make_events([0], [0], [5], [1]), 17.0, 11, {}),
]
BAD_PARAMETERS = [
    ("dist", {"patch_size": 4}),
    ("dist", {"patch_size": 0}),
    ("dist", {"patch_size": 3.0}),
    ("voxel_grid", {"num_bins": 0}),
    ("voxel_grid", {"num_bins": True}),
    ("voxel_grid", {"measurement": "bogus"}),
    ("time_surface", {"tau_us": 0.0}),
    ("time_surface", {"tau_us": -5.0}),
]


def _assert_same_outcome(label, name, ev, width, height, **params):
    """Both raise the same exception type and message, or both return equal arrays."""
    try:
        want = REPRESENTATIONS[name](ev, width, height, **params)
    except (TypeError, ValueError) as exc:
        with pytest.raises(type(exc)) as info:
            KERNELS[name](ev, width, height, **params)
        assert (type(info.value), str(info.value)) == (type(exc), str(exc)), label
        return
    got = cuda_kernels.to_host(KERNELS[name](ev, width, height, **params))
    np.testing.assert_allclose(got, want, **TOLERANCE, err_msg=label)


@on_device
@pytest.mark.parametrize("name", sorted(REPRESENTATIONS))
def test_bad_input_is_rejected_like_the_reference(name):
    for label, ev, width, height, params in BAD_INPUT:
        _assert_same_outcome(label, name, ev, width, height, **params)
    for bad_name, params in BAD_PARAMETERS:
        if bad_name == name:
            _assert_same_outcome(str(params), name, _random(1, 20), 17, 11, **params)
            # Empty input: the reference checks tau_us only when there are events.
            _assert_same_outcome(f"empty, {params}", name, _random(1, 0), 17, 11, **params)


@on_device
def test_input_is_not_modified_and_output_is_a_device_array():
    ev = _random(2, 300)
    before = ev.copy()
    for name in REPRESENTATIONS:
        out = KERNELS[name](ev, 17, 11)
        assert out.dtype == np.float32 and out.ndim == 3 and out.shape[1:] == (11, 17)
        if not SIMULATED:  # the simulator's arrays are host arrays without the interface
            assert "data" in out.__cuda_array_interface__
        assert isinstance(cuda_kernels.to_host(out), np.ndarray)
    np.testing.assert_array_equal(ev, before)


@on_device
def test_launch_signatures_are_exactly_the_ptx_signatures(monkeypatch):
    declared = {
        (fn, tuple(str(a) for a in sigutils.normalize_signature(sig)[0]))
        for fn, sig in cuda_kernels.PTX_SIGNATURES
    }
    used = set()
    launch = cuda_kernels._launch

    def recording_launch(compiled, n_items, *args):
        used.add((compiled.py_func, tuple(str(numba.typeof(a)) for a in args)))
        launch(compiled, n_items, *args)

    monkeypatch.setattr(cuda_kernels, "_launch", recording_launch)
    for name in REPRESENTATIONS:
        KERNELS[name](_random(5, 100), 17, 11)
    KERNELS["time_surface"](_random(5, 0), 17, 11)  # empty input: the float32 fill
    assert used - declared == set(), f"launched with undeclared signatures: {_names(used - declared)}"
    assert declared - used == set(), f"declared but never launched: {_names(declared - used)}"


def _names(launches):
    return sorted(f"{fn.__name__}{args}" for fn, args in launches)


# --------------------------------------------------------------------------------------------
# Registry, PTX compilation, behaviour without a GPU (in this process)


def test_every_representation_has_a_cuda_kernel():
    assert set(KERNELS) == set(REPRESENTATIONS)
    for name in REPRESENTATIONS:
        assert kernel(name, "cuda") is KERNELS[name]


def test_every_kernel_is_listed_in_ptx_signatures():
    """Every kernel is declared through ``_kernel`` (which records its signatures); the only
    direct ``cuda.jit`` uses are device functions."""
    tree = ast.parse(inspect.getsource(cuda_kernels))
    listed = {fn.__name__ for fn, _ in cuda_kernels.PTX_SIGNATURES}
    declared = set()
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            source = ast.unparse(decorator)
            if source.startswith("_kernel("):
                declared.add(node.name)
            elif "cuda.jit" in source:
                assert "device=True" in source, f"{node.name}: kernels must use @_kernel, not {source}"
    assert declared == listed


def _compile_every_kernel() -> list[str]:
    """Compiles every ``PTX_SIGNATURES`` entry for sm_80 (no GPU needed); the failures."""
    failures = []
    for fn, signature in cuda_kernels.PTX_SIGNATURES:
        try:
            cuda.compile_ptx(fn, signature, cc=(8, 0))
        except Exception as exc:  # report every kernel that fails, not just the first
            failures.append(f"{fn.__name__}{signature}: {type(exc).__name__}: {exc}")
    return failures


def test_every_kernel_compiles_to_ptx():
    assert len(cuda_kernels.PTX_SIGNATURES) >= 20
    if not SIMULATED:
        assert _compile_every_kernel() == []
        return
    # The simulator has no compiler: compile in a child process with the simulator off.
    script = (
        f"import json, sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); "
        "import test_representations_cuda as t; print(json.dumps(t._compile_every_kernel()))"
    )
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == []


@pytest.mark.skipif(RUNNABLE, reason="a GPU or the simulator is available in this process")
def test_without_a_gpu_a_call_fails_with_one_clear_error():
    # Importing the module worked (this process has neither a GPU nor the simulator).
    ev = _random(1, 10)
    for name in REPRESENTATIONS:
        with pytest.raises(RuntimeError, match=r"no CUDA GPU found .*backend='cpu'.*NUMBA_ENABLE_CUDASIM=1"):
            KERNELS[name](ev, 17, 11)
    with pytest.raises(ValueError, match="outside"):  # input is validated first, as on a GPU
        KERNELS["dist"](ev, 3, 3)


@pytest.mark.skipif(RUNNABLE, reason="the equivalence tests run directly in this process")
def test_equivalence_on_the_simulator():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    # The child runs every test of this file except the PTX compilation (done here already).
    command = [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"]
    command += ["-k", "not compiles_to_ptx"]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    report = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, f"simulator run failed:\n{report}"
    assert " passed" in proc.stdout, report
