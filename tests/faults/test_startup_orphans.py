"""A broker killed (kill -9, OOM) while one of its camera pods is still starting must not leave that pod behind.

It also shows ``Worker.orphans()`` finds what it is meant to find. The bug it caught: the pod's parent watch
read ``os.getppid()`` once its imports were done; a broker that died before then had already been replaced
by init as the parent, so the pod waited forever, kept its camera open and reconnected to the restarted
broker under the same name. The broker now passes its PID to the pod.
"""

from __future__ import annotations

import pytest

from tests.support import embedded
from tests.support.embedded import Worker, wait_until
from tests.support.embedded_fixtures import Connect
from tests.support.servers import RtspServer
from tests.support.snapshot_server import SnapshotCamera

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


async def test_a_broker_killed_while_its_pod_starts_leaves_no_orphan(
        worker: Worker, camera_servers: tuple[RtspServer, SnapshotCamera], model_url: str,
        connect: Connect) -> None:
    _, snapshots = camera_servers
    embedded.clean_outputs(["display-fault-9"])
    backend = await connect(worker.url)
    await backend.send({"type": "setSubscriptionList", "subscriptions": [
        {"subscriptionIdentifier": "display-fault-9;cam-109", "snapshotUrl": snapshots.url("/video"),
         "snapshotInterval": 500, "modelUrl": model_url, "modelId": 49, "modelName": "gas-station"}]})
    await backend.until(lambda: worker.pods(), 15)
    (pod,) = worker.kill()  # at once: the pod is still importing its libraries
    assert [p.pid for p in worker.orphans()] == [pod.pid], "a pod whose broker just died is an orphan"
    try:
        wait_until(lambda: not worker.orphans(), 10, "the pod exits within seconds of its broker")
    finally:
        for orphan in worker.orphans():
            orphan.kill()
        wait_until(lambda: not worker.orphans(), 5, "the orphan is gone")
