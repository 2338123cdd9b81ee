"""Event Stream (``.es``, Neuromorphic Paris / sepia) recordings, version 2.x.

Header: ``b"Event Stream"``, version bytes (major, minor, patch; major must be 2), stream type
(0 generic, 1 DVS, 2 ATIS, 3 display, 4 color), then for DVS/ATIS/color the width and height as
uint16 little-endian; events start at byte 20. DVS and ATIS streams are supported (decoded in
C++); ATIS threshold-crossing events are not change events and are counted in ``other_words``.
Coordinates are returned as stored (Neuromorphic Paris tools put y = 0 at the bottom; no flip is
applied here). Timestamps are delta-encoded from 0 us.
"""

from __future__ import annotations

from ..kernels import _core
from .base import DecoderReader
from .errors import EventFileError

MAGIC = b"Event Stream"
_TYPES = {0: "generic", 1: "dvs", 2: "atis", 3: "display", 4: "color"}


class EsReader(DecoderReader):
    """Event Stream 2.x reader for DVS and ATIS streams."""

    format = "es"

    def __init__(self, path, sensor_size=None):
        super().__init__(path, sensor_size)
        head = self.head[:20]
        if not head.startswith(MAGIC):
            raise EventFileError(
                self.path, "not an Event Stream file (magic 'Event Stream' missing)", offset=0
            )
        if len(head) < 16:
            raise EventFileError(self.path, "file ends inside the header", offset=len(head))
        major, minor, patch, kind = head[12], head[13], head[14], head[15]
        self.version = f"{major}.{minor}.{patch}"
        if major != 2:
            raise EventFileError(
                self.path, f"Event Stream version {self.version} is not supported (need 2.x)", offset=12
            )
        self.stream_type = _TYPES.get(kind, f"unknown({kind})")
        if self.stream_type not in ("dvs", "atis"):
            raise EventFileError(
                self.path,
                f"Event Stream type {self.stream_type!r} holds no DVS events (need dvs or atis)",
                offset=15,
            )
        if len(head) < 20:
            raise EventFileError(self.path, "file ends inside the header", offset=len(head))
        width = int.from_bytes(head[16:18], "little")
        height = int.from_bytes(head[18:20], "little")
        self._set_geometry(width, height)

    data_offset = 20
    counter_keys = ("out_of_bounds", "other_words")

    bytes_per_event = 5.0

    def _make_decoder(self):
        cls = _core.EsDvsDecoder if self.stream_type == "dvs" else _core.EsAtisDecoder
        return cls(self.width, self.height)
