"""The crafted bad-input corpus (tests/data/corpus/, written by tests/make_corpus.py): zero-length
files, headers alone, recordings truncated at every packet boundary, bit flips, declared sizes of
gigabytes and terabytes, wrong compression flags, for every file format.

Every file is read with its format's reader and with format detection, in a child process whose
address space is capped at 512 MiB above what it had after importing the readers, with a 20 s
watchdog per file: no crash, no hang, no large allocation; every outcome is events (inside the
sensor; from a truncated recording, exactly its first events) or an EventFileError, and equals the
outcome recorded in MANIFEST.json. Then `evstream run` over every file ends with status 0 or 1 and
a message, never a traceback.
"""

from __future__ import annotations

import json

import pytest
from make_corpus import OUT as CORPUS
from make_corpus import outcome_key, run_worker

MANIFEST = json.loads((CORPUS / "MANIFEST.json").read_text())


@pytest.fixture(scope="module")
def outcomes() -> dict:
    rows = run_worker(CORPUS)
    return {(r["file"], r["mode"]): r for r in rows if "result" in r}


def test_manifest_lists_every_file():
    listed = {e["file"] for e in MANIFEST}
    assert listed == {p.name for p in CORPUS.iterdir()} - {"MANIFEST.json"}
    kinds = {e["damage"].split(" at ")[0].split(" of ")[0] for e in MANIFEST}
    for kind in ("zero-length file", "header only", "truncated", "compression flag lz4"):
        assert kind in kinds
    assert max(p.stat().st_size for p in CORPUS.iterdir() if p.suffix != ".json") < 64 << 10


@pytest.mark.parametrize("mode", ["forced", "detected"])
def test_every_file_gives_events_or_a_clear_error(outcomes, mode):
    problems = []
    for entry in MANIFEST:
        row = outcomes[(entry["file"], mode)]
        if row["result"] not in ("events", "error"):
            problems.append(f"{entry['file']}: {row['result']} {row.get('error', '')}")
        elif row["result"] == "events":
            if not row["in_bounds"]:
                problems.append(f"{entry['file']}: events outside the sensor")
            if entry["damage"].startswith(("truncated", "header only")) and not row["prefix"]:
                problems.append(f"{entry['file']}: not the recording's first events")
        if outcome_key(row) != entry[mode]:
            problems.append(f"{entry['file']}: {outcome_key(row)}, recorded {entry[mode]}")
    assert not problems, "\n".join(problems)


def test_declared_sizes_are_refused_not_allocated(outcomes):
    for name, words in [
        ("aedat4__packet_size_2GiB.aedat4", "impossible size"),
        ("aedat4__ioheader_size_4GiB.aedat4", "exceeds"),
        ("aedat3__event_number_2G.aedat", "corrupt packet header"),
        ("npz__shape_1T.npz", "declares 1000000000000"),
        ("hdf5__declared_1T_events.h5", "declares 1000000000000 events"),
        ("evt3__geometry_4G.raw", "implausible sensor size"),
        ("aedat4__flag_lz4_data_none.aedat4", "not an LZ4 frame"),
        ("aedat4__flag_zstd_data_none.aedat4", "not a Zstandard frame"),
    ]:
        row = outcomes[(name, "forced")]
        assert row["result"] == "error" and words in row["error"], (name, row)


def test_run_over_every_file_fails_cleanly(capsys):
    from evstream.runtime.cli import main

    problems = []
    for entry in MANIFEST:
        code = main(["run", "--source", str(CORPUS / entry["file"]), "--speed", "max", "-q", "--no-model"])
        err = capsys.readouterr().err
        if code not in (0, 1) or "Traceback" in err or (code == 1 and "error:" not in err):
            problems.append(f"{entry['file']}: exit {code}: {err[-300:]}")
    assert not problems, "\n".join(problems[:20])
    big = str(CORPUS / "evt3__geometry_65535.raw")
    assert main(["run", "--source", big, "--speed", "max", "-q", "--no-model"]) == 1
    assert "65535x65535 is too large" in capsys.readouterr().err
