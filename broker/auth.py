"""The optional shared token (``DETECTOR_AUTH_TOKEN``) that the backend and the camera pods present.

Accepted as ``Authorization: Bearer <token>`` or, for clients that cannot set WebSocket headers, as the
``token`` query parameter. Compared in constant time; a refusal is logged with the reason and the
client, never with what was offered.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping

from pydantic import SecretStr
from starlette.requests import HTTPConnection

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008  # WebSocket close code for a refused connection
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="camera-detector"'}


def offered_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return query.get("token") or None


def refusal(expected: SecretStr | None, connection: HTTPConnection) -> str | None:
    """None when ``connection`` may proceed; otherwise why not (logged here, without the offered token)."""
    if expected is None:
        return None
    offered = offered_token(connection.headers, connection.query_params)
    if offered is not None and hmac.compare_digest(offered.encode(), expected.get_secret_value().encode()):
        return None
    reason = "no token offered" if offered is None else "wrong token"
    client = f"{connection.client.host}:{connection.client.port}" if connection.client else "unknown"
    log.warning("refused an unauthenticated request", extra={"path": connection.url.path, "client": client,
                                                             "reason": reason})
    return reason
