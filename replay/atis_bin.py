"""N-MNIST / N-Caltech101 ``.bin`` recordings (also N-MNIST's ``.bs2``), read and write.

No header; 5-byte records, a big-endian 40-bit word ``x[39:32] y[31:24] p[23] t[22:0]``
(t in microseconds, p 1 = ON). Records with ``y == 240`` are timestamp-overflow markers (Orchard
et al.'s reader): each adds 2^13 us to all later timestamps and is not an event
(counted in ``other_words``). A trailing partial record is counted in ``truncated_bytes``.

The file does not store the sensor size. Default: 34x34 (N-MNIST) when every coordinate is
below 34, else the 304x240 ATIS array that N-Caltech101 was recorded with; pass
``sensor_size`` to choose. Deciding needs one pass over the coordinates (fast; streamed).
"""

from __future__ import annotations

import numpy as np

from ..kernels import _core
from .base import DecoderReader, EventWriter, iter_file_blocks

NMNIST_SIZE = (34, 34)
ATIS_SIZE = (304, 240)


class BinReader(DecoderReader):
    """N-MNIST / N-Caltech101 40-bit event reader, decoded in C++."""

    format = "bin"

    def __init__(self, path, sensor_size=None):
        super().__init__(path, sensor_size)
        if sensor_size is None:
            sensor_size = NMNIST_SIZE if self._max_coordinate() < 34 else ATIS_SIZE
        self._set_geometry(*sensor_size)

    read_block = 5 << 20  # whole records
    counter_keys = ("out_of_bounds", "other_words", "t_backwards")

    def _max_coordinate(self) -> int:
        if self.file_size <= len(self.head):
            blocks = [np.frombuffer(self.head, np.uint8)]
        else:
            blocks = (b for _, b in iter_file_blocks(self.path, 0, block=self.read_block))
        top = 0
        for block in blocks:
            rec = block[: len(block) - len(block) % 5].reshape(-1, 5)
            if not len(rec):
                continue
            y = rec[:, 1]
            y_top = int(y.max())
            if y_top >= 240:  # overflow markers (y == 240) are not events
                y = y[y != 240]
                y_top = int(y.max()) if len(y) else 0
            top = max(top, int(rec[:, 0].max()), y_top)
        return top

    bytes_per_event = 5.0

    def _make_decoder(self):
        return _core.AtisBinDecoder(self.width, self.height)


class BinWriter(EventWriter):
    """Writes 40-bit records. Coordinates must be < 256 (y < 240) and t < 2^23 us (8.4 s)."""

    format = "bin"
    max_coordinate = 255

    def __init__(self, path, width, height):
        super().__init__(path, width, height)
        if height > 240:
            raise ValueError(
                f"{self.path}: .bin rows must be < 240 (y == 240 marks overflows), height={height}"
            )
        self._f = open(self.path, "wb")

    def _write(self, events):
        if int(events["t"].max()) >= 1 << 23:
            raise ValueError(f"{self.path}: .bin stores 23-bit timestamps; t >= 2^23 us cannot be stored")
        rec = np.empty((len(events), 5), np.uint8)
        t = events["t"].astype(np.uint32)
        rec[:, 0] = events["x"]
        rec[:, 1] = events["y"]
        rec[:, 2] = (events["p"].astype(np.uint32) << 7) | (t >> 16)
        rec[:, 3] = (t >> 8) & 0xFF
        rec[:, 4] = t & 0xFF
        self._f.write(rec.tobytes())

    def _finish(self):
        self._f.close()
