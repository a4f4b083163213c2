"""Which URLs the product accepts from the outside, checked one way everywhere.

Stream URLs are ``rtsp``/``rtsps`` (RTSP cameras) or ``http``/``https`` (snapshot cameras); model
archives come over ``http``/``https``. Local paths are a tools-only feature (``detector pipeline run``,
``file`` streams of local runs): nothing received over the network may name one. Error messages never
repeat a URL's credentials.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from detector.kit.redaction import redact_url

RTSP_SCHEMES = ("rtsp", "rtsps")
HTTP_SCHEMES = ("http", "https")
MAX_URL_LENGTH = 2048
# C0/C1 control characters, whitespace, and lone surrogates (a JSON "\ud800" escape) never belong in a URL.
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f\ud800-\udfff]")
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):")


def check_url(value: str, schemes: tuple[str, ...], *, what: str = "URL") -> str:
    """Return ``value`` if it is an absolute URL of one of ``schemes`` with a host; else raise ValueError.

    >>> check_url("rtsp://admin:pw@10.0.0.9/stream", RTSP_SCHEMES)
    'rtsp://admin:pw@10.0.0.9/stream'
    """
    expected = " or ".join(f"{scheme}://" for scheme in schemes)
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"{what} is longer than {MAX_URL_LENGTH} characters")
    if _FORBIDDEN.search(value):
        raise ValueError(f"{what} must not contain spaces or control characters")
    found = _SCHEME.match(value)
    if found is None:
        raise ValueError(f"{what} must be an absolute {expected} URL, got no scheme ({_shown(value)!r})")
    scheme = found.group("scheme").lower()
    if scheme not in schemes:
        raise ValueError(f"{what} scheme {scheme!r} is not allowed; use {expected}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0..65535
    except ValueError as exc:
        raise ValueError(f"{what} is not a valid URL: {exc}") from None
    if not value[found.end():].startswith("//") or not parts.hostname:
        raise ValueError(f"{what} has no host ({_shown(value)!r})")
    return value


def _shown(value: str) -> str:
    return redact_url(value)[:80]
