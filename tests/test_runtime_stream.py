"""Wire format validation, sources, the pipeline and evstream run / publish on loopback."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import free_port, random_events
from evstream.kernels.events import EVENT_DTYPE
from evstream.runtime import wire
from evstream.runtime.cli import main
from evstream.runtime.pipeline import Pipeline, RunConfig
from evstream.runtime.sources import FileSource
from evstream.runtime.windows import CountWindowSpec, TimeWindowSpec

DATA = Path(__file__).parent / "data"


def _main_on_a_thread(argv: list[str]) -> tuple[threading.Thread, dict]:
    """Starts ``main(argv)`` on a thread (a subscriber waiting for a publisher); the returned dict
    gets its exit code as ``"rc"``."""
    result: dict = {}
    th = threading.Thread(target=lambda: result.update(rc=main(argv)))
    th.start()
    return th, result


# --------------------------------------------------------------------------- wire format
def test_wire_roundtrip_and_foreign_layout(rng):
    ev = random_events(rng, 100, 64, 48)
    msg = wire.decode([bytes(f) for f in wire.encode_events(ev, "s1", 3, 300, 64, 48)])
    assert (msg.kind, msg.stream, msg.seq, msg.first) == ("events", "s1", 3, 300)
    assert np.array_equal(msg.events, ev)
    # A producer in another language may send packed 13-byte records, big-endian t.
    packed = np.dtype(
        {
            "names": ["t", "x", "y", "p"],
            "formats": [">i8", "<u2", "<u2", "u1"],
            "offsets": [0, 8, 10, 12],
            "itemsize": 13,
        }
    )
    raw = np.empty(len(ev), packed)
    for f in ("x", "y", "t", "p"):
        raw[f] = ev[f]
    header = {
        "proto": "evstream",
        "version": 1,
        "kind": "events",
        "stream": "c",
        "seq": 0,
        "first": 0,
        "count": len(ev),
        "width": 64,
        "height": 48,
        "itemsize": 13,
        "fields": [["t", ">i8", 0], ["x", "<u2", 8], ["y", "<u2", 10], ["p", "|u1", 12]],
    }
    msg = wire.decode([json.dumps(header).encode(), raw.tobytes()])
    assert msg.events.dtype == EVENT_DTYPE and np.array_equal(msg.events, ev)


def _header(**kw):
    h = {
        "proto": "evstream",
        "version": 1,
        "kind": "events",
        "stream": "s",
        "seq": 0,
        "first": 0,
        "count": 1,
        "width": 64,
        "height": 48,
        "itemsize": 16,
        "fields": [["x", "<u2", 0], ["y", "<u2", 2], ["t", "<i8", 8], ["p", "|u1", 4]],
    }
    h.update(kw)
    return json.dumps(h).encode()


@pytest.mark.parametrize(
    "frames,message",
    [
        ([b"{not json", b""], "not UTF-8 JSON"),
        ([_header(version=2), bytes(16)], "unsupported wire version"),
        ([_header(count=2), bytes(16)], "payload has 16 bytes"),
        ([_header(count=1 << 40), b""], "'count' must be an integer"),
        ([_header(kind="frames"), bytes(16)], "unknown message kind"),
        ([_header(fields=[["x", "<f4", 0]]), bytes(16)], "four fields"),
        (
            [
                _header(fields=[["x", "<u2", 15], ["y", "<u2", 2], ["t", "<i8", 8], ["p", "|u1", 4]]),
                bytes(16),
            ],
            "does not fit",
        ),
        ([_header()], "expected 2 frames"),
        ([b'{"proto": "other"}', b""], "not an evstream message"),
    ],
)
def test_wire_rejects_malformed_messages(frames, message):
    with pytest.raises(wire.WireError, match=message):
        wire.decode(frames)


def test_wire_drops_events_outside_the_sensor(rng):
    ev = random_events(rng, 10, 64, 48)
    ev["x"][3] = 64
    msg = wire.decode([bytes(f) for f in wire.encode_events(ev, "s", 0, 0, 64, 48)])
    assert len(msg.events) == 9 and msg.dropped_out_of_bounds == 1


# --------------------------------------------------------------------------- sources and pipeline
def test_file_source_paces_by_timestamps(recording):
    path, ev = recording
    span_s = (int(ev["t"][-1]) - int(ev["t"][0])) * 1e-6
    src = FileSource(path, speed=0.5)
    start = time.perf_counter()
    got = np.concatenate(list(src.batches()))
    elapsed = time.perf_counter() - start
    assert np.array_equal(got, ev)
    assert elapsed >= span_s / 0.5 * 0.9  # never faster than asked (a lower bound only)


def test_file_source_loops_with_increasing_time(recording):
    path, ev = recording
    src = FileSource(path, speed=None, loop=True)
    got = []
    for batch in src.batches():
        got.append(batch)
        if sum(map(len, got)) >= 3 * len(ev):
            src.stop()
    t = np.concatenate(got)["t"]
    assert len(t) >= 3 * len(ev) and np.all(np.diff(t) >= 0)


@pytest.mark.parametrize("window", [TimeWindowSpec(1000, 500), CountWindowSpec(2000, 1000)])
def test_pipeline_processes_every_event(recording, window):
    path, ev = recording
    results = []
    summary = Pipeline(
        FileSource(path, speed=None), RunConfig(window=window, ring_capacity=4096), on_window=results.append
    ).run()
    d = summary.to_dict()
    assert d["events_in"] == d["events_processed"] == len(ev) and d["events_dropped"] == 0
    assert d["windows"] == len(results) > 0 and d["error"] is None
    assert all(r["latency_ms"] is None or r["latency_ms"] >= 0 for r in results)
    assert d["latency_ms_p50"] is not None


# --------------------------------------------------------------------------- CLI, loopback ZeroMQ
def test_run_cli_on_a_recording(recording, tmp_path, capsys):
    path, ev = recording
    out, pred = tmp_path / "summary.json", tmp_path / "pred.jsonl"
    rc = main(
        [
            "run",
            "--source",
            str(path),
            "--speed",
            "max",
            "--window-us",
            "2000",
            "--summary-json",
            str(out),
            "--predictions",
            str(pred),
        ]
    )
    assert rc == 0
    s = json.loads(out.read_text())
    for key in (
        "events_in",
        "events_processed",
        "events_dropped",
        "windows",
        "latency_ms_p50",
        "latency_ms_p99",
        "wall_s",
    ):
        assert key in s
    assert s["events_processed"] == len(ev)
    lines = pred.read_text().splitlines()
    assert len(lines) == s["windows"] and sum(json.loads(x)["entered"] for x in lines) == len(ev)
    assert "windows" in capsys.readouterr().out


def test_publish_then_run_over_loopback(recording, tmp_path):
    path, ev = recording
    url = f"tcp://127.0.0.1:{free_port()}"
    out = tmp_path / "summary.json"
    th, result = _main_on_a_thread(["run", "--source", url, "--summary-json", str(out), "-q"])
    time.sleep(0.3)
    assert main(["publish", str(path), "--to", url, "--speed", "max", "--delay", "1.0", "-q"]) == 0
    th.join(timeout=30)
    assert result["rc"] == 0
    s = json.loads(out.read_text())
    assert s["events_processed"] == len(ev) and s["events_dropped"] == 0
    assert s["source_stats"]["malformed"] == 0


def test_run_without_publisher_fails_clearly(capsys):
    rc = main(["run", "--source", f"tcp://127.0.0.1:{free_port()}", "--connect-timeout", "0.3", "-q"])
    assert rc == 1
    assert "no evstream message" in capsys.readouterr().err


def test_run_help_lists_options(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for opt in ("--source", "--speed", "--loop", "--summary-json", "--predictions", "--publish", "--follow"):
        assert opt in out


def test_zmq_source_survives_malformed_messages_restarts_and_gaps(rng):
    import zmq

    from evstream.runtime.zmq_source import ZmqSource

    url = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.bind(url)
    ev = random_events(rng, 300, 64, 48)
    got = []

    def send_all():
        time.sleep(0.5)  # let the subscriber connect
        pub.send_multipart(wire.encode_events(ev[:100], "a", 0, 0, 64, 48))
        pub.send_multipart([b"{garbage", b"x"])  # malformed: counted, skipped
        pub.send_multipart([_header(count=5), bytes(16)])  # size mismatch
        pub.send_multipart(wire.encode_events(ev[100:150], "a", 2, 150, 64, 48))  # 50 events lost
        # a restarted publisher whose first 20 events did not arrive: lost too
        pub.send_multipart(wire.encode_events(ev[150:300], "b", 0, 20, 64, 48))
        pub.send_multipart(wire.encode_eos("b", 1, 170, 64, 48))

    th = threading.Thread(target=send_all)
    th.start()
    src = ZmqSource(url, first_message_timeout_s=10)
    for batch in src.batches():
        got.append(batch)
    th.join()
    src.close()
    pub.close(linger=0)
    assert np.array_equal(np.concatenate(got), np.concatenate([ev[:100], ev[100:150], ev[150:300]]))
    stats = src.stats()
    assert stats["malformed"] == 2 and stats["gap_events"] == 50 + 20 and stats["restarts"] == 1
    assert stats["joined_after_events"] == 0


def test_zmq_source_counts_a_running_stream_it_joined_late(rng, tmp_path):
    import zmq

    from evstream.runtime.zmq_source import ZmqSource

    url = f"ipc://{tmp_path / 'late.sock'}"
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.bind(url)
    ev = random_events(rng, 40, 64, 48)

    def send():  # (a PUSH socket waits for its peer)
        push.send_multipart(wire.encode_events(ev[30:], "s", 3, 30, 64, 48))  # events 0..29 went before
        push.send_multipart(wire.encode_eos("s", 4, 40, 64, 48))

    th = threading.Thread(target=send)
    th.start()
    src = ZmqSource(url, pattern="pull", first_message_timeout_s=10)
    got = np.concatenate(list(src.batches()))
    th.join(timeout=10)
    src.close()
    push.close(linger=0)
    assert np.array_equal(got, ev[30:])
    stats = src.stats()
    assert stats["joined_after_events"] == 30 and stats["gap_events"] == 0


def test_dv_camera_missing_gives_a_clear_error(capsys):
    pytest.importorskip("dv_processing")
    from evstream.runtime.cli import main

    assert main(["run", "--source", "dv:", "-q"]) == 1  # no iniVation camera on a test machine
    err = capsys.readouterr().err
    assert "dv:" in err and ("no iniVation camera" in err or "cannot open" in err)
    assert "Traceback" not in err


def test_metavision_without_sdk_gives_a_clear_error(capsys):
    pytest.importorskip("numpy")
    try:
        import metavision_core  # noqa: F401

        pytest.skip("the Metavision SDK is installed here")
    except ImportError:
        pass
    assert main(["run", "--source", "metavision:", "-q"]) == 1
    assert "Metavision SDK" in capsys.readouterr().err


_DV_LOOPBACK = """
import sys, threading
import numpy as np
import dv_processing as dv
from evstream.kernels.events import make_events
from evstream.runtime.sensor_sources import DvSource
port = int(sys.argv[1])
stream = dv.io.Stream.EventStream(0, "events", "evstream-test", (64, 48))
writer = dv.io.NetworkWriter("127.0.0.1", port, stream)
src = DvSource(f"dv-net://127.0.0.1:{port}")
assert (src.width, src.height) == (64, 48)
rng = np.random.default_rng(1)
n = 500
t = 1_000_000 + np.arange(n) * 7
ev = make_events(rng.integers(0, 64, n), rng.integers(0, 48, n), t, rng.integers(0, 2, n))
store = dv.EventStore()
for e in ev:
    store.push_back(int(e["t"]), int(e["x"]), int(e["y"]), bool(e["p"]))
writer.writeEvents(store)
threading.Timer(10, src.stop).start()
got = []
for batch in src.batches():
    got.append(batch)
    if sum(map(len, got)) >= n:
        src.stop()
print("equal", np.array_equal(np.concatenate(got), ev), flush=True)
"""


def test_dv_network_stream_on_loopback():
    """DvSource against dv-processing's own NetworkWriter, in a child process (dv-processing's
    network objects can stall interpreter shutdown; the child is killed after its answer)."""
    pytest.importorskip("dv_processing")
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", _DV_LOOPBACK, str(free_port())], stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert line.strip() == "equal True"


def test_ctrl_c_ends_run_with_a_summary(recording, tmp_path):
    import signal
    import subprocess
    import sys

    path, _ = recording
    out = tmp_path / "s.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "evstream.runtime.cli",
            "run",
            "--source",
            str(path),
            "--loop",
            "--speed",
            "1",
            "--summary-json",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.0)
    # On a fresh machine the first start-up can be slow enough that a Ctrl-C lands before the run
    # loop; like a user, press it again until the run ends (at most 60 s).
    stdout = stderr = None
    for _ in range(30):
        proc.send_signal(signal.SIGINT)
        try:
            stdout, stderr = proc.communicate(timeout=2)
            break
        except subprocess.TimeoutExpired:
            continue
    if stdout is None:
        proc.kill()  # and close its pipes, so nothing leaks into later tests
        stdout, stderr = proc.communicate()
        pytest.fail(f"run did not end within 60 s of Ctrl-C; stderr:\n{stderr[-3000:]}")
    assert proc.returncode == 130, stderr[-3000:]
    assert "windows" in stdout
    s = json.loads(out.read_text())
    assert s["error"] == "interrupted" and s["events_processed"] > 0


def test_follow_survives_end_of_stream_and_a_restarted_publisher(recording, tmp_path):
    path, ev = recording
    url = f"tcp://127.0.0.1:{free_port()}"
    out = tmp_path / "s.json"
    th, result = _main_on_a_thread(
        ["run", "--source", url, "--follow", "--max-seconds", "6", "--summary-json", str(out), "-q"]
    )
    time.sleep(0.3)
    for _ in range(2):  # the same publisher address, twice: two sessions, each ending with EOS
        assert main(["publish", str(path), "--to", url, "--speed", "max", "--delay", "1.0", "-q"]) == 0
    th.join(timeout=30)
    assert result["rc"] == 0
    s = json.loads(out.read_text())
    assert s["events_processed"] == 2 * len(ev)
    assert s["source_stats"]["restarts"] == 1 and s["events_dropped"] == 0


def test_results_published_on_zeromq(recording):
    import zmq

    path, _ = recording
    url = f"tcp://127.0.0.1:{free_port()}"
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(url)
    got = []

    def listen():
        while sub.poll(3000):
            got.append(json.loads(sub.recv_string()))

    th = threading.Thread(target=listen)
    th.start()
    assert main(["run", "--source", str(path), "--speed", "0.5", "--publish", url, "-q"]) == 0
    th.join()
    sub.close(linger=0)
    assert got and all("window" in r and "latency_ms" in r for r in got)


def test_publish_then_run_over_ipc_push_pull(recording, tmp_path):
    path, ev = recording
    url = f"ipc://{tmp_path / 'events.sock'}"
    out = tmp_path / "summary.json"
    th, result = _main_on_a_thread(
        ["run", "--source", url, "--zmq", "pull", "--summary-json", str(out), "-q"]
    )
    assert (
        main(["publish", str(path), "--to", url, "--zmq", "push", "--speed", "max", "--delay", "0", "-q"])
        == 0
    )
    th.join(timeout=30)
    assert result["rc"] == 0
    s = json.loads(out.read_text())
    assert s["events_processed"] == len(ev) and s["events_dropped"] == 0


def test_publishing_a_file_that_breaks_part_way_still_ends_the_stream(tmp_path):
    # A recording cut in the middle of a packet: the publisher fails with the file's error, and the
    # subscriber ends with the events it received instead of waiting for ever.
    from evstream.replay import EventFileError

    path = tmp_path / "cut.aedat4"
    path.write_bytes((DATA / "davis346_aestream.aedat4").read_bytes()[:800_000])
    url = f"ipc://{tmp_path / 'events.sock'}"
    out = tmp_path / "summary.json"
    th, result = _main_on_a_thread(
        ["run", "--source", url, "--zmq", "pull", "--no-model", "--summary-json", str(out), "-q"]
    )
    with pytest.raises(EventFileError, match="past the end of the file"):
        from evstream.runtime.publish import publish

        publish(FileSource(path, speed=None), url, pattern="push", delay_s=0)
    th.join(timeout=30)
    assert not th.is_alive() and result["rc"] == 0
    assert json.loads(out.read_text())["events_processed"] > 0


def test_reader_damage_is_reported_and_summed_over_loop_passes(tmp_path, capsys):
    txt = DATA / "evlib_event.txt"  # 17 events, 11 outside a 100x100 sensor
    out = tmp_path / "s.json"
    args = ["run", "--source", str(txt), "--sensor", "100x100", "--speed", "max", "--no-model"]
    assert main([*args, "--summary-json", str(out)]) == 0
    assert "stream: 11 events outside the sensor dropped in the recording" in capsys.readouterr().err
    assert json.loads(out.read_text())["source_stats"]["reader"]["out_of_bounds"] == 11
    src = FileSource(txt, speed=None, loop=True, sensor_size=(100, 100))
    seen = 0
    for batch in src.batches():
        seen += len(batch)
        if seen == 4 * 6:  # four passes of 6 events (the fourth's last skipped lines may be unread)
            break
    assert 3 * 11 <= src.reader_counters["out_of_bounds"] <= 4 * 11  # (one pass's count before)
    url = f"tcp://127.0.0.1:{free_port()}"
    assert (
        main(["publish", str(txt), "--sensor", "100x100", "--to", url, "--delay", "0", "--speed", "max"]) == 0
    )
    assert "11 events outside the sensor dropped in the recording" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--source", "x.npz", "--ring", str(1 << 40)], "argument --ring: at most"),
        (["run", "--source", "x.npz", "--max-seconds", "-1"], "argument --max-seconds"),
        (["run", "--source", "x.npz", "--connect-timeout", "nan"], "argument --connect-timeout"),
        (["publish", "x.npz", "--delay", "-1"], "argument --delay"),
    ],
)
def test_bad_numbers_are_usage_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--stride-events", "5"], "--stride-events goes with --window-events"),
        (["--window-events", "100", "--window-us", "5000"], "--window-us (time windows) contradict"),
        (["--window-events", "100", "--stride-us", "50", "--trailing"], "--stride-us, --trailing (time"),
        (["--window-us", "5000", "--stride-events", "3"], "--stride-events goes with --window-events"),
    ],
)
def test_window_options_that_contradict_are_usage_errors(extra, message, capsys):
    src = DATA / "nmnist_digit7.bs2"
    assert main(["run", "--source", str(src), "--no-model", "-q", *extra]) == 2
    assert message in capsys.readouterr().err


def test_tcp_ports_out_of_range_are_refused(tmp_path, capsys):
    src = DATA / "nmnist_digit7.bs2"
    assert main(["publish", str(src), "--to", "tcp://127.0.0.1:99999", "--delay", "0"]) == 1
    assert (
        "cannot bind tcp://127.0.0.1:99999: the port must be a number from 1 to 65535"
        in capsys.readouterr().err
    )
    assert main(["run", "--source", "tcp://127.0.0.1:0", "--connect-timeout", "1"]) == 1
    assert "cannot connect to tcp://127.0.0.1:0: the port must be" in capsys.readouterr().err


def test_unwritable_summary_path_fails_before_the_run(tmp_path, capsys):
    src = DATA / "nmnist_digit7.bs2"
    assert main(["run", "--source", str(src), "--summary-json", str(tmp_path / "no" / "s.json")]) == 1
    err = capsys.readouterr()
    assert "no such file or directory" in err.err and "events in" not in err.out


# --------------------------------------------------------------------------- gaps in a recording's timestamps
def test_time_slices_split_by_time_without_empty_parts(rng):
    from evstream.runtime.sources import time_slices

    ev = random_events(rng, 5000, 64, 48, max_dt=40)
    ev["t"][2500:] += 10**12  # a jump of 11 days: one boundary, no empty parts in between
    parts = list(time_slices(ev, 1000))
    assert np.array_equal(np.concatenate(parts), ev)
    assert all(len(p) for p in parts)
    slices = [np.unique(p["t"] // 1000) for p in parts]
    assert all(len(s) == 1 for s in slices)  # sorted input: each part within one slice ...
    assert np.all(np.diff([s[0] for s in slices]) > 0)  # ... and the slices increase
    # an out-of-order earlier event stays in the part it arrived in
    late = np.zeros(4, EVENT_DTYPE)
    late["t"] = [5, 1500, 900, 2100]
    assert [len(p) for p in time_slices(late, 1000)] == [1, 2, 1]
    assert list(time_slices(late[:0], 1000)) == []
    # a damaged timestamp (a jump out and back) is a part of its own when jumps are limited; the
    # events after it start afresh instead of joining it
    spiky = np.zeros(6, EVENT_DTYPE)
    spiky["t"] = [10, 1100, 2**40, 1200, 2300, 2400]
    assert [list(p["t"]) for p in time_slices(spiky, 1000, jump_us=10**6)] == [
        [10],
        [1100],
        [2**40],
        [1200],
        [2300, 2400],
    ]
    assert [len(p) for p in time_slices(spiky, 1000)] == [1, 1, 4]  # unlimited: the old rule
    with pytest.raises(ValueError, match="slice_us must be positive"):
        next(time_slices(late, 0))


def test_pacer_skips_long_gaps_both_ways_and_waits_through_short_ones():
    from evstream.runtime.sources import Pacer

    stop = threading.Event()
    pacer = Pacer(1.0, stop, max_gap_s=100)
    assert pacer.wait(0)
    start = time.perf_counter()
    assert pacer.wait(3600 * 10**6)  # an hour later in the recording: not waited for
    assert pacer.wait(10**6, first_us=1000)  # and back (a damaged timestamp): re-anchored there
    assert time.perf_counter() - start < 5.0  # (a bound for a hang, not a timing)
    assert (pacer.gaps_skipped, pacer.gap_seconds_skipped) == (2, 3600.0 + 3599.999)
    # a gap up to max_gap_s (here 90 s) is waited through: this wait ends through the stop
    done = []
    waiter = threading.Thread(target=lambda: done.append(pacer.wait(91 * 10**6)))
    waiter.start()
    time.sleep(0.2)
    assert not done
    stop.set()
    pacer.wake()
    waiter.join(5.0)
    assert done == [False] and pacer.gaps_skipped == 2
    with pytest.raises(ValueError, match="positive seconds"):
        Pacer(1.0, stop, max_gap_s=0)


def _replay(src: FileSource, timeout_s: float = 60.0) -> tuple[np.ndarray, float]:
    """All events of a replay and its wall time, failing (not hanging) after ``timeout_s``."""
    got = []
    start = time.perf_counter()
    worker = threading.Thread(target=lambda: got.extend(src.batches()), daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        src.stop()
        pytest.fail(f"the replay took more than {timeout_s} s")
    return np.concatenate(got), time.perf_counter() - start


def test_replay_skips_a_huge_timestamp_jump(tmp_path, rng):
    # Before, a paced replay stepped through every empty millisecond of the jump (about 10^9 of
    # them here) and then waited for it in real time.
    from evstream.replay import write_events

    ev = random_events(rng, 4000, 64, 48, max_dt=5)
    ev["t"][2000:] += 2**40
    path = tmp_path / "jump.npz"
    write_events(path, ev, 64, 48)
    src = FileSource(path, speed=1.0)
    got, _ = _replay(src)
    assert np.array_equal(got, ev)
    stats = src.stats()
    assert stats["gaps_skipped"] == 1 and stats["gap_seconds_skipped"] > 1e6


@pytest.mark.parametrize("damage", ["spike", "reset"])
def test_replay_stays_paced_after_damaged_timestamps(tmp_path, rng, damage):
    # One event stamped far in the future, or the clock starting again from zero halfway: the
    # rest of the recording is still paced (before, it was raced through: its times were due).
    from evstream.replay import write_events

    ev = random_events(rng, 20_000, 64, 48, max_dt=100)  # about 1 s
    half = len(ev) // 2
    if damage == "spike":
        ev["t"][half] = 2**40
    else:
        ev["t"][half:] -= ev["t"][half] - ev["t"][0]
    path = tmp_path / "damaged.npz"
    write_events(path, ev, 64, 48)
    src = FileSource(path, speed=2.0, max_gap_s=0.2)
    got, elapsed = _replay(src)
    assert np.array_equal(got, ev)
    assert src.stats()["gaps_skipped"] == (2 if damage == "spike" else 1)
    paced_s = (
        (int(ev["t"][half - 1]) - int(ev["t"][0]) + int(ev["t"][-1]) - int(ev["t"][half + 1])) * 1e-6 / 2.0
    )
    assert elapsed >= 0.9 * paced_s  # never faster than asked (a lower bound only)


def test_max_gap_option(tmp_path, rng, capsys):
    from evstream.replay import write_events

    ev = random_events(rng, 3000, 64, 48, max_dt=5)
    ev["t"][1500:] += 60 * 10**6  # a minute without events
    path = tmp_path / "gap.npz"
    write_events(path, ev, 64, 48)
    for bad in ("0", "-1", "soon"):
        with pytest.raises(SystemExit) as exc:
            main(["run", "--source", str(path), "--max-gap", bad])
        assert exc.value.code == 2
        assert "--max-gap" in capsys.readouterr().err
    summary = tmp_path / "summary.json"
    code = main(
        ["run", "--source", str(path), "--no-model", "--max-gap", "2", "--summary-json", str(summary)]
    )
    assert code == 0
    stats = json.loads(summary.read_text())["source_stats"]
    assert stats["gaps_skipped"] == 1 and stats["gap_seconds_skipped"] > 59
    assert (
        "stream: 1 gap in the recording's timestamps longer than --max-gap skipped" in capsys.readouterr().err
    )
    url = f"tcp://127.0.0.1:{free_port()}"
    assert main(["publish", str(path), "--to", url, "--max-gap", "2", "--delay", "0"]) == 0
    assert (
        "1 gap in the recording's timestamps longer than --max-gap skipped (60.0 s)"
        in capsys.readouterr().err
    )
