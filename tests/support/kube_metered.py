"""kmock's Kubernetes emulator with a round-trip time, refusals and a count of requests in flight.

kmock serves each request on the test's own event loop without ever waiting, so it serves one at a time
however many are sent at once. A real API server costs a round trip (~10-30 ms) per call: ``latency``
adds one, and ``in_flight`` / ``peak`` show how many requests were being served at once. ``refused``
names objects whose every request is answered 500 (a Status, as a real server sends). ``gather`` holds every
request until that many are in flight at once (or ``gather_timeout_s`` passed): a test of concurrency then
does not depend on how the machine schedules the client's threads.
kmock matches each request against its whole request log, so thousands of requests take minutes:
``keep_log=False`` drops each request from the log once answered (``served`` still counts them), for
benchmarks; the log helpers of ``tests.support.kube`` (``mark``, ``writes``) then see nothing.
Use it in a test with ``@pytest.mark.kmock(cls=MeteredEmulator)``; ``kube.register`` and the other
helpers of ``tests.support.kube`` work on it unchanged.
"""

from __future__ import annotations

import asyncio

import aiohttp.web
import attrs
import kmock
from kmock._internal import rendering


@attrs.define(kw_only=True)
class MeteredEmulator(kmock.KubernetesEmulator):
    latency: float = 0.0  # seconds each request waits before it is served, outside the emulator's lock
    refused: set[str] = attrs.field(factory=set)
    keep_log: bool = True
    gather: int = 0
    gather_timeout_s: float = 5.0
    served: int = attrs.field(default=0, init=False)
    in_flight: int = attrs.field(default=0, init=False)
    peak: int = attrs.field(default=0, init=False)
    _gathered: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)

    def reset_peak(self) -> None:
        """Count the peak afresh (and gather the next requests again)."""
        self.peak = self.in_flight
        self._gathered.clear()

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.in_flight >= self.gather:
            self._gathered.set()
        try:
            if not self._gathered.is_set():
                try:
                    await asyncio.wait_for(self._gathered.wait(), self.gather_timeout_s)
                except TimeoutError:
                    self._gathered.set()  # fewer came at once: the test's assertions on ``peak`` say so
            if self.latency:
                await asyncio.sleep(self.latency)
            if object_name(request) in self.refused:
                raise kmock.KubernetesError(status=500, reason="InternalError", message="refused by the test")
            return await super()._handle(request)
        finally:
            self.in_flight -= 1
            self.served += 1
            if not self.keep_log:  # only this one: the others in flight are still matched against the log
                self._requests[:] = [logged for logged in self._requests if logged is not request]


def object_name(request: rendering.Request) -> str | None:
    """The object a request is about: in its URL, or in its body for a POST."""
    if request.name is not None:
        return str(request.name)
    body = request.data
    name = (body.get("metadata") or {}).get("name") if isinstance(body, dict) else None
    return name if isinstance(name, str) else None
