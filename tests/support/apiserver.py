"""kmock plus what a real API server adds to every object it creates: uid, resourceVersion, creation time.

Use it as the ``kmock`` fixture's class: ``pytest.mark.kmock(cls=ApiServer)``.
"""

from __future__ import annotations

import datetime
import uuid

import aiohttp.web
import kmock


class ApiServer(kmock.KubernetesEmulator):
    """Fills in ``metadata.uid``, ``resourceVersion`` and ``creationTimestamp`` of a created object (what the
    client set is kept), so a Pod replaced by another of the same name has another uid, as in a cluster.

    The body is amended before kmock stores it, so the watch events carry them too. The version never
    advances: kmock answers a failed JSON-patch ``test`` with a 500 (not a 422), on which Kopf retries the
    same stale patch instead of re-reading the object, so advancing versions would wedge the operator.
    """

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.resource is not None and request.action == kmock.action.CREATE and isinstance(request.data, dict):
            metadata = request.data.setdefault("metadata", {})
            metadata.setdefault("uid", str(uuid.uuid4()))
            metadata.setdefault("resourceVersion", "1")
            metadata.setdefault("creationTimestamp",
                                datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        return await super()._handle(request)
