"""Faults (issue #9): a consumer slower than its producer loses exactly what the drop policy says
and counts it; a recording that fails mid-replay ends the run with a clear error and a summary; a
ZeroMQ publisher process killed mid-stream and started again is picked up."""

from __future__ import annotations

import errno
import json
import time

import numpy as np

from conftest import free_port, random_events
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


def test_publisher_killed_and_restarted_mid_stream_is_picked_up(tmp_path, rng):
    """`evstream publish` in its own process is killed (SIGKILL) mid-recording and started again:
    the subscribed pipeline keeps running, picks up the new stream and ends with its end-of-stream;
    the summary counts the restart and the stream that never ended."""
    import signal
    import subprocess
    import sys
    import threading

    from evstream.runtime.zmq_source import ZmqSource

    slow, fast = tmp_path / "slow.npz", tmp_path / "fast.npz"
    a = random_events(rng, 30_000, 64, 48)
    a["t"] = np.arange(len(a)) * 2000  # 60 s of recording at real time: killed long before its end
    b = random_events(rng, 50_000, 64, 48, t0=10**8)
    write_events(slow, a, 64, 48)
    write_events(fast, b, 64, 48)
    url = f"tcp://127.0.0.1:{free_port()}"

    def publisher(path, *extra):
        cmd = [sys.executable, "-m", "evstream.runtime.cli", "publish", str(path), "--to", url, "-q", *extra]
        with open(tmp_path / f"{path.stem}.err", "w") as err:
            return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)

    first = publisher(slow)
    got_events = threading.Event()
    windows = []

    def on_window(result):
        windows.append(result)
        if result["entered"]:
            got_events.set()

    source = ZmqSource(url, first_message_timeout_s=60)
    pipeline = Pipeline(source, RunConfig(window=TimeWindowSpec(10_000)), on_window=on_window)
    result = {}
    runner = threading.Thread(target=lambda: result.update(summary=pipeline.run()))
    runner.start()
    second = None
    try:
        assert got_events.wait(60), "no events from the first publisher"
        time.sleep(0.5)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert first.returncode == -signal.SIGKILL
        second = publisher(fast, "--speed", "max")
        runner.join(120)
        assert not runner.is_alive(), "the pipeline did not end with the second publisher's stream"
        assert second.wait(30) == 0, (tmp_path / "fast.err").read_text()
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
        if runner.is_alive():
            pipeline.cancel()
            runner.join(10)
    s = result["summary"]
    stats = s.source_stats
    assert stats["restarts"] == 1 and stats["unended_streams"] == 1 and stats["malformed"] == 0
    from_first = s.events_processed - len(b)
    assert 0 < from_first < len(a)  # part of the killed stream, then all of the new one
    assert s.error is None and s.events_in == s.events_processed and s.events_dropped == 0
    assert sum(w["entered"] for w in windows) == s.events_processed
    from evstream.runtime.cli import _stream_notes

    notes = _stream_notes(s.to_dict())  # the lines `evstream run` prints after its summary
    assert "1 publisher restart" in notes
    assert "1 stream cut off without an end (its last events may be lost uncounted)" in notes
