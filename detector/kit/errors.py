"""The small error vocabulary shared by readers, runners and the operator.

A ``PermanentError`` will not go away by retrying (bad configuration, corrupt archive); a
``TemporaryError`` might (service down, network blip) and says how long to wait before the retry.
"""

from __future__ import annotations


class DetectorError(Exception):
    """Base of every error this product raises on purpose."""


class PermanentError(DetectorError):
    """Retrying cannot help; report it and stop trying."""


class TemporaryError(DetectorError):
    """Retrying may help after ``delay`` seconds."""

    def __init__(self, message: str, *, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay
