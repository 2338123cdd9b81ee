"""The format registry: names, readers, writers, file extensions and content detection.

Formats are detected from content (magic bytes, headers) first; the extension is used only for
formats without a signature (N-MNIST ``.bin``) or to break ties.
"""

from __future__ import annotations

import errno
import importlib
import os
import stat

from .errors import EventFileError, UnknownFormatError

#: format name -> (module in evstream.replay, reader class, description)
READERS = {
    "evt2": ("prophesee", "RawReader", "Prophesee RAW, EVT 2.0"),
    "evt21": ("prophesee", "RawReader", "Prophesee RAW, EVT 2.1"),
    "evt3": ("prophesee", "RawReader", "Prophesee RAW, EVT 3.0"),
    "dat": ("prophesee", "DatReader", "Prophesee DAT (CD events)"),
    "bin": ("atis_bin", "BinReader", "N-MNIST / N-Caltech101 40-bit binary (.bin, .bs2)"),
    "npz": ("npz", "NpzReader", "N-ImageNet .npz"),
    "aedat4": ("aedat4", "Aedat4Reader", "iniVation AEDAT 4.0"),
    "aedat2": ("aedat_legacy", "Aedat2Reader", "jAER AEDAT 2.0"),
    "aedat3": ("aedat_legacy", "Aedat31Reader", "jAER / libcaer AEDAT 3.1"),
    "hdf5": ("hdf5", "Hdf5Reader", "HDF5: DSEC layout or plain x/y/t/p datasets"),
    "es": ("es", "EsReader", "Event Stream (.es)"),
    "txt": ("text", "TextReader", "text/CSV 't x y p' (Event Camera Dataset)"),
}

#: format name -> (module, writer class, keyword arguments)
WRITERS = {
    "evt3": ("prophesee", "RawWriter", {"encoding": "evt3"}),
    "evt2": ("prophesee", "RawWriter", {"encoding": "evt2"}),
    "dat": ("prophesee", "DatWriter", {}),
    "npz": ("npz", "NpzWriter", {}),
    "hdf5": ("hdf5", "DsecWriter", {}),
    "aedat4": ("aedat4", "Aedat4Writer", {}),
    "bin": ("atis_bin", "BinWriter", {}),
    "txt": ("text", "TextWriter", {}),
}

#: extension -> default writer format
WRITE_EXTENSIONS = {
    ".raw": "evt3",
    ".dat": "dat",
    ".npz": "npz",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".aedat4": "aedat4",
    ".bin": "bin",
    ".bs2": "bin",
    ".txt": "txt",
    ".csv": "txt",
}


def check_readable_file(path: str) -> None:
    """Raises the OSError a user expects for a missing path or a directory."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no such file", path) from None
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a recording", path)


def _load(module: str, name: str):
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)


def reader_class(fmt: str):
    """The reader class for a format name."""
    if fmt not in READERS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(sorted(READERS))}")
    module, name, _ = READERS[fmt]
    return _load(module, name)


def writer_for(path: str, fmt: str | None = None):
    """(writer class, kwargs, format) for writing ``path`` (format from ``fmt`` or the extension)."""
    if fmt is None:
        ext = os.path.splitext(path)[1].lower()
        if ext not in WRITE_EXTENSIONS:
            raise ValueError(
                f"{path}: cannot tell the output format from the extension {ext!r}; "
                f"use one of {', '.join(sorted(WRITE_EXTENSIONS))} "
                f"or pass a format ({', '.join(sorted(WRITERS))})"
            )
        fmt = WRITE_EXTENSIONS[ext]
    if fmt not in WRITERS:
        raise ValueError(f"no writer for format {fmt!r}; writable: {', '.join(sorted(WRITERS))}")
    module, name, kwargs = WRITERS[fmt]
    return _load(module, name), dict(kwargs), fmt


#: leading bytes -> format (checked in order)
_SIGNATURES = (
    (b"\x89HDF\r\n\x1a\n", "hdf5"),
    (b"PK\x03\x04", "npz"),
    (b"PK\x05\x06", "npz"),  # an empty zip archive
    (b"#!AER-DAT4", "aedat4"),
    (b"#!AER-DAT3", "aedat3"),
    (b"#!AER-DAT2", "aedat2"),
    (b"#!AER-DAT1", "aedat2"),
    (b"Event Stream", "es"),
)


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return False
    lines = [
        ln for ln in text.splitlines()[:-1] or text.splitlines() if ln.strip() and not ln.startswith("#")
    ]
    if not lines:
        return False
    for line in lines[:20]:
        fields = line.replace(",", " ").split()
        if len(fields) < 4:
            return False
        try:
            [float(f) for f in fields[:4]]
        except ValueError:
            return False
    return True


def detect_format(path: str | os.PathLike) -> str:
    """Returns the format name of a recording, from its content (and extension as a fallback)."""
    path = os.fspath(path)
    check_readable_file(path)
    from .base import read_head

    head, _ = read_head(path)
    ext = os.path.splitext(path)[1].lower()
    if not head:
        if ext in (".bin", ".bs2"):  # no header: an empty file is an empty recording
            return "bin"
        raise EventFileError(path, "file is empty")
    for magic, fmt in _SIGNATURES:
        if head.startswith(magic):
            return fmt
    if head.startswith(b"%"):
        from .base import split_header_bytes
        from .prophesee import parse_header, raw_encoding

        lines = split_header_bytes(head)
        header = parse_header(lines)
        enc = raw_encoding(header)
        if enc is not None:
            return enc
        if ext == ".dat" or any(k in header for k in ("Data", "Version", "Height", "Width")):
            return "dat"
        if ext == ".raw":
            raise UnknownFormatError(
                path, "RAW header names no event encoding; pass the format (evt2/evt21/evt3)"
            )
    if _looks_like_text(head):
        return "txt"
    if ext in (".bin", ".bs2"):
        return "bin"
    if ext == ".dat":
        return "dat"
    raise UnknownFormatError(path, "unrecognised event file format (no known signature or extension)")
