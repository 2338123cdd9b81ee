"""Errors raised by readers and writers."""

from __future__ import annotations


class EventFileError(ValueError):
    """A recording could not be read or written.

    Attributes:
        path: the file.
        offset: byte offset in the file where the problem was found (``None`` if not byte-addressed).
        index: event index where the problem was found (``None`` if not event-addressed).
    """

    def __init__(self, path, message: str, *, offset: int | None = None, index: int | None = None):
        where = ""
        if offset is not None:
            where = f" at byte {offset}"
        elif index is not None:
            where = f" at event {index}"
        super().__init__(f"{path}{where}: {message}")
        self.path = str(path)
        self.offset = offset
        self.index = index
        self.reason = message


class UnknownFormatError(EventFileError):
    """The file's content matches no known event format."""
