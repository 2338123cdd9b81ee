"""Faults (issue #9): a consumer slower than its producer loses exactly what the drop policy says
and counts it; a recording that fails mid-replay ends the run with a clear error and a summary."""

from __future__ import annotations

import errno
import json
import time

import numpy as np

from conftest import random_events
from evstream.replay import write_events
from evstream.runtime.pipeline import Pipeline, RunConfig
from evstream.runtime.sources import FileSource
from evstream.runtime.windows import TimeWindowSpec


def test_slow_consumer_loses_exactly_what_it_reports(tmp_path, rng):
    ev = random_events(rng, 400_000, 64, 48, max_dt=2)
    ev["t"] = np.arange(len(ev))  # unique timestamps: every event is identifiable
    path = tmp_path / "r.npz"
    write_events(path, ev, 64, 48)
    seen = []

    def slow(result):
        time.sleep(0.002)  # a consumer slower than the replay

    spec = TimeWindowSpec(5_000)  # disjoint windows: each processed event enters exactly once
    pipeline = Pipeline(
        FileSource(path, speed=None),
        RunConfig(window=spec, ring_capacity=1 << 14, policy="drop-oldest", pop_events=4096),
        on_window=slow,
    )
    original = pipeline._finish_window

    def record(step, hist, summary):
        seen.append(step.enter["t"].copy())
        original(step, hist, summary)

    pipeline._finish_window = record
    s = pipeline.run()
    got = np.concatenate(seen)
    assert s.events_dropped > 0  # the policy had to drop
    assert s.events_in == len(ev) == s.events_processed + s.events_dropped + s.events_unprocessed
    assert s.events_unprocessed == 0 and len(got) == s.events_processed
    # what was processed is the stream in order with exactly `dropped` events missing
    assert np.all(np.diff(got) > 0) and np.isin(got, ev["t"]).all()
    assert len(ev) - len(got) == s.events_dropped


def test_recording_failing_mid_replay_ends_with_error_and_summary(tmp_path, rng, monkeypatch, capsys):
    import evstream.replay as replay
    from evstream.runtime.cli import main

    path = tmp_path / "r.raw"
    write_events(path, random_events(rng, 200_000, 64, 48, max_dt=5), 64, 48)
    real_open = replay.open_events

    def failing_open(*args, **kwargs):
        reader = real_open(*args, **kwargs)
        blocks = reader.blocks

        def blocks_then_fail():
            chunks = (b[i : i + 10_000] for b in blocks() for i in range(0, len(b), 10_000))
            for i, chunk in enumerate(chunks):
                if i == 3:  # the disk goes away after 30,000 events
                    raise OSError(errno.EIO, "Input/output error", str(path))
                yield chunk

        reader.blocks = blocks_then_fail
        reader.time_windows = lambda *a, **k: blocks_then_fail()
        return reader

    monkeypatch.setattr(replay, "open_events", failing_open)
    summary = tmp_path / "s.json"
    code = main(["run", "--source", str(path), "--speed", "max", "--summary-json", str(summary)])
    out, err = capsys.readouterr()
    assert code == 1
    assert "error: OSError" in err and "Input/output error" in err and str(path) in err
    assert "events in" in out  # the summary line is printed all the same
    s = json.loads(summary.read_text())
    assert s["error"].startswith("OSError") and 0 < s["events_processed"] < 200_000
    assert s["events_in"] == s["events_processed"] + s["events_dropped"] + s["events_unprocessed"]
