"""The camera pod process (``python -m camera_pod``) as its runner starts and stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from detector.contract.pods import DisplaySubscription, PodSpec, StreamSpec

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]


def _start(tmp_path: Path) -> subprocess.Popen[bytes]:
    spec = PodSpec(name="cam-0123456789ab", stream=StreamSpec(url="rtsp://127.0.0.1:9/x", kind="rtsp"),
                   subscriptions=[DisplaySubscription(identifier="d;c", model_url="http://127.0.0.1:9/m.mpta",
                                                      model_id=1, model_name="m")],
                   broker_url="ws://127.0.0.1:9/internal/pods/cam-0123456789ab")
    environ = {**os.environ, "DETECTOR_POD_SPEC": spec.model_dump_json(), "DETECTOR_CACHE_DIR": str(tmp_path),
               "DETECTOR_STATE_DIR": str(tmp_path / "state")}
    return subprocess.Popen([sys.executable, "-P", "-m", "camera_pod"], cwd=ROOT, env=environ,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _catches_sigterm(pid: int) -> bool:
    """The kernel's view: the process has a handler for SIGTERM (not the default action, death)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def test_a_pod_stopped_while_it_loads_exits_cleanly(tmp_path: Path) -> None:
    """SIGTERM while the pod's modules still load (its first seconds) is a clean stop, not death by signal.

    Sent as soon as the process catches it: the interpreter's own start, before any of our code, cannot."""
    pod = _start(tmp_path)
    deadline = time.monotonic() + 20
    while not _catches_sigterm(pod.pid):
        assert pod.poll() is None and time.monotonic() < deadline, "the pod never set up its stop handler"
        time.sleep(0.005)
    loaded = Path(f"/proc/{pod.pid}/maps").read_text()
    pod.send_signal(signal.SIGTERM)
    assert "onnxruntime" not in loaded and "libavcodec" not in loaded, "stopped while loading, not once serving"
    _, stderr = pod.communicate(timeout=30)
    assert pod.returncode == 0, stderr.decode()[-2000:]
