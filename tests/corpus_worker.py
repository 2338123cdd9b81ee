"""Reads every file of the bad-input corpus in a child process with its address space capped and a
watchdog against hangs (run by tests/test_corpus.py; usage: corpus_worker.py CORPUS_DIR LIMIT_MB
TIMEOUT_S). Prints one JSON line per file and reader: the outcome, never a traceback; an
exception that is not an EventFileError is reported as such (the test fails on it), a crash or a
hang ends the process (the test names the file from the last "start" line)."""

from __future__ import annotations

import faulthandler
import json
import resource
import sys
from pathlib import Path

import numpy as np

from evstream.replay import EventFileError, open_events


def _vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


KEEP = 1 << 17  # events kept for the comparisons (the rest are only counted and checked)


def _read(path: Path, fmt: str | None) -> tuple[dict, np.ndarray | None]:
    try:
        with open_events(path, format=fmt) as reader:
            kept, n, inside = [], 0, True
            for chunk in reader.chunks(1 << 12):
                if len(chunk):
                    inside &= int(chunk["x"].max()) < reader.width and int(chunk["y"].max()) < reader.height
                    inside &= int(chunk["p"].max()) <= 1
                    if n < KEEP:
                        kept.append(chunk)
                n += len(chunk)
            out = {"result": "events", "events": n, "in_bounds": bool(inside)}
            out.update(width=reader.width, height=reader.height, counters=dict(reader.counters))
            return out, (np.concatenate(kept)[:KEEP] if kept else None)
    except EventFileError as exc:
        return {"result": "error", "error": exc.reason}, None
    except MemoryError:
        return {"result": "MemoryError"}, None
    except Exception as exc:  # noqa: BLE001 - the test fails on any of these
        return {"result": f"{type(exc).__name__}", "error": str(exc)[:300]}, None


def main() -> None:
    corpus, limit_mb, timeout_s = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    entries = json.loads((corpus / "MANIFEST.json").read_text())
    import h5py  # noqa: F401 - imported before the cap, as every reader's own imports

    import evstream.replay.aedat4  # noqa: F401
    import evstream.replay.hdf5  # noqa: F401

    cap = _vm_bytes() + limit_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    seeds: dict[str, np.ndarray | None] = {}
    for entry in entries:
        for mode, fmt in (("forced", entry["format"]), ("detected", None)):
            print(json.dumps({"start": entry["file"], "mode": mode}), flush=True)
            faulthandler.dump_traceback_later(timeout_s, exit=True)
            out, ev = _read(corpus / entry["file"], fmt)
            seed = entry.get("seed")
            if out["result"] == "events" and seed:
                if seed not in seeds:
                    seeds[seed] = _read(corpus / seed, entry["format"])[1]
                ref = seeds[seed]
                # the events read are the original recording's first events, unchanged
                out["prefix"] = ev is None or (
                    ref is not None and len(ev) <= len(ref) and bool(np.all(ev == ref[: len(ev)]))
                )
            faulthandler.cancel_dump_traceback_later()
            print(json.dumps({"file": entry["file"], "mode": mode, **out}), flush=True)
    print(json.dumps({"done": True}), flush=True)


if __name__ == "__main__":
    main()
