"""Remove credentials from URLs and free text before they reach logs, reports or metrics."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# scheme://user:password@host  or  scheme://token@host — anything between "//" and "@".
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:]*)(?P<password>:[^/@\s]*)?@")
# password=..., token=..., key=... in query strings or key=value text; and the parts of signed object-store
# links (S3's X-Amz-Signature/-Credential/-Security-Token, GCS's X-Goog-Signature/-Credential, Azure SAS `sig`)
# that grant access to whoever holds them.
_SECRET_PARAM = re.compile(
    r"(?P<name>(?<![A-Za-z0-9_-])(?:password|passwd|pwd|pass|token|access_token|api_key|apikey|secret|auth|sig|"
    r"signature|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential)=)"
    r"[^&\s\"']+",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """Return ``url`` with its password (and secret query parameters) masked.

    >>> redact_url("rtsp://admin:hunter2@10.0.0.5:554/stream1")
    'rtsp://admin:***@10.0.0.5:554/stream1'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        # A lone userinfo may be a token, so it is masked whole; with a password only the password is.
        netloc = f"{user}:{MASK}@{hostport}" if has_password and user else f"{MASK}@{hostport}"
    query = _SECRET_PARAM.sub(lambda m: m.group("name") + MASK, parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Mask every URL password and secret-looking parameter found anywhere in ``text``."""

    def _userinfo(match: re.Match[str]) -> str:
        user = match.group("user")
        if user and match.group("password"):
            return f"{match.group('scheme')}{user}:{MASK}@"
        return f"{match.group('scheme')}{MASK}@"

    return _SECRET_PARAM.sub(lambda m: m.group("name") + MASK, _USERINFO.sub(_userinfo, text))
