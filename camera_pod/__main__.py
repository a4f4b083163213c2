"""``python -m camera_pod``: one camera pod (``camera_pod.process``).

A stop asked for while the pod's modules load (seconds on a small CPU: ONNX Runtime, OpenCV, PyAV...) is a
clean exit, as it is once the pod serves: without a handler this early, a pod stopped in its first second
died of the signal (exit status -15) and looked crashed to its kubelet or broker.
"""

import signal
import sys


def _stop_while_loading(*_: object) -> None:
    sys.exit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop_while_loading)
    from camera_pod.process import run_process  # after the handler: loading it takes seconds

    run_process()
