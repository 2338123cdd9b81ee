"""'evstream bench async': the asynchronous sparse CNN benchmark (issue #5), in its --quick form."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import random_events
from evstream.models import flops
from evstream.models.sparse_vgg import architecture
from evstream.replay import write_events
from evstream.runtime.bench import SlidingHistogram, format_async, synthetic_stream, to_grid
from evstream.runtime.cli import main

DAVIS = Path(__file__).parent / "data" / "davis346_aestream.aedat4"
MODES = ("async_sparse", "async_dense", "batch_sparse", "batch_dense")
TIMES = ("async", "bookkeeping", "batch", "torch_dense")


@pytest.fixture(scope="module")
def quick() -> dict:
    """One 'evstream bench async --quick --json -' run (synthetic input), parsed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["bench", "async", "--quick", "--json", "-"]) == 0
    return json.loads(out.getvalue())


def test_json_structure(quick):
    assert quick["benchmark"] == "async" and quick["quick"] is True
    assert quick["model"]["name"] == "ncaltech101_vgg13" and quick["model"]["input"] == [2, 191, 255]
    assert quick["input"]["kind"] == "synthetic" and "synthetic" in quick["input"]["description"]
    assert quick["input"]["mapped_to"] == [255, 191] and quick["window_events"] == 25_000
    for key in ("date", "cpu", "cores", "torch_threads"):
        assert quick["machine"][key]
    assert [s["step_events"] for s in quick["steps"]] == [1, 10, 100, 1000]
    for s in quick["steps"]:
        assert set(s["flops"]) == set(MODES)
        assert set(s["time_ms"]) == set(TIMES)
        for t in s["time_ms"].values():
            assert 0 < t["min"] <= t["median"] <= t["p90"] and t["n"] >= 1
        assert s["time_ms"]["async"]["n"] == s["updates"] >= 1
        assert s["other_cpu_load"] is None or 0 <= s["other_cpu_load"] <= 1
        assert s["speedup_vs_torch_dense"] == pytest.approx(
            s["time_ms"]["torch_dense"]["median"] / s["time_ms"]["async"]["median"]
        )
    assert isinstance(quick["goals"]["all_met"], bool)


def test_flops_consistent(quick):
    arch = architecture("ncaltech101_vgg13")
    batch_dense = flops.total(flops.batch_dense_flops(arch))
    assert batch_dense == pytest.approx(1621.2e6, rel=1e-4)  # asynet's figure
    for s in quick["steps"]:
        f = s["flops"]
        assert f["batch_dense"] == batch_dense
        assert 0 < f["async_sparse"] < f["batch_dense"]
        assert 0 < f["batch_sparse"] < f["batch_dense"]
        # the dense cone of influence holds at least the sites the engine recomputes (per layer the
        # engine's dense tail can count a few FLOPs more, summed over the network it never does)
        assert f["async_dense"] >= f["async_sparse"]
        assert s["flops_mean"]["async_dense"] >= s["flops_mean"]["async_sparse"]
        assert s["flop_reduction"] == pytest.approx(f["batch_dense"] / f["async_sparse"])
        assert s["changed_sites"]["median"] <= 2 * s["step_events"]
        # the paper's count multiplies every channel; the engine skips zero channels of sparse rows
        assert f["async_sparse"] < s["flops_full_rows"] <= f["async_dense"]
        assert s["flop_reduction_full_rows"] == pytest.approx(f["batch_dense"] / s["flops_full_rows"])
    assert quick["machine"]["engine_channel_skip"] == pytest.approx(0.6)
    # a larger step changes more sites and costs more per update
    sparse = [s["flops"]["async_sparse"] for s in quick["steps"]]
    assert sparse[0] < sparse[-1]


def test_engine_matches_torch(quick):
    for s in quick["steps"]:
        c = s["correctness"]
        assert c["argmax_equal"]
        assert c["relative_difference"] < 1e-4
        assert c["max_abs_difference"] < 1e-4 * c["max_abs_logit"] + 1e-6
        assert c["batch_max_abs_difference"] < 1e-4 * c["max_abs_logit"] + 1e-6


def test_goals_follow_the_numbers(quick):
    for s in quick["steps"]:
        g = s["goals"]
        assert g["speedup_ge_third_of_reduction"] == (s["speedup_vs_torch_dense"] >= s["flop_reduction"] / 3)
        if s["step_events"] == 1:
            assert g["reduction_ge_10"] == (s["flop_reduction"] >= 10)
            assert g["time_le_1ms"] == (s["time_ms"]["async"]["median"] <= 1.0)
        else:
            assert set(g) == {"speedup_ge_third_of_reduction"}
    met = [v for s in quick["steps"] for v in s["goals"].values()]
    assert quick["goals"]["all_met"] == all(met)


def test_table(quick):
    text = format_async(quick)
    assert "FLOPs per update" in text and "Time per update" in text and "synthetic" in text
    assert "other load" in text
    assert text.count("PASS") + text.count("MISS") == 6  # two step-1 goals + one per step size
    assert "1,000" in text and quick["machine"]["cpu"] in text


def test_source_file_table_and_json_file(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "async", "--quick", "--source", str(DAVIS), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["input"]["kind"] == "file" and result["input"]["sensor"] == [346, 260]
    assert "davis346_aestream.aedat4" in text and "Goals (issue #5)" in text
    for s in result["steps"]:
        assert s["correctness"]["argmax_equal"] and s["correctness"]["relative_difference"] < 1e-4


def test_channel_skip_option(capsys):
    """--channel-skip 0 multiplies every channel: the engine's count is then the paper's."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["bench", "async", "--quick", "--channel-skip", "0", "--json", "-"]) == 0
    result = json.loads(out.getvalue())
    assert result["machine"]["engine_channel_skip"] == 0
    for s in result["steps"]:
        assert s["flops"]["async_sparse"] == s["flops_full_rows"]
        assert s["correctness"]["relative_difference"] < 1e-4
    for bad in ("1.5", "-0.1", "half"):
        with pytest.raises(SystemExit):
            main(["bench", "async", "--quick", "--channel-skip", bad])
        assert "between 0 and 1" in capsys.readouterr().err
    assert main(["bench", "repr", "--quick", "--channel-skip", "0.5"]) == 2
    assert "--channel-skip applies to 'evstream bench async'" in capsys.readouterr().err


def test_short_source_is_an_error(tmp_path, rng, capsys):
    path = tmp_path / "short.raw"
    write_events(path, random_events(rng, 3000, 346, 260), 346, 260)
    assert main(["bench", "async", "--quick", "--source", str(path)]) == 1
    assert "needs at least" in capsys.readouterr().err


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--help"])
    assert exc.value.code == 0
    assert "async" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["bench", "async", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--json" in out and "--quick" in out and "--source" in out
    with pytest.raises(SystemExit) as exc:
        main(["bench", "nonsense"])
    assert exc.value.code == 2
    capsys.readouterr()


def test_synthetic_stream_is_deterministic():
    a, w, h = synthetic_stream(3000, seed=1)
    b, _, _ = synthetic_stream(3000, seed=1)
    assert (w, h) == (346, 260) and len(a) >= 3000
    for field in ("x", "y", "t", "p"):  # (field by field: the dtype's padding bytes are undefined)
        np.testing.assert_array_equal(a[field], b[field])
    assert a["x"].max() < w and a["y"].max() < h and set(np.unique(a["p"])) == {0, 1}


def test_sliding_histogram_reports_exactly_the_changes(rng):
    ev = random_events(rng, 2000, 40, 30)
    rows, cols, chans = to_grid(ev, 40, 30, 9, 11)
    assert rows.max() < 9 and cols.max() < 11
    window = 300
    sh = SlidingHistogram(rows, cols, chans, (2, 9, 11), window)
    for step in (1, 1, 7, 50, 200):
        before = sh.hist.copy()
        sites, values = sh.advance(step)
        expected = np.zeros((2, 9, 11), np.float32)
        a = sh.start
        np.add.at(expected, (chans[a : a + window], rows[a : a + window], cols[a : a + window]), 1)
        np.testing.assert_array_equal(sh.hist, expected)
        changed = np.argwhere((before != expected).any(axis=0))
        np.testing.assert_array_equal(sites, changed)  # np.unique sorts by row, then column
        np.testing.assert_array_equal(values, expected[:, sites[:, 0], sites[:, 1]].T)
        assert values.dtype == np.float32 and values.flags.c_contiguous
