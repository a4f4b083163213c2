"""Why a stream connection ended; the supervisor decides whether to retry."""

from __future__ import annotations

from detector.kit.errors import PermanentError, TemporaryError


class StreamError(TemporaryError):
    """The connection failed or ended; reconnect after a backoff (at least ``delay`` seconds)."""

    def __init__(self, message: str, *, delay: float = 0.0) -> None:
        super().__init__(message, delay=delay)


class StreamStalled(StreamError):
    """Connected, but no frame for ``stall_timeout``: the camera hung."""


class StreamConfigError(PermanentError):
    """Retrying cannot help (unsupported URL, missing file, bad crop)."""


class BadSnapshot(Exception):
    """One snapshot was not a decodable image: counted, not fatal."""


class EndOfStream(Exception):
    """A file has no more frames: the reader stops, it does not reconnect."""
