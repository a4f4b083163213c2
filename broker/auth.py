"""The optional shared token (``DETECTOR_AUTH_TOKEN``) that the backend and the camera pods present.

Accepted as ``Authorization: Bearer <token>`` or, for clients that cannot set WebSocket headers, as the
``token`` query parameter; plain HTTP requests (the console and what it loads, not the WebSockets) also
accept the console's cookie, which holds a value derived from the token, never the token itself. Compared
in constant time; a refusal is logged with the reason and the client, never with what was offered.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping

from pydantic import SecretStr
from starlette.requests import HTTPConnection
from starlette.responses import Response

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008  # WebSocket close code for a refused connection
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="camera-detector"'}
COOKIE = "detector_console"


def offered_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return query.get("token") or None


def cookie_value(expected: SecretStr) -> str:
    """The console cookie's value: a cookie that leaks opens the broker's pages, not its WebSockets."""
    return hmac.new(expected.get_secret_value().encode(), b"camera-detector console", hashlib.sha256).hexdigest()


def set_cookie(response: Response, expected: SecretStr, *, secure: bool) -> None:
    """HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), for the browser session."""
    response.set_cookie(COOKIE, cookie_value(expected), path="/", httponly=True, samesite="strict", secure=secure)


def refusal(expected: SecretStr | None, connection: HTTPConnection) -> str | None:
    """None when ``connection`` may proceed; otherwise why not (logged here, without the offered token)."""
    if expected is None:
        return None
    offered = offered_token(connection.headers, connection.query_params)
    if offered is not None and hmac.compare_digest(offered.encode(), expected.get_secret_value().encode()):
        return None
    cookie = connection.cookies.get(COOKIE) if connection.scope["type"] == "http" else None
    if offered is None and cookie is not None and hmac.compare_digest(cookie.encode(), cookie_value(expected).encode()):
        return None
    reason = "wrong token" if offered is not None else "stale cookie" if cookie is not None else "no token offered"
    client = f"{connection.client.host}:{connection.client.port}" if connection.client else "unknown"
    log.warning("refused an unauthenticated request", extra={"path": connection.url.path, "client": client,
                                                             "reason": reason})
    return reason
